"""Suite files: YAML -> validated :class:`Suite` -> a list of fully resolved :class:`RunSpec`.

A suite is a small matrix of experiments written in YAML. Every axis takes one value or a list;
the runs are the cartesian product of the axes, plus ``include`` sets, minus ``exclude`` matches::

    name: quickstart                 # required: letters, digits, '-', '_', '.'
    description: "RNN vs LSTM vs GRU on the adding problem"
    output: results/quickstart       # optional; the caller defaults to results/<name>
    plugins: [my_cells.py, pkg.mod]  # optional; loaded by the caller before validation
    cell: [rnn, lstm, gru]           # required: a name or a non-empty list of names
    backend: numpy                   # default numpy
    task:                            # required: one task entry or a list of them
      - adding                       #   a bare name: the task with its default parameters
      - name: adding                 #   or a mapping; a list-valued parameter is expanded
        params: {length: [10, 50]}
    hidden_size: [16, 32]            # required: positive integer(s)
    num_layers: 1                    # default 1
    bias: true                       # default true
    dtype: float64                   # default float32 (one of rnnbench.cell.DTYPES)
    seed: [0, 1, 2]                  # default 0
    training:                        # every value may also be a list (expanded)
      optimizer: adam                # sgd | adam, default adam
      lr: 0.01                       # > 0, default 0.001
      momentum: 0.9                  # in [0, 1), default 0
      batch_size: 32                 # default 32
      steps: 200                     # exactly one of steps / epochs (the other absent or null)
      clip: 1.0                      # > 0 or null (no clipping), default null
      eval_every: 50                 # null: once per epoch, decided by the trainer
      target_loss: 0.01              # stop early once the validation loss reaches it; default null
      init: orthogonal               # pytorch | orthogonal | identity, default pytorch
      spectral_radius: 1.5           # rescale recurrent matrices to this radius; default null
    metrics: [final_loss, test_loss] # default: every registered metric, sorted
    include:                         # extra run sets: keys override the suite's axes
      - {cell: lstm, hidden_size: 128, lr: 0.1}   # training keys are given flat here
    exclude:                         # drop runs whose RunSpec.flat() matches ALL the keys
      - {cell: rnn, hidden_size: 32}
      - {task.length: 50, cell: [rnn, gru]}       # a list matches any of its items
    skip_unavailable: false          # true: skip runs on unavailable backends, not an error

Reading and validating are separate steps (:func:`read_suite`, :func:`validate_suite`) because a
suite may name local plugins (``plugins:``) that must be loaded into the registry before its cell
and task names can be checked. Validation collects *every* problem and raises one
:class:`~rnnbench.errors.SuiteError`; each problem names the file, the line and the field (a
dotted path such as ``training.lr`` or ``task[1].params.length``) and, where it can, a fix.

Run ids must not depend on how a suite is spelt, so every default is filled in before a
:class:`RunSpec` is built: task parameters are all listed (sorted by name) whether or not the
suite set them, and numbers are converted to their field's type (``lr: 1`` is ``1.0``).

YAML is read with a :class:`yaml.SafeLoader` subclass (never a loader that can build arbitrary
objects). It differs from PyYAML's default in three ways, each to make suites less surprising:
it records the line of every key and list item; a duplicate key is an error instead of a silent
override; and ``1e-3`` is a float (YAML 1.1 requires ``1.0e-3``), as it is in YAML 1.2.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from rnnbench.cell import DTYPES
from rnnbench.errors import SuiteError, SuiteProblem, did_you_mean
from rnnbench.plugin_manager import CellEntry, Registry, TaskEntry
from rnnbench.records import (
    CONFIG_AXES,
    INITS,
    OPTIMIZERS,
    TRAINING_AXES,
    RunSpec,
    TrainingConfig,
)

__all__ = [
    "SUITE_SCHEMA",
    "Suite",
    "SuiteDocument",
    "field_name",
    "load_suite",
    "read_suite",
    "validate_suite",
]

#: A key path into the suite document: mapping keys and list indices.
KeyPath = tuple[str | int, ...]

# --- YAML with line numbers ---------------------------------------------------------------------


class _LineDict(dict):  # type: ignore[type-arg]
    """A mapping as the loader builds it: remembers each key's line and any duplicate keys.

    Internal only: :func:`read_suite` turns these into plain dicts plus a path -> line map, so
    the public ``data`` can be dumped, copied and compared like any YAML data.
    """

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.lines: dict[str, int] = {}
        self.duplicates: list[tuple[str, int, int]] = []  # (key, line, line of the first one)


class _LineList(list):  # type: ignore[type-arg]
    """A sequence as the loader builds it: remembers each item's line."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.lines: list[int] = []


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _SuiteLoader(yaml.SafeLoader):
    """PyYAML's safe loader, recording lines, refusing duplicate keys, reading ``1e-3`` as a
    float. Subclassing keeps these changes away from every other user of ``yaml.SafeLoader``."""


