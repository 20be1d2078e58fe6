"""Reading a suite file: YAML -> :class:`SuiteDocument`, with the line of every key and item.

Every problem rnnbench reports about a suite names its file, line and field, so the reader keeps
where each value was written; :class:`SuiteProblems` turns a key path into that location.
Nothing here knows what the keys mean: the schema (:mod:`rnnbench.suite_schema`) and the
registry checks (:mod:`rnnbench.suite`) do.

YAML is read with a :class:`yaml.SafeLoader` subclass (never a loader that can build arbitrary
objects). It differs from PyYAML's default in three ways, each to make suites less surprising:
it records the line of every key and list item; a duplicate key is an error instead of a silent
override; and ``1e-3`` is a float (YAML 1.1 requires ``1.0e-3``), as it is in YAML 1.2.

A suite file is untrusted input, so before anything is built the text is checked against limits
far above any real suite (:data:`MAX_FILE_BYTES`, :data:`MAX_DEPTH`, :data:`MAX_NODES`): control
characters, nesting that would exhaust the recursion of the composer, and aliases that expand
to millions of values ("billion laughs") are each one problem with a line, found in one pass
over the parser's events, in time and memory linear in the file.
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
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "KeyPath",
    "SuiteDocument",
    "SuiteProblems",
    "field_name",
    "read_suite",
    "yaml_text",
]

#: A key path into the suite document: mapping keys and list indices.
KeyPath = tuple[str | int, ...]

#: The largest suite file read (bytes); real suites are a few kilobytes.
MAX_FILE_BYTES = 2 * 1024 * 1024
#: The deepest nesting of mappings and lists; real suites nest four or five levels.
MAX_DEPTH = 50
#: The most values (scalars, mappings, lists) a suite may hold once its aliases are expanded.
MAX_NODES = 100_000

# What YAML 1.1 allows in a stream (PyYAML's Reader refuses anything else, with a traceback).
_NOT_PRINTABLE = re.compile(
    "[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]"
)

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

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A scalar PyYAML cannot convert (the date 2001-02-30) or an integer too large for
        any suite value (5000 digits) is a YAML error at its line, not a traceback."""
        try:
            value = super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:
            reason = str(exc)
            if "integer string conversion" in reason:
                reason = _HUGE_INTEGER
            raise self._unreadable(node, reason) from None
        if isinstance(value, int) and value.bit_length() > 256:  # no suite value is this large
            raise self._unreadable(node, _HUGE_INTEGER)
        return value

    @staticmethod
    def _unreadable(node: yaml.Node, reason: str) -> yaml.YAMLError:
        text = str(node.value)
        shown = text if len(text) <= 40 else text[:37] + "..."
        return yaml.constructor.ConstructorError(
            None, None, f"cannot read the value {shown!r}: {reason}", node.start_mark
        )


_HUGE_INTEGER = "an integer too large to be a suite value"


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
    #: Key paths of ``data`` that were written elsewhere in the file, by prefix: a variant's
    #: overlay (``("training", "steps")`` written at ``("variants", "full", "training",
    #: "steps")``), so a problem names the field the user wrote. Empty for a file as read.
    aliases: dict[KeyPath, KeyPath] = field(default_factory=dict, repr=False)

    def written_path(self, path: KeyPath) -> KeyPath:
        """Where the value at ``path`` of ``data`` was written (see :attr:`aliases`)."""
        for end in range(len(path), 0, -1):
            written = self.aliases.get(tuple(path[:end]))
            if written is not None:
                return (*written, *path[end:])
        return tuple(path)

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
        with path.open("rb") as stream:  # bounded: a huge file (or /dev/zero) is never loaded
            raw_bytes = stream.read(MAX_FILE_BYTES + 1)
        if len(raw_bytes) > MAX_FILE_BYTES:
            raise SuiteError([_too_large(file)])
        text = raw_bytes.decode("utf-8")
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
    problem = _control_character(file, text)
    if problem is not None:
        raise SuiteError([problem])
    try:
        problem = _check_limits(file, text)
        if problem is not None:
            raise SuiteError([problem])
        loader = _SuiteLoader(text)
        try:
            raw = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise SuiteError([_yaml_problem(file, exc, text)]) from None
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


