"""Where results may be written, and which files in a results folder rnnbench may replace.

A results folder lists the files rnnbench wrote in it in a manifest (:data:`MANIFEST`). A run
writes only into a folder that is empty, new, or already an rnnbench results folder (one with a
manifest, or, as older versions left them, ``results.jsonl`` and ``environment.json``), unless
the caller forces it; it never replaces a file that is not in the manifest: such a file of a
name the run itself needs (``results.jsonl``, ``environment.json``, ``suite.yaml``) refuses the
run up front, and a reporter's file of such a name is left alone with a
:class:`KeptFileWarning`. A folder that holds the suite file, the working directory or the home
folder (``/``, ``..``, the suite's own folder, ...) is never a results folder.

Reporters write into a fresh staging folder inside the results folder
(:func:`staged_reporter_output`); their files are moved into place from there, so a third-party
reporter cannot replace a user's file either, whatever it writes with.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rnnbench.errors import RnnbenchError
from rnnbench.record_file import TORN_FILE
from rnnbench.results import ENVIRONMENT_FILE, RESULTS_FILE, SUITE_COPY, atomic_write_text
from rnnbench.store_lock import LOCK_FILE

#: The list of files rnnbench wrote in a results folder (relative paths, ``/``-separated).
MANIFEST = ".rnnbench-manifest.json"
#: Files a run writes itself (the reporters' come on top): one the user owns refuses the run.
RUN_FILES = (RESULTS_FILE, ENVIRONMENT_FILE, SUITE_COPY)
_STAGING_PREFIX = ".rnnbench-staging-"


class KeptFileWarning(UserWarning):
    """A reporter's file was not written because a file rnnbench did not write has its name."""


@dataclass
class OutputDir:
    """A results folder that passed :func:`check_output_dir`, and the files rnnbench owns in it."""

    path: Path
    #: Relative paths of the files rnnbench wrote there (the manifest's list).
    owned: set[str] = field(default_factory=set)
    #: What the folder holds: ``training`` or ``kernels`` results (None: keep the manifest's).
    kind: str | None = None
    #: The kernels suite whose results these are (None: keep the manifest's).
    suite: str | None = None

    def claim(self, *names: str) -> None:
        """Record ``names`` as rnnbench's and save the manifest (only when it changes)."""
        manifest = self.path / MANIFEST
        recorded = _manifest_document(manifest) if manifest.is_file() else {}
        kind = self.kind or recorded.get("kind")
        suite = self.suite or recorded.get("suite")
        if (sorted(self.owned | set(names)) == recorded.get("files")
                and kind == recorded.get("kind") and suite == recorded.get("suite")):
            return
        self.owned.update(names)
        document: dict[str, object] = {"rnnbench_manifest": 1}
        if kind:
            document["kind"] = kind
        if suite:
            document["suite"] = suite
        document["files"] = sorted(self.owned)
        atomic_write_text(manifest, json.dumps(document, indent=1) + "\n")


def _manifest_document(manifest: Path) -> dict[str, object]:
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def folder_kind(path: Path, owned: set[str] | None = None) -> tuple[str | None, str | None]:
    """(kind, suite name) of the results in ``path``: the manifest's record, else guessed from
    the files (``results.jsonl``: training; ``kernels.csv``: kernels, named in results.json);
    (None, None) for a folder with neither."""
    path = Path(path)
    recorded = _manifest_document(path / MANIFEST) if (path / MANIFEST).is_file() else {}
    kind, suite = recorded.get("kind"), recorded.get("suite")
    files = owned if owned is not None else set(recorded.get("files") or [])
    if kind is None:
        if RESULTS_FILE in files or (path / RESULTS_FILE).is_file():
            kind = "training"
        elif "kernels.csv" in files or (path / "kernels.csv").is_file():
            kind = "kernels"
    if kind == "kernels" and suite is None and (path / "results.json").is_file():
        try:
            suite = json.loads((path / "results.json").read_text(encoding="utf-8")).get("suite")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            suite = None
    return (str(kind) if kind else None, str(suite) if suite else None)