def _construct_mapping(loader: _SuiteLoader, node: yaml.MappingNode) -> Iterator[_LineDict]:
    # A generator, like PyYAML's own constructors: yielding the (empty) object first lets
    # anchors and aliases refer to it before it is filled.
    data = _LineDict(_line(node))
    yield data
    own: dict[str, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = _key_text(node, key_node)
        if key in own:
            data.duplicates.append((key, _line(key_node), own[key]))
        else:
            own[key] = _line(key_node)
    loader.flatten_mapping(node)  # resolve `<<: *anchor` merges; explicit keys win
    for key_node, value_node in node.value:
        key = _key_text(node, key_node)
        data[key] = loader.construct_object(value_node, deep=False)
        data.lines[key] = _line(key_node)


def _key_text(node: yaml.Node, key_node: yaml.Node) -> str:
    """A key as written: every key in a suite is a name, so ``on:`` or ``1:`` mean the text,
    not YAML 1.1's boolean or integer."""
    if not isinstance(key_node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            "while reading a mapping",
            node.start_mark,
            "found a key that is not a plain name",
            key_node.start_mark,
        )
    return str(key_node.value)


def _construct_sequence(loader: _SuiteLoader, node: yaml.SequenceNode) -> Iterator[_LineList]:
    data = _LineList(_line(node))
    yield data
    for child in node.value:
        data.append(loader.construct_object(child, deep=False))
        data.lines.append(_line(child))


_SuiteLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_SuiteLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)
_SuiteLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def field_name(path: KeyPath) -> str:
    """A key path as a user reads it: ``("task", 1, "params", "length")`` -> ``task[1].params.
    length``; the empty path is ``(top level)``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _to_plain(
    node: Any,
    path: KeyPath,
    lines: dict[KeyPath, int],
    problems: list[SuiteProblem],
    file: str,
    active: set[int],
) -> Any:
    """Copy the loader's objects into plain dicts and lists, filling ``lines`` by key path."""
    if not isinstance(node, (_LineDict, _LineList)):
        return node
    if id(node) in active:  # `&a [*a]`: an alias inside itself would expand forever
        raise SuiteError(
            [
                SuiteProblem(
                    file,
                    lines.get(path),
                    field_name(path),
                    "an alias refers to a node that contains it",
                    "YAML anchors may be reused, but not inside themselves",
                )
            ]
        )
    active.add(id(node))
    try:
        if isinstance(node, _LineDict):
            mapping: dict[str, Any] = {}
            for key, value in node.items():
                lines[(*path, key)] = node.lines[key]
                mapping[key] = _to_plain(value, (*path, key), lines, problems, file, active)
            for key, line, first in node.duplicates:
                problems.append(
                    SuiteProblem(
                        file,
                        line,
                        field_name((*path, key)),
                        f"duplicate key {key!r} (first given on line {first})",
                        "a key may appear once per mapping; remove or merge one of them",
                    )
                )
            return mapping
        items: list[Any] = []
        for index, value in enumerate(node):
            lines[(*path, index)] = node.lines[index]
            items.append(_to_plain(value, (*path, index), lines, problems, file, active))
        return items
    finally:
        active.discard(id(node))


# --- Documents and suites ------------------------------------------------------------------------


