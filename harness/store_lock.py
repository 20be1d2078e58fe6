"""One writer per results folder: ``rnnbench run`` holds a lock on ``.rnnbench.lock`` in the
folder for the whole run, so two runs never interleave their records.

The lock is ``fcntl.flock`` on the file: the kernel drops it when the holder exits, however it
exits (even ``kill -9``), so a lock left by a process that is gone never blocks. The file holds
who took the lock (pid, host, since when, command) so that a second run can say who holds it.
Where ``fcntl`` does not exist (Windows, not a target) the folder is not locked.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from rnnbench.errors import RnnbenchError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".rnnbench.lock"


class FolderLocked(RnnbenchError):
    """Another process is writing the results folder."""


@contextlib.contextmanager
def results_folder_lock(directory: Path) -> Iterator[None]:
    """Hold the folder's lock for the ``with`` block; :class:`FolderLocked` (one line naming the
    holder) when another process holds it."""
    directory = Path(directory)
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderLocked(
                f"{directory}: another rnnbench run is writing this results folder "
                f"({_holder(fd)}); wait for it to finish or choose another folder with -o"
            ) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    """Who holds the lock, in words, from what the holder wrote into the lock file."""
    try:
        info = json.loads(os.pread(fd, 64 * 1024, 0) or b"{}")
    except (OSError, ValueError):
        info = None
    if not isinstance(info, dict) or not info:
        return "holder unknown"
    return (f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}: "
            f"{info.get('command')}")