def check_output_dir(path: Path, suite_path: Path | None = None, *, force: bool = False,
                     run_files: tuple[str, ...] = RUN_FILES, kind: str = "training",
                     suite_name: str | None = None) -> OutputDir:
    """Check that a run may write into ``path`` before anything is written; raise
    :class:`RnnbenchError` (one line: the path, why, and what to do) when it may not.

    Refused: a folder that is or holds the suite file, the working directory or the home folder;
    a path that is a file or lies under one; a folder rnnbench cannot write; an existing,
    non-empty folder that is not an rnnbench results folder (unless ``force``); a results
    folder of the other ``kind`` (training vs kernels), or of another kernels suite than
    ``suite_name`` (unless ``force``); and, even with ``force``, a folder holding a file of one
    of ``run_files`` that rnnbench did not write.
    """
    path = Path(path)
    _refuse_protected_location(path, suite_path)
    require_writable_folder(path)
    if not path.exists():
        return OutputDir(path, kind=kind, suite=suite_name)
    owned = owned_files(path)
    if owned is None:
        if not force and any(_visible_entries(path)):
            raise RnnbenchError(
                f"{path}: folder is not empty and is not an rnnbench results folder (no {MANIFEST}"
                f", no {RESULTS_FILE} with {ENVIRONMENT_FILE}); choose another output folder, or "
                "add --force to write into it (files rnnbench did not write are never replaced)"
            )
        owned = set()
    elif not force:
        held, held_suite = folder_kind(path, owned)
        if held is not None and held != kind:
            raise RnnbenchError(
                f"{path}: holds the results of a {held} suite, this is a {kind} suite; choose "
                "another output folder, or add --force to write into it anyway")
        if (kind == "kernels" and held == "kernels" and suite_name is not None
                and held_suite is not None and held_suite != suite_name):
            raise RnnbenchError(
                f"{path}: holds the results of kernels suite {held_suite!r}, not {suite_name!r}; "
                "choose another output folder, or add --force to write into it anyway")
    for name in run_files:
        if name not in owned and (path / name).exists():
            raise RnnbenchError(
                f"{path / name}: not written by rnnbench, so it will not be replaced; move it "
                "away or choose another output folder"
            )
    return OutputDir(path, owned, kind=kind, suite=suite_name)


def owned_files(path: Path) -> set[str] | None:
    """The files rnnbench wrote in the folder ``path``, or None when it is not a results folder.

    A folder that an rnnbench older than the manifest wrote (``results.jsonl`` and
    ``environment.json``, no manifest) is adopted as it is: its files count as rnnbench's.
    """
    manifest = path / MANIFEST
    if manifest.is_file():
        try:
            document = json.loads(manifest.read_text(encoding="utf-8"))
            files = document["files"]
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                raise TypeError("'files' must be a list of strings")
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise RnnbenchError(
                f"{manifest}: unreadable ({exc}); delete it only if every file in {path} "
                "was written by rnnbench"
            ) from exc
        return set(files)
    if (path / RESULTS_FILE).is_file() and (path / ENVIRONMENT_FILE).is_file():
        # Adopt what an older rnnbench wrote (its run files, the built-in reporters' tables and
        # plots), never a user's notes that happen to lie beside them.
        files = (entry.relative_to(path) for entry in path.rglob("*") if entry.is_file())
        return {f.as_posix() for f in files
                if any(fnmatch.fnmatchcase(f.as_posix(), pattern) for pattern in ADOPTED)}
    return None


#: The files an rnnbench from before the manifest wrote into a results folder.
ADOPTED = (*RUN_FILES, "results.md", "runs.csv", "summary.csv", "results.json", "plots/*.png",
           "results.previous*.jsonl")