@dataclass
class SuiteDocument:
    """A parsed suite file, not yet validated against the plugins.

    Kept separate from :class:`Suite` because the file itself names plugins (``plugins:``) that
    must be loaded before its cells and tasks can be checked.
    """

    path: Path
    #: The document as plain dicts, lists and scalars.
    data: dict[str, Any]
    #: ``(reference, line)`` for each string in ``plugins:``, for loading before validation.
    plugins: list[tuple[str, int | None]]
    #: The line of every key and list item, by key path; ``()`` is the top-level mapping.
    lines: dict[KeyPath, int] = field(default_factory=dict, repr=False)

    def line_of(self, *path: str | int) -> int | None:
        """The line of a key or list item, e.g. ``line_of("task", 1, "params", "length")``;
        ``None`` when the document has no such key."""
        return self.lines.get(tuple(path))

    def nearest_line(self, *path: str | int) -> int | None:
        """The line of ``path`` or, when it is missing, of its closest ancestor: a missing key
        is reported where the mapping that should hold it starts."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


@dataclass
class Suite:
    """A validated suite: its metadata and its runs, every one fully resolved."""

    name: str
    description: str
    path: Path
    #: From ``output:`` as written (a relative path is left to the caller to resolve), or
    #: ``None``: the caller then uses ``results/<name>``.
    output: Path | None
    plugins: list[str]
    metrics: tuple[str, ...]
    #: Expanded, excluded, deduplicated by run id; in suite order (the order values are listed,
    #: base runs before each ``include`` set), so tables and logs come out the same every time.
    runs: list[RunSpec]
    #: Runs dropped because their backend is unavailable here and ``skip_unavailable`` is true,
    #: each with the backend's reason.
    skipped: list[tuple[RunSpec, str]] = field(default_factory=list)


def read_suite(path: str | Path) -> SuiteDocument:
    """Parse a suite file. Raises :class:`SuiteError` for a missing or unreadable file, invalid
    YAML (with its line), duplicate keys, or a top level that is not a mapping."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError([SuiteProblem(file, None, "(file)", "no such file")]) from None
    except UnicodeDecodeError as exc:
        raise SuiteError(
            [
                SuiteProblem(
                    file, None, "(file)", f"not UTF-8 text: {exc.reason}", "save the file as UTF-8"
                )
            ]
        ) from None
    except OSError as exc:
        problem = SuiteProblem(file, None, "(file)", f"cannot read: {exc.strerror}")
        raise SuiteError([problem]) from None
    loader = _SuiteLoader(text)
    try:
        raw = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise SuiteError([_yaml_problem(file, exc)]) from None
    finally:
        loader.dispose()
    if raw is None:
        raise SuiteError(
            [
                SuiteProblem(
                    file,
                    1,
                    "(top level)",
                    "the file is empty",
                    "a suite is a mapping with at least name, cell, task and hidden_size",
                )
            ]
        )
    if not isinstance(raw, _LineDict):
        raise SuiteError(
            [
                SuiteProblem(
                    file,
                    getattr(raw, "line", 1),
                    "(top level)",
                    f"expected a mapping of suite keys, got {_show(raw)}",
                    "start with e.g. 'name: my-suite' on the first line",
                )
            ]
        )
    lines: dict[KeyPath, int] = {(): raw.line}
    problems: list[SuiteProblem] = []
    data = _to_plain(raw, (), lines, problems, file, set())
    if problems:
        raise SuiteError(sorted(problems, key=_problem_order))
    plugins: list[tuple[str, int | None]] = []
    if isinstance(data.get("plugins"), list):
        plugins = [
            (item, lines.get(("plugins", index)))
            for index, item in enumerate(data["plugins"])
            if isinstance(item, str)
        ]
    return SuiteDocument(path, data, plugins, lines)


def _yaml_problem(file: str, exc: yaml.YAMLError) -> SuiteProblem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    message = f"invalid YAML: {problem}"
    if context and context_mark is not None and context_mark.line + 1 != line:
        message += f" ({context} on line {context_mark.line + 1})"
    hint = None
    if "'\\t'" in problem:
        hint = "indent with spaces; YAML does not allow tabs"
    elif "mapping values are not allowed" in problem:
        hint = "check the indentation; a value containing ': ' must be quoted"
    return SuiteProblem(file, line, "(yaml)", message, hint)


def load_suite(path: str | Path, registry: Registry) -> Suite:
    """Read and validate a suite, for callers whose registry already holds every plugin."""
    return validate_suite(read_suite(path), registry)


# --- Schema ---------------------------------------------------------------------------------------
#
# Each schema that can fail carries an "expected" annotation (ignored by jsonschema) so an error
# reads "expected a positive integer, got 0" rather than a dump of the schema.

_NAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$"
_POSITIVE_INT = {"type": "integer", "minimum": 1}
_NAME = {"type": "string", "minLength": 1}


def _axis(item: dict[str, Any], expected: str) -> dict[str, Any]:
    """One value or a non-empty list of values, each matching ``item``."""
    return {
        "if": {"type": "array"},
        "then": {"type": "array", "minItems": 1, "items": {**item, "expected": expected}},
        "else": {**item, "expected": f"{expected}, or a list of them"},
    }


def _task_entry(expected: str) -> dict[str, Any]:
    return {
        "if": {"type": "object"},
        "then": {
            "type": "object",
            "properties": {
                "name": {**_NAME, "expected": "a task name"},
                "params": {
                    "type": "object",
                    "expected": "a mapping of parameter values",
                    # A list-valued parameter is expanded, so an empty list would give no runs.
                    "additionalProperties": {"if": {"type": "array"}, "then": {"minItems": 1}},
                },
            },
            "required": ["name"],
            "additionalProperties": False,
        },
        "else": {**_NAME, "expected": expected},
    }


_TASK_AXIS = {
    "if": {"type": "array"},
    "then": {
        "type": "array",
        "minItems": 1,
        "items": _task_entry("a task name or a mapping {name: ..., params: {...}}"),
    },
    "else": _task_entry("a task name, a mapping {name: ..., params: {...}}, or a list of them"),
}

_AXES: dict[str, dict[str, Any]] = {
    "cell": _axis(_NAME, "a cell name"),
    "backend": _axis(_NAME, "a backend name"),
    "task": _TASK_AXIS,
    "hidden_size": _axis(_POSITIVE_INT, "a positive integer"),
    "num_layers": _axis(_POSITIVE_INT, "a positive integer"),
    "bias": _axis({"type": "boolean"}, "true or false"),
    "dtype": _axis({"enum": list(DTYPES)}, "one of " + ", ".join(DTYPES)),
    "seed": _axis({"type": "integer", "minimum": 0}, "a non-negative integer"),
}

