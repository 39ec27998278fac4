"""DirLock: one writer per folder; a second is refused naming the holder; a dead holder's lock is taken over."""

from __future__ import annotations

import json
import os

import pytest

from lor2c_probe.record.lock import DirLock, LockedError, holder


def test_second_writer_is_refused_with_the_holder(tmp_path):
    with DirLock(tmp_path / "run", "run directory"):
        info = json.loads((tmp_path / "run" / ".lock").read_text())
        assert info["pid"] == os.getpid() and info["host"] and info["since"]
        assert holder(tmp_path / "run")["pid"] == os.getpid()
        with pytest.raises(LockedError, match=rf"run directory {tmp_path / 'run'} is being written by another lor2c-probe process "
                                              rf"\(pid {os.getpid()} on .*, since .*\); wait for it to finish or stop it"):
            DirLock(tmp_path / "run", "run directory").acquire()  # a second open file description conflicts, even in one process
    assert not (tmp_path / "run" / ".lock").exists() and holder(tmp_path / "run") is None


def test_a_lock_file_left_by_a_dead_process_is_taken_over_with_a_notice(tmp_path):
    (tmp_path / ".lock").write_text(json.dumps({"pid": 999999, "host": "gone", "since": "2026-01-01T00:00:00+00:00"}))
    seen = []
    with DirLock(tmp_path, "run directory", seen.append):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert seen == [f"took over the lock of {tmp_path}: it was left by pid 999999 on gone, since 2026-01-01T00:00:00+00:00, "
                    "which is no longer running"]