@contextlib.contextmanager
def staged_reporter_output(out_dir: Path, owned: set[str] | None = None) -> Iterator[Path]:
    """A fresh folder inside ``out_dir`` for one reporter to write into; on a clean exit its
    files are moved into ``out_dir``, except over a file rnnbench did not write (left alone,
    with a :class:`KeptFileWarning`), and the manifest lists the files moved. ``owned``
    defaults to the folder's manifest (none: nothing there is rnnbench's)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if owned is None:
        owned = owned_files(out_dir) or set()
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=_STAGING_PREFIX))
    try:
        try:
            with naming_os_errors(out_dir):
                yield staging
        except OSError as exc:  # name the table's place, not its staging copy
            if isinstance(exc.filename, str) and Path(exc.filename).is_relative_to(staging):
                exc.filename = str(out_dir / Path(exc.filename).relative_to(staging))
            raise
        moved = []
        for source in sorted(p for p in staging.rglob("*") if p.is_file()):
            name = source.relative_to(staging).as_posix()
            target = out_dir / name
            if (target.exists() or target.is_symlink()) and (
                    name not in owned or not target.is_file()):
                warnings.warn(
                    f"{target}: not replaced: rnnbench did not write it (move it away to get "
                    "this table)", KeptFileWarning, stacklevel=3,
                )
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            moved.append(name)
        if moved:
            OutputDir(out_dir, owned).claim(*moved)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def naming_os_errors(path: Path) -> Iterator[None]:
    """Name ``path`` in an OSError that names no file: a full disk fails ``write()`` and
    ``fsync()``, which know only a file descriptor, and the user needs to know where."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


def _refuse_protected_location(path: Path, suite_path: Path | None) -> None:
    resolved = path.resolve()
    protected = [("the working directory", Path.cwd())]
    own_copy = suite_path is not None and Path(suite_path).resolve() == resolved / SUITE_COPY
    if suite_path is not None and not (own_copy and owned_files(path) is not None):
        # A results folder's own suite.yaml may be run again into it (to resume, to re-run).
        protected.insert(0, ("the suite file", Path(suite_path).resolve()))
    with contextlib.suppress(RuntimeError, KeyError):  # no home folder known
        protected.append(("your home folder", Path.home()))
    for what, place in protected:
        if place.resolve().is_relative_to(resolved):
            shown = "is" if place.resolve() == resolved else "holds"
            raise RnnbenchError(
                f"{path}: will not write results into a folder that {shown} {what} ({place}); "
                "choose another output folder (-o DIR, or output: in the suite), e.g. "
                "results/NAME"
            )


def require_writable_folder(path: Path) -> None:
    """A clear line now, not a traceback later, for a path that is a file, lies under a file,
    or lies in a folder rnnbench may not write (``os.access``)."""
    if path.exists() and not path.is_dir():
        raise RnnbenchError(f"{path}: {os.strerror(errno.ENOTDIR)} (a file of that name exists); "
                            "choose another output folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise RnnbenchError(
            f"{path}: {os.strerror(errno.ENOTDIR)} ({existing} is a file); choose another output "
            "folder"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RnnbenchError(
            f"{existing}: {os.strerror(errno.EACCES)} (cannot write there); choose another "
            "output folder"
        )


#: Files the store itself keeps beside the results (the writer's lock, earlier results files, a
#: torn line moved aside, a resumed environment): rnnbench's, never the user's.
BOOKKEEPING = (LOCK_FILE, TORN_FILE, "results.previous-*.jsonl", "environment.resumed-*.json",
               "suite.resumed-*.yaml", f"{_STAGING_PREFIX}*")


def _visible_entries(path: Path) -> Iterator[Path]:
    """What a user would call the folder's contents: anything but rnnbench's own bookkeeping."""
    return (
        entry for entry in path.iterdir()
        if not any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in BOOKKEEPING)
    )