_TRAINING: dict[str, dict[str, Any]] = {
    "optimizer": _axis({"enum": list(OPTIMIZERS)}, "one of " + ", ".join(OPTIMIZERS)),
    "lr": _axis({"type": "number", "exclusiveMinimum": 0}, "a number > 0"),
    "momentum": _axis(
        {"type": "number", "minimum": 0, "exclusiveMaximum": 1}, "a number in [0, 1)"
    ),
    "batch_size": _axis(_POSITIVE_INT, "a positive integer"),
    # null is allowed so an include can switch between the two: {epochs: 5, steps: null}
    "steps": _axis({"type": ["integer", "null"], "minimum": 1}, "a positive integer or null"),
    "epochs": _axis({"type": ["integer", "null"], "minimum": 1}, "a positive integer or null"),
    "clip": _axis(
        {"type": ["number", "null"], "exclusiveMinimum": 0}, "a number > 0 or null (no clipping)"
    ),
    "eval_every": _axis({"type": ["integer", "null"], "minimum": 1}, "a positive integer or null"),
    "target_loss": _axis(
        {"type": ["number", "null"], "exclusiveMinimum": 0}, "a number > 0 or null (no target)"
    ),
    "init": _axis({"enum": list(INITS)}, "one of " + ", ".join(INITS)),
    "spectral_radius": _axis(
        {"type": ["number", "null"], "exclusiveMinimum": 0}, "a number > 0 or null"
    ),
}
assert tuple(_TRAINING) == TRAINING_AXES and tuple(_AXES) == CONFIG_AXES, "schema out of date"

_EXCLUDE_AXES = {**_AXES, "task": _axis(_NAME, "a task name")}
_TASK_PARAM_KEY = r"^task\.[A-Za-z_][A-Za-z0-9_]*$"

#: The JSON Schema (Draft 2020-12) of a suite file's structure. Names (cells, tasks, metrics)
#: are checked against the plugin registry separately, since plugins can add them.
SUITE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "expected": "a mapping of suite keys",
    "properties": {
        "name": {
            "type": "string",
            "pattern": _NAME_PATTERN,
            "expected": "a name of letters, digits, '-', '_' and '.' (not starting with '.')",
        },
        "description": {"type": "string", "expected": "a string"},
        "output": {"type": "string", "minLength": 1, "expected": "a path"},
        "plugins": {
            "type": "array",
            "items": {**_NAME, "expected": "a module name or a .py file path"},
            "expected": "a list of plugins (module names or .py file paths)",
        },
        **_AXES,
        "training": {
            "type": "object",
            "properties": _TRAINING,
            "additionalProperties": False,
            "expected": "a mapping of training settings",
        },
        "metrics": {
            "type": "array",
            "items": {**_NAME, "expected": "a metric name"},
            "expected": "a list of metric names",
        },
        "include": {
            "type": "array",
            "expected": "a list of mappings",
            "items": {
                "type": "object",
                "minProperties": 1,
                "properties": {**_AXES, **_TRAINING},
                "additionalProperties": False,
                "expected": "a mapping of axis values, e.g. {cell: lstm, hidden_size: 128}",
                "empty": "an empty include entry adds nothing",
            },
        },
        "exclude": {
            "type": "array",
            "expected": "a list of mappings",
            "items": {
                "type": "object",
                "minProperties": 1,
                "properties": {**_EXCLUDE_AXES, **_TRAINING},
                "patternProperties": {
                    _TASK_PARAM_KEY: {"if": {"type": "array"}, "then": {"minItems": 1}}
                },
                "additionalProperties": False,
                "expected": "a mapping of values to match, e.g. {cell: rnn, hidden_size: 32}",
                "empty": "an empty exclude entry would remove every run",
            },
        },
        "skip_unavailable": {"type": "boolean", "expected": "true or false"},
    },
    "required": ["name", "cell", "task", "hidden_size"],
    "additionalProperties": False,
}


def _strict_integer(checker: Any, instance: Any) -> bool:
    # jsonschema counts 16.0 as an integer; a suite should say 16, so ids and types are exact.
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
)
_VALIDATOR = _Validator(SUITE_SCHEMA)

_REQUIRED_HINTS = {
    "name": "e.g. name: my-suite",
    "cell": "e.g. cell: [rnn, lstm]",
    "task": "e.g. task: adding",
    "hidden_size": "e.g. hidden_size: 32",
    "name@task": "e.g. {name: adding, params: {length: 50}}",
}


# --- Validation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Value:
    """One value of an axis, with where it was written (or, for a default, where it would go)."""

    value: Any
    path: KeyPath
    line: int | None
    explicit: bool


