"""Faults that must end in one clear line, a manifest that says what happened, and data a resume can use:
a full disk during a shard or a checkpoint write, a damaged newest checkpoint, two writers, SIGTERM."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
import time

import pytest
from safetensors import SafetensorError
from typer.testing import CliRunner

from lor2c_probe.cli import app
from lor2c_probe.errors import RunStopped
from lor2c_probe.record import atomic
from lor2c_probe.record.store import read_manifest
from lor2c_probe.train import checkpoint
from lor2c_probe.train.hooks import TrainerCallback
from lor2c_probe.train.session import resume_training, run_training
from tests.faults.conftest import ROOT, assert_same_tables, run_args
from tests.helpers import tiny_config

runner = CliRunner()


@pytest.fixture(scope="module")
def reference(tiny_models, tiny_data, tmp_path_factory):
    """The uninterrupted tiny run (3 epochs x 12 steps, flush every 3 steps) the fault runs are compared with."""
    out = tmp_path_factory.mktemp("ref") / "full"
    run_training(tiny_config(tiny_models["bert"], tiny_data, epochs=3), out, progress=False)
    return out


class DiskFull:
    """``open`` for the atomic writer that fails like a full disk on files whose name ends with ``suffix`` while on."""

    def __init__(self, suffix: str) -> None:
        self.on, self.suffix, self.failures = False, suffix, 0

    def __call__(self, path, mode="r", *a, **k):  # noqa: ANN001, ANN002, ANN003
        if self.on and "w" in mode and str(path).endswith(self.suffix):
            self.failures += 1
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return open(path, mode, *a, **k)


class At(TrainerCallback):
    def __init__(self, step: int, fn) -> None:  # noqa: ANN001
        self.step, self.fn = step, fn

    def on_step_end(self, state) -> None:  # noqa: ANN001
        if state.step == self.step:
            self.fn()


def _interrupt() -> None:
    raise KeyboardInterrupt


def test_disk_full_during_a_shard_write_then_resume(tiny_models, tiny_data, tmp_path, monkeypatch, reference):
    full = DiskFull(".parquet.tmp")
    monkeypatch.setattr(atomic, "open", full, raising=False)
    out = tmp_path / "r"
    cfg = tiny_config(tiny_models["bert"], tiny_data, epochs=3)
    with pytest.raises(RunStopped) as stop:  # the disk fills after the first checkpoint (step 12); the flush at step 15 fails
        run_training(cfg, out, progress=False, callbacks=[At(14, lambda: setattr(full, "on", True))])
    msg = str(stop.value)
    assert "\n" not in msg and "failed: cannot write" in msg and "part-" in msg and "No space left on device" in msg
    assert "continue with `lor2c-probe train --resume" in msg and "(from epoch-0000)" in msg
    m = read_manifest(out)
    assert m["status"] == "failed" and m["failure"]["step"] == 15 and "No space left" in m["failure"]["flush_error"]
    assert not list(out.rglob(".*.tmp"))  # no half-written shard left behind
    full.on = False  # space returns
    assert resume_training(out, progress=False)["status"] == "completed"
    assert_same_tables(out, reference)


def test_disk_full_during_a_checkpoint_write_then_resume(tiny_models, tiny_data, tmp_path, monkeypatch, reference):
    real = checkpoint.save_file
    calls = {"n": 0}

    def save_file(tensors, path, metadata=None):  # noqa: ANN001
        calls["n"] += 1
        if "epoch-0001" in path and path.endswith("state.safetensors"):  # what safetensors raises on ENOSPC
            raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    out = tmp_path / "r"
    with pytest.raises(RunStopped, match=r"cannot write checkpoint .*epoch-0001: .*No space left on device.*\(from epoch-0000\)"):
        run_training(tiny_config(tiny_models["bert"], tiny_data, epochs=3), out, progress=False)
    assert read_manifest(out)["status"] == "failed"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-0000"]  # no partial epoch-0001, no .tmp
    monkeypatch.setattr(checkpoint, "save_file", real)
    assert resume_training(out, progress=False)["status"] == "completed"
    assert_same_tables(out, reference)


@pytest.mark.parametrize("damage", ["truncate", "flip", "no-checksums-truncate"])
def test_damaged_newest_checkpoint_falls_back_to_an_intact_one(tiny_models, tiny_data, tmp_path, reference, capsys, damage):
    out = tmp_path / "r"
    stop = At(30, _interrupt)  # mid epoch 2: checkpoints 0 and 1 exist
    with pytest.raises(RunStopped):
        run_training(tiny_config(tiny_models["bert"], tiny_data, epochs=3), out, progress=False, callbacks=[stop])
    target = out / "checkpoints" / "epoch-0001" / "state.safetensors"
    data = target.read_bytes()
    if damage == "flip":
        target.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    else:
        target.write_bytes(data[: len(data) // 2])
    if damage.startswith("no-checksums"):  # a checkpoint from before checksums existed: checked by reading it
        (out / "checkpoints" / "epoch-0001" / "checksums.json").unlink()
    manifest = resume_training(out, progress=False)
    err = capsys.readouterr().err
    why = "it cannot be read" if damage.startswith("no-checksums") else "state.safetensors does not match its checksum"
    assert f"checkpoint epoch-0001 of {out} is not usable ({why}" in err and "falling back to an older one" in err
    assert manifest["resumes"][-1]["from"] == "epoch-0000" and "epoch-0001" in manifest["resumes"][-1]["skipped_checkpoints"]
    assert_same_tables(out, reference)


def _hold_lock(folder) -> subprocess.Popen:
    code = ("import sys, time; from lor2c_probe.record.lock import DirLock; DirLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); time.sleep(120)")
    p = subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_writer_is_refused_and_a_dead_ones_lock_is_taken_over(tiny_models, tiny_data, tmp_path):
    out = tmp_path / "r"
    args = run_args(tiny_models["bert"], tiny_data) + ["--epochs", "1", "--out", str(out)]
    holder = _hold_lock(out)
    try:
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
        assert f"run directory {out} is being written by another lor2c-probe process (pid {holder.pid} on " in res.output
        assert not (out / "manifest.json").exists()
    finally:
        holder.kill()
        holder.wait()
    res = runner.invoke(app, args)  # the holder died (kill -9 leaves its lock file): taken over, with a notice
    assert res.exit_code == 0, res.output
    assert f"notice: took over the lock of {out}: it was left by pid {holder.pid} on " in res.output
    holder = _hold_lock(out)
    try:  # resume and overwrite are writers too
        for extra in (["--resume"], ["--overwrite"]):
            cmd = ["train", "--resume", "--out", str(out)] if extra == ["--resume"] else args + extra
            res = runner.invoke(app, cmd)
            assert res.exit_code == 2 and "is being written by another lor2c-probe process" in res.output, res.output
    finally:
        holder.kill()
        holder.wait()
    assert read_manifest(out)["status"] == "completed"


def test_sigterm_flushes_marks_interrupted_and_resumes(tiny_models, tiny_data, tmp_path):
    out, ref = tmp_path / "r", tmp_path / "ref"
    args = run_args(tiny_models["bert"], tiny_data)
    assert runner.invoke(app, args + ["--out", str(ref)]).exit_code == 0
    proc = subprocess.Popen([sys.executable, "-m", "tests.faults.child", "slow", "150", "--", *args, "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoints" / "epoch-0000").is_dir() and time.time() < deadline:  # epoch 0 is done
        time.sleep(0.05)
    time.sleep(0.6)  # a few steps into epoch 1 (150 ms each)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: run {out} interrupted by SIGTERM at step ") and "continue with `lor2c-probe train --resume" in last
    m = read_manifest(out)
    assert m["status"] == "interrupted" and m["interrupted"]["reason"] == "SIGTERM"
    from lor2c_probe.record.store import read_table

    assert read_table(out, "metrics").step.max() == m["interrupted"]["step"]  # the emergency flush kept every row
    assert 12 < m["interrupted"]["step"] < 36
    res = runner.invoke(app, ["train", "--resume", "--out", str(out), "--quiet", "--no-report"])
    assert res.exit_code == 0, res.output
    assert_same_tables(out, ref)


def test_truncated_manifest_and_shard_are_one_line_errors(tiny_models, tiny_data, tmp_path, reference):
    import shutil

    run = tmp_path / "r"
    shutil.copytree(reference, run)
    shard = sorted((run / "tables" / "metrics").iterdir())[0]
    shard.write_bytes(shard.read_bytes()[:50])
    res = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "rep"), "--static"])
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert f"{shard}: damaged Parquet shard of table 'metrics'" in res.output
    (run / "manifest.json").write_text((run / "manifest.json").read_text()[:40])
    res = runner.invoke(app, ["train", "--resume", "--out", str(run)])
    assert res.exit_code == 1 and f"{run / 'manifest.json'}: run manifest is damaged or truncated" in res.output, res.output
    res = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "rep2")])
    assert res.exit_code != 0 and "manifest" in res.output and "Traceback" not in res.output, res.output
