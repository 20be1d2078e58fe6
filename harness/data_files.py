"""Task parameters that name data files: where a relative path points, and what identifies the
data.

A task declares such a parameter with ``rnnbench.param(default, help, path=True)``. A value
that looks like a path (it has a ``/`` or ``\\`` or a file suffix such as ``.csv``; a bare word
like ``sunspots`` is a name the task interprets itself) is resolved against the suite file's
folder, as the suite's ``plugins:`` are, so a suite runs the same from any working directory.
The run id then covers the file's *content* (a SHA-256 digest), not its path: one id never
stands for two different data sets, and moving the same file elsewhere keeps the id.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from rnnbench.errors import RnnbenchError

#: Hex digits of the SHA-256 digest kept (64 bits: no accidental collisions among data files).
DIGEST_LENGTH = 16


def is_path_parameter(field: dataclasses.Field) -> bool:  # type: ignore[type-arg]
    """Whether a task parameter was declared with ``param(..., path=True)``."""
    return bool(field.metadata.get("path"))


def looks_like_path(value: Any) -> bool:
    """A string with a folder separator or a file suffix; bare words are names, not files."""
    if not isinstance(value, str) or not value:
        return False
    return "/" in value or "\\" in value or Path(value).suffix != ""


def resolve(value: str, base_dir: Path) -> Path:
    """``value`` as an absolute path, a relative one taken from ``base_dir`` (the suite's
    folder); ``~`` is the home folder."""
    path = Path(value).expanduser()
    return (path if path.is_absolute() else base_dir / path).resolve()


def content_digest(path: Path) -> str:
    """The first :data:`DIGEST_LENGTH` hex digits of the SHA-256 of the file's bytes. Raises
    ``OSError`` when it cannot be read."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:DIGEST_LENGTH]


def check_unchanged(data_files: tuple[tuple[str, str], ...], task_params: dict[str, Any]) -> None:
    """Raise :class:`RnnbenchError` when a data file no longer has the digest its run id was
    made with (edited between validation and the run): the record would otherwise claim other
    data."""
    for name, digest in data_files:
        path = Path(task_params[name])
        try:
            now = content_digest(path)
        except OSError as exc:
            raise RnnbenchError(
                f"data file {str(path)!r} ({name}) cannot be read: {exc}"
            ) from exc
        if now != digest:
            raise RnnbenchError(
                f"data file {str(path)!r} ({name}) changed since the suite was validated "
                f"(sha256 {digest} then, {now} now); run the suite again to give it a new run id"
            )