@dataclass
class _TaskChoice:
    """One task entry: the registered task and every combination of its parameters."""

    entry: TaskEntry
    combos: list[tuple[tuple[str, Any], ...]]
    defaults: dict[str, Any] = field(default_factory=dict)


@dataclass
class _RunSet:
    """The base axes of a suite, or one include set (the base with some axes replaced)."""

    origin: KeyPath
    axes: dict[str, list[_Value]]
    tasks: list[_TaskChoice]
    training: dict[str, list[_Value]]


_MISSING = object()
_TRAINING_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainingConfig)}
_AXIS_DEFAULTS = {"backend": "numpy", "num_layers": 1, "bias": True, "dtype": "float32", "seed": 0}


def validate_suite(doc: SuiteDocument, registry: Registry) -> Suite:
    """Check a parsed suite against its schema and the registry and expand it into runs.

    Raises :class:`SuiteError` listing every problem found, in file order. Structural and name
    problems are all collected first; the expansion checks (cell/backend pairs, availability,
    whether excludes leave any run) run only when those pass, since they need sound axes.
    """
    return _Validation(doc, registry).run()


class _Validation:
    def __init__(self, doc: SuiteDocument, registry: Registry) -> None:
        self.doc = doc
        self.registry = registry
        self.file = str(doc.path)
        self.problems: list[SuiteProblem] = []
        self._availability: dict[tuple[str, str], str | None] = {}
        self._hints_cache: dict[type, dict[str, Any]] = {}
        #: A task entry failed its checks, so the suite's task parameters are not all known.
        self._task_failed = False

    # -- reporting ------------------------------------------------------------------------------

    def add(
        self, path: KeyPath, message: str, hint: str | None = None, line: int | None = None
    ) -> None:
        if line is None:
            line = self.doc.nearest_line(*path)
        problem = SuiteProblem(self.file, line, field_name(path), message, hint)
        if problem not in self.problems:
            self.problems.append(problem)

    def name_hint(self, name: str, choices: list[str]) -> str:
        """Closest names; and when plugins failed to load, that may be why a name is missing."""
        hint = did_you_mean(name, choices)
        for plugin, reason in sorted(self.registry.broken.items()):
            hint += f"; plugin {plugin!r} failed to load: {reason}"
        return hint

    def fail_if_problems(self) -> None:
        if self.problems:
            raise SuiteError(sorted(self.problems, key=_problem_order))

    # -- the steps ------------------------------------------------------------------------------

    def run(self) -> Suite:
        data = self.doc.data
        self.check_schema()
        base = self.run_set((), data, None)
        includes = [
            self.run_set(("include", index), entry, base)
            for index, entry in enumerate(_list(data.get("include")))
            if isinstance(entry, dict)
        ]
        metrics = self.metrics()
        excludes = self.excludes([base, *includes])
        self.fail_if_problems()

        candidates = [run for run_set in (base, *includes) for run in self.expand(run_set)]
        kept = [run for run in candidates if not any(_matches(run[0], ex) for ex in excludes)]
        if not kept:
            self.add(
                ("exclude",),
                "exclude removes every run",
                "each exclude entry drops the runs matching all of its keys; narrow them",
            )
        seen: set[str] = set()
        runs: list[RunSpec] = []
        skipped: list[tuple[RunSpec, str]] = []
        skip_unavailable = data.get("skip_unavailable") is True
        for spec, cell, backend in kept:
            if spec.run_id in seen:
                continue
            seen.add(spec.run_id)
            entry = self.registry.cells.get((spec.cell, spec.backend))
            if entry is None:
                self.missing_pair(cell, backend)
                continue
            reason = self.unavailable(entry)
            if reason is None:
                runs.append(dataclasses.replace(spec, metrics=metrics, suite=data["name"]))
            elif skip_unavailable:
                skipped.append(
                    (dataclasses.replace(spec, metrics=metrics, suite=data["name"]), reason)
                )
            else:
                self.add(
                    backend.path,
                    f"backend {spec.backend!r} of cell {spec.cell!r} is unavailable here: {reason}",
                    "set skip_unavailable: true to skip its runs, or exclude it",
                    line=backend.line,
                )
        self.fail_if_problems()
        output = data.get("output")
        return Suite(
            name=data["name"],
            description=data.get("description", ""),
            path=self.doc.path,
            output=Path(output) if output is not None else None,
            plugins=[reference for reference, _ in self.doc.plugins],
            metrics=metrics,
            runs=runs,
            skipped=skipped,
        )

    def check_schema(self) -> None:
        for error in _VALIDATOR.iter_errors(self.doc.data):
            path: KeyPath = tuple(error.absolute_path)
            kind = error.validator
            schema = error.schema if isinstance(error.schema, dict) else {}
            if kind == "additionalProperties":
                allowed = list(schema.get("properties", {}))
                patterns = list(schema.get("patternProperties", {}))
                for key in error.instance:
                    if key in allowed or any(re.search(p, key) for p in patterns):
                        continue
                    self.add(
                        (*path, key),
                        f"unknown key {key!r}",
                        self.key_hint(path, key, allowed),
                        line=self.doc.line_of(*path, key),
                    )
            elif kind == "required":
                for key in error.validator_value:
                    if key not in error.instance:
                        hint = _REQUIRED_HINTS.get(key if not path else f"{key}@task")
                        self.add(
                            (*path, key),
                            f"missing required key {key!r}",
                            hint,
                            line=self.doc.nearest_line(*path),
                        )
            elif kind == "minItems":
                self.add(
                    path,
                    "must not be an empty list",
                    "remove the key to use its default"
                    if path and path[-1] in _AXIS_DEFAULTS
                    else None,
                )
            elif kind == "minProperties":
                self.add(path, schema.get("empty", "must not be empty"))
            else:
                expected = schema.get("expected")
                if expected is None:
                    self.add(path, error.message)
                    continue
                hint = None
                if kind == "enum" and isinstance(error.instance, str):
                    hint = did_you_mean(error.instance, [str(v) for v in schema["enum"]])
                got = _show(error.instance)
                if kind == "type" and isinstance(error.instance, str):
                    got += " (a string)"
                    if _looks_numeric(error.instance):
                        hint = "remove the quotes to give a number"
                self.add(path, f"expected {expected}, got {got}", hint)

    def key_hint(self, path: KeyPath, key: str, allowed: list[str]) -> str:
        if path == () and key in TRAINING_AXES:
            return f"{key!r} is a training setting: put it under 'training:'"
        if len(path) == 2 and path[0] == "include" and key == "training":
            return "give training settings flat in an include entry, e.g. {lr: 0.1}"
        if len(path) == 2 and path[0] == "exclude":
            allowed = [*allowed, "task.<parameter>"]
        return did_you_mean(key, allowed)

    def values(
        self,
        container: KeyPath,
        mapping: dict[str, Any],
        key: str,
        fallback: list[_Value] | None,
        default: Any,
    ) -> list[_Value]:
        """The values of one axis: as written, else the base suite's, else the default."""
        raw = mapping.get(key, _MISSING)
        path = (*container, key)
        if raw is _MISSING:
            if fallback is not None:
                return fallback
            return [_Value(default, path, self.doc.nearest_line(*path), explicit=False)]
        if isinstance(raw, list):
            return [
                _Value(item, (*path, index), self.doc.line_of(*path, index), explicit=True)
                for index, item in enumerate(raw)
            ]
        return [_Value(raw, path, self.doc.line_of(*path), explicit=True)]

    def run_set(self, origin: KeyPath, mapping: dict[str, Any], base: _RunSet | None) -> _RunSet:
        """Resolve and check the axes of the base suite (``base`` None) or of one include."""
        axes: dict[str, list[_Value]] = {}
        for axis in CONFIG_AXES:
            if axis == "task":
                continue
            fallback = base.axes[axis] if base is not None else None
            axes[axis] = self.values(origin, mapping, axis, fallback, _AXIS_DEFAULTS.get(axis))
        for value in axes["cell"]:
            if isinstance(value.value, str) and value.value not in self.registry.cell_names:
                self.add(
                    value.path,
                    f"unknown cell {value.value!r}",
                    self.name_hint(value.value, self.registry.cell_names),
                    line=value.line,
                )
        for value in axes["backend"]:
            if isinstance(value.value, str) and value.value not in self.registry.backend_names:
                self.add(
                    value.path,
                    f"unknown backend {value.value!r}",
                    self.name_hint(value.value, self.registry.backend_names),
                    line=value.line,
                )

        if base is not None and "task" not in mapping:
            tasks = base.tasks
        else:
            tasks = []
            for value in self.values(origin, mapping, "task", [], None):
                choice = self.task_choice(value)
                if choice is None:
                    self._task_failed = True
                else:
                    tasks.append(choice)

        if base is None:
            training_map = mapping.get("training")
            training_map = training_map if isinstance(training_map, dict) else {}
            container: KeyPath = ("training",)
            training = {
                key: self.values(container, training_map, key, None, _TRAINING_DEFAULTS[key])
                for key in TRAINING_AXES
            }
            rule_path = container
        else:
            training = {
                key: self.values(origin, mapping, key, base.training[key], None)
                for key in TRAINING_AXES
            }
            rule_path = origin if ("steps" in mapping or "epochs" in mapping) else ("training",)
        self.check_steps_epochs(training, rule_path)
        return _RunSet(origin, axes, tasks, training)

    def check_steps_epochs(self, training: dict[str, list[_Value]], path: KeyPath) -> None:
        for steps, epochs in itertools.product(training["steps"], training["epochs"]):
            if steps.value is not None and epochs.value is not None:
                self.add(
                    path,
                    "both steps and epochs are set; give exactly one",
                    "steps counts optimizer updates, epochs passes over the training set",
                )
            elif steps.value is None and epochs.value is None:
                self.add(
                    path,
                    "one of steps or epochs is required",
                    "e.g. training: {steps: 200}" if path == ("training",) else "e.g. {steps: 200}",
                )

    def task_choice(self, value: _Value) -> _TaskChoice | None:
        """Check one task entry (name, parameter names, types, values) and expand its params."""
        raw = value.value
        if isinstance(raw, str):
            name, params, name_path = raw, {}, value.path
        elif isinstance(raw, dict) and isinstance(raw.get("name"), str):
            name, name_path = raw["name"], (*value.path, "name")
            params = raw.get("params") if isinstance(raw.get("params"), dict) else {}
        else:
            return None
        entry = self.registry.tasks.get(name)
        if entry is None:
            self.add(
                name_path,
                f"unknown task {name!r}",
                self.name_hint(name, sorted(self.registry.tasks)),
            )
            return None
        fields = {f.name: f for f in entry.task_class.parameters()}
        hints = self.type_hints(entry.task_class)
        given: list[tuple[str, list[Any]]] = []
        ok = True
        for key, raw_value in params.items():
            path = (*value.path, "params", key)
            if key not in fields:
                hint = did_you_mean(key, fields) if fields else f"task {name!r} takes no parameters"
                self.add(path, f"task {name!r} has no parameter {key!r}", hint)
                ok = False
                continue
            items = raw_value if isinstance(raw_value, list) else [raw_value]
            converted = []
            for index, item in enumerate(items):
                expected = _type_mismatch(item, hints.get(key))
                if expected is not None:
                    item_path = (*path, index) if isinstance(raw_value, list) else path
                    got = _show(item) + (" (a string)" if isinstance(item, str) else "")
                    self.add(
                        item_path,
                        f"expected {expected}, got {got}",
                        f"parameter {key!r} of task {name!r}",
                    )
                    ok = False
                converted.append(_convert(item, hints.get(key)))
            given.append((key, converted))
        if not ok:
            return None
        defaults = {key: _convert(_default(f), hints.get(key)) for key, f in fields.items()}
        combos = []
        for combo in itertools.product(*(values for _, values in given)):
            chosen = dict(zip([key for key, _ in given], combo, strict=True))
            try:
                entry.task_class(**chosen)
            except Exception as exc:  # the task's own check, in its __post_init__
                shown = ", ".join(f"{k}={v!r}" for k, v in chosen.items())
                kind = "" if isinstance(exc, (ValueError, TypeError)) else f"{type(exc).__name__}: "
                self.add(
                    value.path,
                    f"task {name!r} rejects {shown or 'its defaults'}: {kind}{exc}",
                    line=value.line,
                )
                ok = False
                continue
            combos.append(tuple(sorted({**defaults, **chosen}.items())))
        return _TaskChoice(entry, combos, defaults) if ok else None

    def type_hints(self, cls: type) -> dict[str, Any]:
        if cls not in self._hints_cache:
            try:
                self._hints_cache[cls] = typing.get_type_hints(cls)
            except Exception:  # an annotation that cannot be resolved: skip type checks
                self._hints_cache[cls] = {}
        return self._hints_cache[cls]

    def metrics(self) -> tuple[str, ...]:
        raw = self.doc.data.get("metrics", _MISSING)
        if raw is _MISSING:
            return tuple(sorted(self.registry.metrics))
        names = []
        for index, name in enumerate(_list(raw)):
            if not isinstance(name, str):
                continue
            if name not in self.registry.metrics:
                self.add(
                    ("metrics", index),
                    f"unknown metric {name!r}",
                    self.name_hint(name, sorted(self.registry.metrics)),
                )
            names.append(name)
        return tuple(dict.fromkeys(names))

    def excludes(self, run_sets: list[_RunSet]) -> list[dict[str, list[Any]]]:
        """Each exclude entry as {flat key: accepted values}; names checked, so a typo in an
        exclude is reported rather than silently matching nothing."""
        params = sorted(
            {
                f.name
                for run_set in run_sets
                for choice in run_set.tasks
                for f in choice.entry.task_class.parameters()
            }
        )
        known = {
            "cell": self.registry.cell_names,
            "backend": self.registry.backend_names,
            "task": sorted(self.registry.tasks),
        }
        result = []
        for index, entry in enumerate(_list(self.doc.data.get("exclude"))):
            if not isinstance(entry, dict):
                continue
            criteria: dict[str, list[Any]] = {}
            for key, raw in entry.items():
                path: KeyPath = ("exclude", index, key)
                values = raw if isinstance(raw, list) else [raw]
                if key in known:
                    for position, item in enumerate(values):
                        if isinstance(item, str) and item not in known[key]:
                            item_path = (*path, position) if isinstance(raw, list) else path
                            self.add(
                                item_path,
                                f"unknown {key} {item!r}",
                                self.name_hint(item, known[key]),
                            )
                elif key.startswith("task.") and not self._task_failed and key[5:] not in params:
                    self.add(
                        path,
                        f"no task of this suite has a parameter {key[5:]!r}",
                        did_you_mean(key, [f"task.{p}" for p in params]),
                    )
                criteria[key] = values
            result.append(criteria)
        return result

    # -- expansion ------------------------------------------------------------------------------

    def expand(self, run_set: _RunSet) -> Iterator[tuple[RunSpec, _Value, _Value]]:
        """Every run of one set, in the order its values are listed: cell, backend, task
        (entry, then parameter combination), the other axes, then the training settings."""
        axes = run_set.axes
        tasks = [(choice, combo) for choice in run_set.tasks for combo in choice.combos]
        training_lists = [run_set.training[key] for key in TRAINING_AXES]
        hints = self.type_hints(TrainingConfig)
        product = itertools.product(
            axes["cell"], axes["backend"], tasks, axes["hidden_size"], axes["num_layers"],
            axes["bias"], axes["dtype"], axes["seed"], *training_lists,
        )  # fmt: skip
        for cell, backend, (choice, combo), hidden, layers, bias, dtype, seed, *train in product:
            training = TrainingConfig(
                **{
                    key: _convert(value.value, hints.get(key))
                    for key, value in zip(TRAINING_AXES, train, strict=True)
                }
            )
            spec = RunSpec(
                cell=cell.value,
                backend=backend.value,
                task=choice.entry.name,
                task_params=combo,
                hidden_size=hidden.value,
                num_layers=layers.value,
                bias=bias.value,
                dtype=dtype.value,
                seed=seed.value,
                training=training,
                label_params=tuple(
                    key for key, value in combo if not _same(value, choice.defaults.get(key))
                ),
            )
            yield spec, cell, backend

    def missing_pair(self, cell: _Value, backend: _Value) -> None:
        where = backend if backend.explicit else cell
        available = ", ".join(self.registry.backends_of(cell.value)) or "none"
        self.add(
            where.path,
            f"cell {cell.value!r} has no backend {backend.value!r}; available: {available}",
            f"exclude the pair: exclude: [{{cell: {cell.value}, backend: {backend.value}}}]",
            line=where.line,
        )

    def unavailable(self, entry: CellEntry) -> str | None:
        key = (entry.name, entry.backend)
        if key not in self._availability:
            self._availability[key] = entry.unavailable_reason()
        return self._availability[key]


