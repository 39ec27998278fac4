"""Fault-injection fixtures: the CLI arguments of a small run, and helpers to compare two runs' tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lor2c_probe.record.schema import TABLES
from lor2c_probe.record.store import read_table

ROOT = Path(__file__).resolve().parents[2]


def run_args(model: Path, data: dict[str, Path], *, structured: bool = False) -> list[str]:
    """A 3-epoch run of 12 steps each on the tiny BERT, every probe on, flushing every 5 steps."""
    args = ["train", "--model", str(model), "--task", "custom", "--train-file", str(data["train"]), "--eval-file", str(data["eval"]),
            "--rank", "4", "--alpha", "8", "--dropout", "0.1", "--epochs", "3", "--batch-size", "8", "--lr", "5e-3", "--seed", "3",
            "--device", "cpu", "--flush-every", "5", "--max-length", "32", "--probes", "grads,activations,spectra", "--quiet",
            "--no-report"]
    if structured:
        return args + ["--method", "im-lor2c", "--merges", "1", "--injections", "1", "--schedule", "step"]
    return args + ["--method", "lor2c"]


def child(point: str, n: int, args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    """The CLI in a fresh process that SIGKILLs itself at the N-th arrival at ``point`` (see child.py)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "tests.faults.child", point, str(n), "--", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def sorted_table(run: Path, table: str) -> pd.DataFrame:
    frame = read_table(run, table)
    keys = [c for c in TABLES[table].names if c not in ("value", "sigma", "detail_json")]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def assert_same_tables(a: Path, b: Path) -> None:
    """Every table of run ``a`` equals run ``b``'s: same rows (order aside), values to float32 round-off."""
    for table in TABLES:
        x, y = sorted_table(a, table), sorted_table(b, table)
        assert len(x) == len(y), f"{table}: {len(x)} rows vs {len(y)}"
        if table == "events":  # detail_json holds floats from the same computation: compare parsed
            import json

            assert [json.loads(d) for d in x.detail_json] == [json.loads(d) for d in y.detail_json]
            x, y = x.drop(columns="detail_json"), y.drop(columns="detail_json")
        pd.testing.assert_frame_equal(x, y, check_exact=False, rtol=1e-5, atol=1e-7, obj=table)


@pytest.fixture(scope="session")
def reference_runs(tiny_models, tiny_data, tmp_path_factory) -> dict[str, Path]:
    """Uninterrupted runs, each in its own process like the trials: plain LoR2C and IMLoR2C with a merge and an injection."""
    root = tmp_path_factory.mktemp("reference")
    out = {}
    for name, structured in (("plain", False), ("structured", True)):
        res = child("none", 0, run_args(tiny_models["bert"], tiny_data, structured=structured) + ["--out", str(root / name)])
        assert res.returncode == 0, res.stderr[-2000:]
        out[name] = root / name
    return out
