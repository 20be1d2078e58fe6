"""Suite variants: one suite file, several budgets.

A suite may name variants, each a mapping of top-level keys that replace the suite's own when
the variant is chosen (``rnnbench run SUITE --variant full``); ``training`` is merged key by key,
so a variant says only what it changes::

    training: {steps: 2000, lr: 0.01}
    seed: [0, 1, 2]
    variants:
      full:                      # closer to the papers' budgets
        seed: [0, 1, 2, 3, 4]
        training: {steps: 20000} # lr stays 0.01

The variant's document is checked like any suite, and a problem in a value the variant wrote
is reported at the variant's own line and field (``variants.full.training.steps``). A variant
cannot rename the suite (``name``) or hold variants. Its results go to its ``output:`` when it
sets one, else beside the suite's: ``results/<name>-<variant>`` (or the suite's ``output:``
with ``-<variant>`` appended), so a variant never mixes its records with the default budget's.

The variant a results folder holds is recorded in its ``environment.json`` (``"variant"``;
``null`` or absent for the suite as written): :func:`recorded_variant` reads it, so ``show``,
``verify`` and ``--resume`` know what ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rnnbench.errors import SuiteError, SuiteProblem, did_you_mean
from rnnbench.results import ENVIRONMENT_FILE, read_environment
from rnnbench.suite_yaml import KeyPath, SuiteDocument, SuiteProblems

__all__ = [
    "VARIANTS_KEY",
    "apply_variant",
    "recorded_variant",
    "variant_names",
    "variant_output",
]

#: The top-level key holding a suite's variants.
VARIANTS_KEY = "variants"
#: Top-level keys a variant may not set, and why.
_FIXED = {
    "name": "a variant keeps the suite's name; its results go to results/<name>-<variant> "
    "unless it sets output",
    VARIANTS_KEY: "variants do not nest; give each variant at the top of variants:",
}


def variant_names(doc: SuiteDocument) -> list[str]:
    """The variants the suite declares, in file order (none when ``variants:`` is absent or not
    a mapping: the schema reports that)."""
    variants = doc.data.get(VARIANTS_KEY)
    return list(variants) if isinstance(variants, dict) else []


def apply_variant(doc: SuiteDocument, variant: str | None) -> SuiteDocument:
    """The suite document with ``variant``'s keys in place of the top-level ones (``training``
    merged key by key); ``doc`` itself when ``variant`` is None.

    Every value the variant wrote keeps its own line, and :attr:`SuiteDocument.aliases` maps it
    back to its field under ``variants:``, so the usual checks place their problems there.
    Raises :class:`SuiteError` for an unknown variant (did-you-mean) or a variant setting a key
    it may not (``name``, ``variants``).
    """
    if variant is None:
        return doc
    names = variant_names(doc)
    if variant not in names:
        hint = did_you_mean(variant, names) if names else (
            "this suite declares no variants; add e.g. variants: {full: {training: {steps: "
            "20000}}}")
        line = doc.line_of(VARIANTS_KEY) or 1
        raise SuiteError([SuiteProblem(str(doc.path), line, VARIANTS_KEY,
                                       f"unknown variant {variant!r} (--variant)", hint)])
    overlay = doc.data[VARIANTS_KEY][variant]
    origin: KeyPath = (VARIANTS_KEY, variant)
    if not isinstance(overlay, dict):
        problems = SuiteProblems(doc)
        problems.add(origin, "expected a mapping of suite keys to override, e.g. {seed: [0, 1, "
                     "2, 3, 4], training: {steps: 20000}}")
        problems.raise_if_any()
    problems = SuiteProblems(doc)
    for key in overlay:
        if key in _FIXED:
            problems.add((*origin, key), f"a variant cannot set {key!r}", _FIXED[key])
    problems.raise_if_any()

    data = dict(doc.data)
    lines = dict(doc.lines)
    aliases: dict[KeyPath, KeyPath] = {}
    for key, value in overlay.items():
        base = data.get(key)
        if key == "training" and isinstance(value, dict) and isinstance(base, dict):
            data[key] = {**base, **value}
            for setting in value:
                _move_lines(lines, (*origin, key, setting), (key, setting))
                aliases[(key, setting)] = (*origin, key, setting)
        else:
            data[key] = value
            _move_lines(lines, (*origin, key), (key,))
            aliases[(key,)] = (*origin, key)
    plugins = [
        (item, lines.get(("plugins", index)))
        for index, item in enumerate(data.get("plugins") or [])
        if isinstance(item, str)
    ] if isinstance(data.get("plugins"), list) else []
    return SuiteDocument(doc.path, data, plugins, lines, aliases)


def _move_lines(lines: dict[KeyPath, int], source: KeyPath, target: KeyPath) -> None:
    """Give the key paths under ``target`` the lines of those under ``source``."""
    size = len(target)
    for path in [path for path in lines if path[:size] == target]:
        del lines[path]
    size = len(source)
    for path, line in list(lines.items()):
        if path[:size] == source:
            lines[(*target, *path[size:])] = line


def variant_output(doc: SuiteDocument, variant: str) -> Path:
    """Where a variant's results go when it sets no ``output:``: the suite's folder (its
    ``output:``, else ``results/<name>``) with ``-<variant>`` appended."""
    output = doc.data.get("output")
    base = Path(output) if isinstance(output, str) and output else (
        Path("results") / str(doc.data.get("name", "suite")))
    return base.with_name(f"{base.name}-{variant}")


def recorded_variant(folder: str | Path) -> str | None:
    """The variant a results folder's runs were of, as its ``environment.json`` records it;
    None for the suite as written (or a folder written before variants existed)."""
    environment: dict[str, Any] | None = read_environment(Path(folder) / ENVIRONMENT_FILE)
    variant = (environment or {}).get("variant")
    return variant if isinstance(variant, str) else None