# --- helpers --------------------------------------------------------------------------------------


def _problem_order(problem: SuiteProblem) -> tuple[bool, int]:
    return (problem.line is None, problem.line or 0)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _matches(spec: RunSpec, criteria: dict[str, list[Any]]) -> bool:
    flat = spec.flat()
    return all(
        key in flat and any(_same(flat[key], value) for value in values)
        for key, values in criteria.items()
    )


def _same(a: Any, b: Any) -> bool:
    """Equality as a suite means it: 1 matches 1.0, but true never matches 1."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _default(f: dataclasses.Field) -> Any:  # type: ignore[type-arg]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _union_args(annotation: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return None


def _type_mismatch(value: Any, annotation: Any) -> str | None:
    """What ``annotation`` expects when ``value`` does not fit it, else ``None``.

    Understands the annotations task parameters use: int, float (an int is accepted), bool,
    str, Literal and unions with None. bool is not an int here, though Python says it is. Any
    other annotation is not checked: the task's own ``__post_init__`` still is.
    """
    args = _union_args(annotation)
    if args is not None:
        parts = [_type_mismatch(value, arg) for arg in args]
        if any(part is None for part in parts):
            return None
        return " or ".join(part for part in parts if part)
    if typing.get_origin(annotation) is typing.Literal:
        choices = typing.get_args(annotation)
        if any(_same(value, choice) for choice in choices):
            return None
        return "one of " + ", ".join(_show(choice) for choice in choices)
    is_bool = isinstance(value, bool)
    checks = {
        int: ("an integer", isinstance(value, int) and not is_bool),
        float: ("a number", isinstance(value, (int, float)) and not is_bool),
        bool: ("true or false", is_bool),
        str: ("a string", isinstance(value, str)),
        type(None): ("null", value is None),
    }
    if annotation in checks:
        expected, ok = checks[annotation]
        return None if ok else expected
    return None


def _convert(value: Any, annotation: Any) -> Any:
    """An int where the field wants a float becomes a float, so ``lr: 1`` and ``lr: 1.0`` (and
    a task default written ``0``) give the same run id."""
    if not isinstance(value, int) or isinstance(value, bool):
        return value
    allowed = _union_args(annotation) or (annotation,)
    if float in allowed and int not in allowed:
        return float(value)
    return value


def _show(value: Any) -> str:
    """A value as YAML would spell it, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