def _too_large(file: str) -> SuiteProblem:
    return SuiteProblem(
        file,
        None,
        "(file)",
        f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB",
        "a suite lists axes and values; is this the right file?",
    )


def _control_character(file: str, text: str) -> SuiteProblem | None:
    """The first character YAML does not allow in a file (NUL, other control codes)."""
    found = _NOT_PRINTABLE.search(text)
    if found is None:
        return None
    line = text.count("\n", 0, found.start()) + 1
    code = f"U+{ord(found.group()):04X}"
    return SuiteProblem(
        file,
        line,
        "(yaml)",
        f"control character {code} is not allowed in YAML",
        "delete it; is the file binary or corrupted? (in a double-quoted string, write it as "
        "an escape such as \\t)",
    )


def _check_limits(file: str, text: str) -> SuiteProblem | None:
    """Nesting depth and the size of the document once aliases are expanded, from the parser's
    events alone: nothing is composed or built, so a file that would exhaust the recursion or
    the memory of those steps is refused after reading it once.

    Each anchor's size (the values it stands for, aliases inside it expanded) is recorded when
    it closes; an alias adds its anchor's size. The running total stops at :data:`MAX_NODES`,
    so the counts never grow beyond it however the aliases multiply.
    """
    sizes: dict[str, int] = {}
    stack: list[list[Any]] = []  # per open mapping or list: [anchor, values in it so far]
    total = 0
    aliased = False
    for event in yaml.parse(text, Loader=_SuiteLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            stack.append([event.anchor, 1])
            if len(stack) > MAX_DEPTH:
                return SuiteProblem(
                    file,
                    event.start_mark.line + 1,
                    "(yaml)",
                    f"nested more than {MAX_DEPTH} levels deep",
                    "a suite needs a few levels; is this the right file?",
                )
            continue
        if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            anchor, size = stack.pop()
        elif isinstance(event, yaml.ScalarEvent):
            anchor, size = event.anchor, 1
        elif isinstance(event, yaml.AliasEvent):
            anchor, size = None, sizes.get(event.anchor, 1)  # undefined: the composer says so
            aliased = True
        else:
            continue
        if anchor is not None:
            sizes[anchor] = size
        if stack:
            stack[-1][1] += size
            grown = sum(frame[1] for frame in stack)
        else:
            total += size
            grown = total
        if grown > MAX_NODES:
            what = "alias expansion too large: " if aliased else ""
            return SuiteProblem(
                file,
                event.start_mark.line + 1,
                "(yaml)",
                f"{what}the document holds more than {MAX_NODES} values"
                + (" once its aliases are expanded" if aliased else ""),
                "reuse anchors sparingly; a suite lists a few axes and values",
            )
    return None


#: A key whose value starts with ``>`` or ``<`` unquoted (``expect: > 0.9``): YAML reads ``>`` as
#: a folded block and fails with a message about indentation; the fix is the quotes.
_UNQUOTED_COMPARISON = re.compile(r"""^\s*(?:-\s+)?([A-Za-z_][\w.]*):\s*(?:[<>]=?)\s*[^\s'"]""")


def _yaml_problem(file: str, exc: yaml.YAMLError, text: str = "") -> SuiteProblem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    if line is not None:
        source = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
        unquoted = _UNQUOTED_COMPARISON.match(source)
        if unquoted is not None:
            key, value = unquoted.group(1), source.split(":", 1)[1].strip()
            return SuiteProblem(
                file, line, key, f"the comparison {value} must be quoted: YAML reads a leading "
                f"'{value[0]}' as {'a folded block' if value[0] == '>' else 'a reserved sign'}",
                f'write {key}: "{value}"')
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
        shown = field_name(self.doc.written_path(path))
        problem = SuiteProblem(str(self.doc.path), line, shown, message, hint)
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
