"""The one atomic writer: a file appears complete under its name or not at all, and survives a power cut.

Each write goes to a hidden temporary name in the same folder, is fsynced, the folder is fsynced (so the
temporary entry exists on disk), the temporary is renamed over the final name, and the folder is fsynced
again (so the rename is on disk). ``DURABLE = False`` skips the fsyncs (benchmarks measure their cost).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from lor2c_probe.errors import StorageError

DURABLE = True


def fsync_dir(folder: Path) -> None:
    if not DURABLE:
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as e:  # some file systems cannot fsync a directory (the rename is still atomic there); other errors count
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    if not DURABLE:
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably and atomically; a failure (e.g. a full disk) is a StorageError naming ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if DURABLE:
                os.fsync(f.fileno())
        fsync_dir(path.parent)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {e.strerror or e}") from e


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def read_json(path: Path, what: str = "file") -> Any:
    """Parse a JSON file; a missing, unreadable or truncated one is a StorageError naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StorageError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise StorageError(f"{path}: {what} is damaged or truncated ({e})") from None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
