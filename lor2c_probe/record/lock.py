"""One writer per output folder: an exclusive ``flock`` on ``<folder>/.lock`` held for the writer's lifetime.

The lock file holds the holder's pid, host and start time, so a second writer is told who holds it. The
kernel drops a ``flock`` when its process dies (``kill -9`` included), so a lock file left behind by a dead
process is taken over at once, with a notice naming the process that left it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from lor2c_probe.errors import StorageError, UserError

LOCK = ".lock"


class LockedError(UserError):
    """Another live process writes this folder."""


def _describe(info: dict[str, Any]) -> str:
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}" + (f", since {info['since']}" if info.get("since") else "")


def _read(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        info = json.loads(raw.decode()) if raw.strip() else {}
    except (UnicodeDecodeError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


class DirLock:
    """``with DirLock(folder, "run"):`` — exclusive for the block; ``notice`` receives the take-over message."""

    def __init__(self, folder: Path, what: str = "output folder", notice: Callable[[str], None] | None = None) -> None:
        self.folder, self.what, self.notice = Path(folder), what, notice
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK

    def acquire(self) -> DirLock:
        try:
            return self._acquire()
        except OSError as e:  # a read-only folder, a file system without flock (ENOLCK): one line, not a traceback
            raise StorageError(f"cannot lock {self.what} {self.folder} ({self.path}: {e.strerror or e}); lor2c-probe needs a writable "
                               "folder on a file system with flock") from None

    def _acquire(self) -> DirLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise LockedError(f"{self.what} {self.folder} is being written by another lor2c-probe process ({_describe(holder)}); "
                                  "wait for it to finish or stop it") from None
            except OSError:
                os.close(fd)
                raise
            # A holder that released and unlinked the file between our open and our flock: lock the new file instead.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        left = _read(fd)
        if left.get("pid") and self.notice is not None:
            self.notice(f"took over the lock of {self.folder}: it was left by {_describe(left)}, which is no longer running")
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:  # unlink while still holding it: a waiter that opened this inode re-checks and retries
            if self.path.exists() and os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(folder: Path) -> dict[str, Any] | None:
    """Who writes ``folder`` now (pid, host, since), or None when no live process holds its lock."""
    path = Path(folder) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd) or {"pid": "?"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
