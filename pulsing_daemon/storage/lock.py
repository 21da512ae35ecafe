"""One daemon per ``state_dir``: an exclusive ``flock`` on ``state_dir/daemon.lock``.

The lock is held for the life of the process through one open file descriptor (not
inherited by children: Python opens files close-on-exec). The kernel drops it when the
process dies, however it dies, so a SIGKILLed daemon never leaves a stale lock behind;
the file itself stays (removing it would let two daemons lock two different files).
The holder writes its pid into the file, so a refused daemon can name it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "daemon.lock"


class StateDirLocked(Exception):
    """Another live process holds the lock; ``pid`` is its pid when it could be read."""

    def __init__(self, path: Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "a process whose pid is not recorded yet"
        super().__init__(
            f"state_dir {path.parent} is in use by another pulsing daemon ({holder}); "
            "stop that daemon first, or give this one another state_dir"
        )
        self.path = path
        self.pid = pid


class StateDirLock:
    """The held lock; ``release`` (or process exit) lets the next daemon take it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def acquire(state_dir: Path) -> StateDirLock:
    """Take the lock on ``state_dir`` (which must exist) or raise StateDirLocked.

    OSError for a lock file that cannot be opened (permissions, read-only fs).
    """
    path = state_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(fd)
        os.close(fd)
        raise StateDirLocked(path, pid) from None
    except OSError:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return StateDirLock(path, fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
