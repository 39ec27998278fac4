"""The runnable examples in docs/examples: each trains its tiny model on the CPU, writes a run directory that
``lor2c-probe report`` and ``gradients --from-runs`` read, and prints what it recorded. The HF Trainer and accelerate
examples also run under two gloo processes (torchrun), where only rank 0 writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lor2c_probe.cli import app
from lor2c_probe.record.store import read_manifest, read_table

pytestmark = pytest.mark.launch
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
runner = CliRunner()


def run_example(name: str, out: Path, *, procs: int = 1, extra: tuple[str, ...] = ()) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    launch = [sys.executable] if procs == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)]
    res = subprocess.run([*launch, str(EXAMPLES / name), "--out", str(out), "--epochs", "1", *extra], env=env, cwd=out.parent,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples")
    got = {}
    for name in ("plain_loop.py", "hf_trainer.py", "lightning_module.py", "accelerate_loop.py"):
        out = root / name.removesuffix(".py")
        got[name] = (out, run_example(name, out))
    return got


@pytest.mark.parametrize("name", ["plain_loop.py", "hf_trainer.py", "lightning_module.py", "accelerate_loop.py"])
def test_example_records_a_complete_run(outputs, name):
    out, stdout = outputs[name]
    m = read_manifest(out)
    assert m["status"] == "completed" and m["results"]["steps"] == 6  # 96 examples / (8 x 2 accumulated) per epoch
    assert f"completed: 6 steps recorded into {out}" in stdout
    for table in ("grads", "activation_grads", "spectra", "sfs", "histograms", "updates"):
        assert len(read_table(out, table)) > 0, table
    metrics = read_table(out, "metrics")
    assert {"loss", "grad_norm", "lr"} <= set(metrics.query("split == 'train'")["name"])
    assert len(metrics.query("split == 'eval'")) > 0


def test_report_and_gradients_read_the_examples(outputs, tmp_path):
    plain, acc = outputs["plain_loop.py"][0], outputs["accelerate_loop.py"][0]
    res = runner.invoke(app, ["report", str(plain), str(acc), "--out", str(tmp_path / "report"), "--static"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["gradients", "--from-runs", str(plain), "--from-runs", str(acc), "--baseline", "accelerate_loop",
                              "--out", str(tmp_path / "grads")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "grads" / "gradient_ratio.parquet").is_file()


@pytest.mark.parametrize("name", ["hf_trainer.py", "accelerate_loop.py"])
def test_example_under_two_gloo_processes(tmp_path, name):
    out = tmp_path / name.removesuffix(".py")
    stdout = run_example(name, out, procs=2)
    m = read_manifest(out)
    assert m["status"] == "completed" and m["distributed"]["world_size"] == 2
    assert m["results"]["steps"] == 3  # the global batch doubles: half the steps
    assert stdout.count("steps recorded into") == 1  # rank 0 alone prints and writes
