"""Each process's own scratch directory under the spill directory.

DuckDB spills to fixed file names and the load's pipes are created there: two processes
started from one working directory must never share them. A process holds an exclusive
lock on its directory's lock file for its lifetime; whoever finds a directory whose lock
can be taken knows its process is gone (killed, container stopped) and removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger("tchap_stats")

PREFIX = "run-"
LOCK_FILE = ".lock"


class ProcessDir:
    """A directory of this process's own, removed by `close`, or by the next process to
    start if this one is killed."""

    def __init__(self, parent: Path):
        parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned(parent)
        # Locked under another name first: another process never sees it unlocked.
        new = Path(tempfile.mkdtemp(prefix=f"new-{os.getpid()}-", dir=parent))
        self._lock = os.open(new / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.path = parent / (PREFIX + new.name.removeprefix("new-"))
        new.rename(self.path)

    def close(self) -> None:
        if self._lock < 0:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock)
        self._lock = -1


def remove_abandoned(parent: Path) -> list[Path]:
    """Remove the directories under `parent` whose process is gone (their lock is free),
    and the FIFO directories that versions before per-process directories left there."""
    removed = []
    for path in parent.iterdir():
        if path.is_dir() and _left_behind(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("removed %d scratch director%s left by stopped processes under %s",
                 len(removed), "y" if len(removed) == 1 else "ies", parent)
    return removed


def _left_behind(path: Path) -> bool:
    if path.name.startswith(PREFIX):
        return _abandoned(path)
    return path.name.startswith("tmp") and _only_pipes(path)


def _abandoned(path: Path) -> bool:
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDWR)
    except FileNotFoundError:  # being created or removed right now: leave it
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # releases the lock, if taken
    return True


def _only_pipes(path: Path) -> bool:
    with contextlib.suppress(OSError):
        return all(p.is_fifo() for p in path.iterdir())
    return False
