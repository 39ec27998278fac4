"""A user's own accelerate loop with ``Recorder(accelerator=...)`` records the built-in loop's tables: alone with
accumulation (accelerate's context and loss division), and under two gloo processes (accelerate's DDP; rank 0 writes),
where the HF Trainer callback is checked too. Parity setup and tolerances: tests/integrations/parity.py."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lor2c_probe.record.store import read_manifest
from tests.integrations.loops import accelerate_loop
from tests.integrations.parity import N, assert_same_tables, builtin_run, config, setup

ROOT = Path(__file__).resolve().parents[2]


def test_accelerate_loop_with_accumulation_equals_builtin(tiny_models, tiny_data, tmp_path):
    cfg = config(tiny_models, tiny_data, "lora")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=N // 2, grad_accum=2))
    loop = builtin_run(cfg, tmp_path / "loop")
    accelerate_loop(setup(cfg), cfg, tmp_path / "acc", accum=2)
    assert_same_tables(loop, tmp_path / "acc")
    assert read_manifest(tmp_path / "acc")["recorder"]["accelerator"] is True


@pytest.fixture(scope="module")
def builtin_lora(tiny_models, tiny_data, tmp_path_factory):
    cfg = config(tiny_models, tiny_data, "lora")
    return builtin_run(cfg, tmp_path_factory.mktemp("ddp") / "loop")


@pytest.mark.launch
@pytest.mark.parametrize("kind", ["accelerate", "hf"])
def test_two_gloo_processes_equal_builtin(builtin_lora, tiny_models, tiny_data, tmp_path, kind):
    out = tmp_path / kind
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests/integrations/loops.py"), kind, str(out), str(tiny_models["bert"]), str(tiny_data["train"]),
           str(tiny_data["eval"]), "lora"]
    res = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    m = read_manifest(out)
    assert m["status"] == "completed" and m["distributed"]["world_size"] == 2
    assert_same_tables(builtin_lora, out)
