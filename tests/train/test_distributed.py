"""DDP under torchrun (and accelerate launch) with 2 gloo processes on the CPU against one process with the same global batch and seed.

Dropout is off everywhere (adapter and encoder), because ranks draw different dropout masks than one
process does; everything else must agree. Tolerance: rtol 1e-4 (float32; the all-reduce adds the two
halves of each batch in a different order than one process). Measured differences were below 2.2e-5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lor2c_probe.record.store import read_manifest, read_table

pytestmark = pytest.mark.launch  # torchrun / accelerate launch child processes: run by .ci/run's `pytest -m launch`

RTOL = 1e-4
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
# accelerate's multi-process launcher (torchrun underneath); on a machine without GPUs the ranks use gloo.
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]


@pytest.fixture(scope="module")
def bert_without_dropout(tiny_models, tmp_path_factory) -> Path:
    import shutil

    folder = tmp_path_factory.mktemp("nodrop") / "bert"
    shutil.copytree(tiny_models["bert"], folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def _train(launcher: list[str], args: list[str], out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*launcher, "-m", "lor2c_probe", "train", *args, "--out", str(out)], capture_output=True, text=True, env=ENV, timeout=300)


def _same_tables(one: Path, two: Path) -> None:
    for table in ("metrics", "grads", "activation_grads", "sfs", "spectra"):
        a, b = read_table(one, table), read_table(two, table)
        assert len(a) == len(b) > 0, table
        val = "sigma" if table == "spectra" else "value"
        keys = [c for c in a.columns if c != val]
        merged = a.merge(b, on=keys, suffixes=("_one", "_two"), how="outer")
        assert not merged.isna().any().any(), (table, merged[merged.isna().any(axis=1)].head())
        np.testing.assert_allclose(merged[f"{val}_two"], merged[f"{val}_one"], rtol=RTOL, atol=1e-9, err_msg=table)


@pytest.mark.parametrize("case", ["im-lor2c", "llama"])  # im-lor2c trains as LoR2C until its merge
def test_two_gloo_ranks_record_what_one_process_records(case, bert_without_dropout, tiny_llama, tiny_alpaca, tiny_data, tmp_path):
    common = ["--epochs", "2", "--rank", "2", "--dropout", "0", "--device", "cpu", "--quiet", "--no-report", "--flush-every", "3"]
    if case == "llama":  # causal LM: the ranks' shares of each batch are weighted by predicted tokens
        args = ["--model", str(tiny_llama), "--task", "alpaca", "--train-file", str(tiny_alpaca["train"]), "--max-length", "96",
                "--batch-size", "7", "--steps-per-epoch", "4", "--method", "lor2c", *common]
    else:  # batch 15 splits 8 / 7: unequal parts must still add up to the global mean
        args = ["--model", str(bert_without_dropout), "--task", "custom", "--train-file", str(tiny_data["train"]),
                "--eval-file", str(tiny_data["eval"]), "--batch-size", "15", "--method", case, *common]
        if case == "im-lor2c":
            args += ["--merges", "1", "--injections", "1", "--schedule", "step"]
    single = _train([sys.executable], args, tmp_path / "one")
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = _train(TORCHRUN, args, tmp_path / "two")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    _same_tables(tmp_path / "one", tmp_path / "two")
    m = read_manifest(tmp_path / "two")
    batch = int(args[args.index("--batch-size") + 1])
    assert m["distributed"] == {"world_size": 2, "backend": "gloo", "global_batch_size": batch, "structure_agrees": True}
    assert ddp.stdout.count("run directory:") == 1  # only rank 0 prints (and writes)
    if case == "llama":  # the same run under `accelerate launch`
        acc = _train(ACCELERATE, args, tmp_path / "acc")
        assert acc.returncode == 0, acc.stderr[-3000:]
        _same_tables(tmp_path / "one", tmp_path / "acc")
        assert read_manifest(tmp_path / "acc")["distributed"]["world_size"] == 2
    if case == "im-lor2c":  # the same merge and injection, at the same steps, on every rank (structure_agrees above)
        ev1, ev2 = read_table(tmp_path / "one", "events"), read_table(tmp_path / "two", "events")
        assert ev1[["step", "kind", "modules"]].equals(ev2[["step", "kind", "modules"]]) and sorted(ev2.kind) == ["inject", "merge"]


def test_ranks_given_different_configurations_are_stopped(tiny_models, tiny_data, tmp_path):
    script = tmp_path / "launch.py"
    script.write_text(
        "import os, sys\nfrom lor2c_probe.cli import main\n"
        "sys.argv = ['lor2c-probe'] + sys.argv[1:] + (['--lr', '1e-3'] if os.environ['RANK'] == '1' else [])\nmain()\n")
    args = ["train", "--model", str(tiny_models["bert"]), "--task", "custom", "--train-file", str(tiny_data["train"]),
            "--epochs", "1", "--device", "cpu", "--quiet", "--no-report", "--out", str(tmp_path / "r")]
    res = subprocess.run([*TORCHRUN, str(script), *args], capture_output=True, text=True, env=ENV, timeout=300)
    assert res.returncode != 0
    assert "error: ranks disagree on the configuration: config.train.lr (0.0005 on rank 0, 0.001 on rank 1)" in res.stderr
    assert not (tmp_path / "r").exists()
