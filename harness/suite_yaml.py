"""Reading a suite file: YAML -> :class:`SuiteDocument`, with the line of every key and item.

Every problem rnnbench reports about a suite names its file, line and field, so the reader keeps
where each value was written; :class:`SuiteProblems` turns a key path into that location.
Nothing here knows what the keys mean: the schema (:mod:`rnnbench.suite_schema`) and the
registry checks (:mod:`rnnbench.suite`) do.

YAML is read with a :class:`yaml.SafeLoader` subclass (never a loader that can build arbitrary
objects). It differs from PyYAML's default in three ways, each to make suites less surprising:
it records the line of every key and list item; a duplicate key is an error instead of a silent
override; and ``1e-3`` is a float (YAML 1.1 requires ``1.0e-3``), as it is in YAML 1.2.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rnnbench.errors import SuiteError, SuiteProblem

__all__ = [
    "KeyPath",
    "SuiteDocument",
    "SuiteProblems",
    "field_name",
    "read_suite",
    "yaml_text",
]

#: A key path into the suite document: mapping keys and list indices.
KeyPath = tuple[str | int, ...]

# --- YAML with line numbers -----------------------------------------------------------------------


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


# --- Documents ------------------------------------------------------------------------------------


@dataclass
class SuiteDocument:
    """A parsed suite file, not yet validated against the plugins.

    Kept separate from :class:`~rnnbench.suite.Suite` because the file itself names plugins
    (``plugins:``) that must be loaded before its cells and tasks can be checked.
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
                    f"expected a mapping of suite keys, got {yaml_text(raw)}",
                    "start with e.g. 'name: my-suite' on the first line",
                )
            ]
        )
    lines: dict[KeyPath, int] = {(): raw.line}
    problems: list[SuiteProblem] = []
    data = _to_plain(raw, (), lines, problems, file, set())
    if problems:
        raise SuiteError(in_file_order(problems))
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


# --- Problems -------------------------------------------------------------------------------------


class SuiteProblems:
    """The problems found in one suite document, each placed at its file, line and field.

    Every check adds to one collector and they are raised together, in file order, so a user
    fixes them all in one pass instead of one per attempt.
    """

    def __init__(self, doc: SuiteDocument) -> None:
        self.doc = doc
        self.found: list[SuiteProblem] = []

    def add(
        self, path: KeyPath, message: str, hint: str | None = None, line: int | None = None
    ) -> None:
        """Record a problem at ``path`` (its line, or its closest ancestor's when the key is
        missing, unless ``line`` says otherwise); a problem already recorded is not repeated."""
        if line is None:
            line = self.doc.nearest_line(*path)
        problem = SuiteProblem(str(self.doc.path), line, field_name(path), message, hint)
        if problem not in self.found:
            self.found.append(problem)

    def raise_if_any(self) -> None:
        if self.found:
            raise SuiteError(in_file_order(self.found))


def in_file_order(problems: list[SuiteProblem]) -> list[SuiteProblem]:
    """Sorted by line (stable: problems on one line keep the order they were found in); problems
    without a line come last."""
    return sorted(problems, key=lambda problem: (problem.line is None, problem.line or 0))


def yaml_text(value: Any) -> str:
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
