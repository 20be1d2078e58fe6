"""Reading ``results.jsonl`` without trusting it: every line either becomes a RunRecord or is
skipped with its line number and the reason, so a corrupt record never takes a command down.

A line is skipped when it is not JSON (a torn write, a stray edit), not a JSON object, lacks a
key every record has, or holds a key of the wrong type (a ``run_id`` that is a list, ``metrics``
that is not an object). ``$float`` objects (:mod:`rnnbench.json_numbers`) are decoded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from rnnbench.json_numbers import decode_nonfinite
from rnnbench.records import RunRecord

#: Keys every record has, and the JSON types they must have.
REQUIRED = {"run_id": str, "label": str, "suite": str, "config": dict, "status": str}
#: Keys a record may lack, and the JSON types they must have when present (None allowed).
OPTIONAL = {"metrics": dict, "curve": list, "error": str, "started": str,
            "seconds": (int, float), "task_label": str, "provenance": dict}


class BadRecord(ValueError):
    """A line that is not a readable record; the message says why, in a few words."""


@dataclass
class RecordFile:
    """The readable records of a results file (the latest per run id, in first-recorded order)
    and the lines skipped, as ``(line number, reason)``."""

    path: Path
    records: list[RunRecord] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def skipped_line(self) -> str | None:
        """One line for the user about the skipped records, or None when there were none."""
        if not self.skipped:
            return None
        number, reason = self.skipped[0]
        count = len(self.skipped)
        more = f" (and {count - 1} more)" if count > 1 else ""
        noun = "record" if count == 1 else "records"
        return (f"{self.path}: skipped {count} unreadable {noun}: line {number}: {reason}{more}; "
                "the other records are used")


def parse_record(line: str | bytes) -> RunRecord:
    """One line of ``results.jsonl`` as a RunRecord; :class:`BadRecord` when it is not one."""
    try:
        data = json.loads(line)
    except RecursionError:
        raise BadRecord("nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, integers beyond Python's digit limit
        raise BadRecord(f"not JSON ({exc})") from None
    data = decode_nonfinite(data)
    if not isinstance(data, dict):
        raise BadRecord(f"a JSON {type(data).__name__}, not an object")
    for key, kind in REQUIRED.items():
        if key not in data:
            raise BadRecord(f"no {key!r}")
        if not isinstance(data[key], kind):
            raise BadRecord(f"{key!r} is a {type(data[key]).__name__}")
    for key, kinds in OPTIONAL.items():
        value = data.get(key)
        if value is not None and not isinstance(value, kinds):
            raise BadRecord(f"{key!r} is a {type(value).__name__}")
    if not all(isinstance(point, dict) for point in data.get("curve") or []):
        raise BadRecord("'curve' holds a point that is not an object")
    if not all(isinstance(name, str) for name in data.get("metrics") or {}):
        raise BadRecord("'metrics' has a name that is not a string")
    if _has_huge_integer(data):
        raise BadRecord("an integer beyond the float range")
    record = RunRecord.from_dict(data)
    record.metrics = record.metrics or {}
    record.curve = record.curve or []
    return record


def _has_huge_integer(value: Any) -> bool:
    """Whether ``value`` holds an integer no float can hold (tables and compare take floats of
    numbers)."""
    if isinstance(value, int):
        return abs(value) >= 2 ** 1024
    if isinstance(value, dict):
        return any(_has_huge_integer(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_huge_integer(item) for item in value)
    return False


def read_record_file(path: Path) -> RecordFile:
    """Every readable record of ``path`` (latest per run id) and the skipped lines. Raises
    ``OSError`` when the file cannot be read at all; undecodable bytes make a line unreadable."""
    result = RecordFile(Path(path))
    latest: dict[str, RunRecord] = {}
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = parse_record(_text(raw))
            except BadRecord as exc:
                result.skipped.append((number, str(exc)))
                continue
            latest[record.run_id] = record
    result.records = list(latest.values())
    return result


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRecord(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None


def as_mapping(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (for optional environment parts)."""
    return value if isinstance(value, dict) else {}


class StoreWarning(UserWarning):
    """Something about a results folder the user should know, said in one line (skipped
    records, a repaired torn line, a resume against a different suite or environment)."""


#: Where :func:`repair_torn_tail` moves a partial last line.
TORN_FILE = "results.torn.jsonl"


def repair_torn_tail(path: Path) -> str | None:
    """Make ``path`` end with a whole line before anything is appended to it.

    A partial last line (no newline and not a whole JSON value, or not JSON at all) is what a
    crash or a full disk leaves; appending after it would merge the next record into it. It is
    moved to :data:`TORN_FILE` beside ``path`` (one JSON line holding the text and a note) and cut
    off. A whole record that only lacks its newline gets one. Returns the line to tell the user,
    or None when the file was sound."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    with open(path, "r+b") as handle:
        start, tail = _last_line(handle)
        if not tail.strip() or (tail.endswith(b"\n") and _is_json(tail)):
            return None
        if _is_json(tail):  # a whole record without its newline
            handle.seek(0, os.SEEK_END)
            handle.write(b"\n")
            handle.flush()
            os.fsync(handle.fileno())
            return None
        number = _count_lines(handle, start) + 1
        note = {
            "moved_from": path.name,
            "line": number,
            "moved_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "note": "partial last line (what a crash or a full disk leaves), moved aside before "
                    "appending",
            "text": tail.decode("utf-8", errors="backslashreplace"),
        }
        with open(path.parent / TORN_FILE, "a", encoding="utf-8") as torn:
            torn.write(json.dumps(note) + "\n")
            torn.flush()
            os.fsync(torn.fileno())
        handle.truncate(start)
        handle.flush()
        os.fsync(handle.fileno())
    return (f"{path}: line {number} was a partial record (a crash or a full disk leaves one); "
            f"moved it to {TORN_FILE}")


def _last_line(handle: BinaryIO, chunk: int = 1 << 16) -> tuple[int, bytes]:
    """The offset and bytes of the file's last line (with its newline, if it has one)."""
    end = handle.seek(0, os.SEEK_END)
    position, tail = end, b""
    while position > 0:
        step = min(chunk, position)
        position -= step
        handle.seek(position)
        tail = handle.read(step) + tail
        cut = tail.rfind(b"\n", 0, len(tail) - 1)
        if cut >= 0:
            return position + cut + 1, tail[cut + 1:]
    return 0, tail


def _count_lines(handle: BinaryIO, end: int, chunk: int = 1 << 20) -> int:
    handle.seek(0)
    count, remaining = 0, end
    while remaining > 0:
        data = handle.read(min(chunk, remaining))
        if not data:
            break
        count += data.count(b"\n")
        remaining -= len(data)
    return count


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except (ValueError, RecursionError):
        return False
    return True
