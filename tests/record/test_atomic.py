"""The atomic writer: fsync of the file and of its folder before and after the rename; a failed write names the file."""

from __future__ import annotations

import errno
import os

import pytest

from lor2c_probe.errors import StorageError
from lor2c_probe.record import atomic


def test_file_and_folder_are_fsynced_around_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (calls.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}"))), real_fsync(fd)))
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (calls.append(("replace", str(b))), real_replace(a, b)))
    target = tmp_path / "m.json"
    atomic.write_atomic(target, b"{}")
    assert target.read_bytes() == b"{}"
    assert calls == [("fsync", str(tmp_path / ".m.json.tmp")), ("fsync", str(tmp_path)), ("replace", str(target)), ("fsync", str(tmp_path))]
    calls.clear()
    monkeypatch.setattr(atomic, "DURABLE", False)
    atomic.write_atomic(target, b"[]")
    assert calls == [("replace", str(target))]


def test_a_full_disk_is_one_error_naming_the_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    def full(fd):  # noqa: ANN001
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(StorageError, match=rf"cannot write {tmp_path / 'part.parquet'}: No space left on device"):
        atomic.write_atomic(tmp_path / "part.parquet", b"x" * 100)
    assert list(tmp_path.iterdir()) == []


def test_read_json_names_a_damaged_file(tmp_path):
    (tmp_path / "m.json").write_text('{"a": ')
    with pytest.raises(StorageError, match=rf"{tmp_path / 'm.json'}: run manifest is damaged or truncated"):
        atomic.read_json(tmp_path / "m.json", "run manifest")
    with pytest.raises(StorageError, match="run manifest not found"):
        atomic.read_json(tmp_path / "none.json", "run manifest")
