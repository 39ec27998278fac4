"""Seeded kill -9 trials: a run killed at a random moment (mid-step, mid-shard-write, mid-manifest-write,
mid-checkpoint-write, mid-merge) and then resumed ends with tables equal to an uninterrupted run's.

Each trial costs two processes (about 10 s on 2 cores), so the trials are marked ``faults``: deselected by the
default test command and run by ``.ci/run`` (``pytest -m faults``)."""

from __future__ import annotations

import random

import pytest
from typer.testing import CliRunner

from lor2c_probe.cli import app
from lor2c_probe.record.store import read_manifest, shard_paths
from lor2c_probe.record.schema import TABLES
from tests.faults.conftest import assert_same_tables, child, run_args

pytestmark = pytest.mark.faults
runner = CliRunner()

# (point, structured run?, how many arrivals at the point an uninterrupted run makes: n is drawn from 1..count)
POINTS = [("step", False, 36), ("step", True, 36), ("shard", False, None), ("shard", True, None), ("manifest", False, 2),
          ("checkpoint", False, 3), ("checkpoint", True, 3), ("merge", True, 1)]
TRIALS = 20


def _shards(run) -> int:
    return sum(len(shard_paths(run, t)) for t in TABLES)


@pytest.mark.parametrize("seed", range(TRIALS))
def test_killed_run_resumes_to_the_uninterrupted_tables(seed, reference_runs, tiny_models, tiny_data, tmp_path):
    rng = random.Random(1000 + seed)
    point, structured, count = POINTS[seed % len(POINTS)] if seed < len(POINTS) else rng.choice(POINTS)
    ref = reference_runs["structured" if structured else "plain"]
    n = rng.randint(1, count if count is not None else _shards(ref))
    out = tmp_path / "run"
    args = run_args(tiny_models["bert"], tiny_data, structured=structured)
    killed = child(point, n, args + ["--out", str(out)])
    assert killed.returncode == -9, f"trial {point} #{n} was not killed (rc {killed.returncode}): {killed.stderr[-1500:]}"
    res = runner.invoke(app, ["train", "--resume", "--out", str(out), "--quiet", "--no-report"])
    if res.exit_code != 0:  # killed before the first checkpoint: the error says to start again with --overwrite
        assert "--overwrite" in res.output, res.output
        res = runner.invoke(app, args + ["--out", str(out), "--overwrite"])
    assert res.exit_code == 0, f"trial {point} #{n}: {res.output}"
    assert read_manifest(out)["status"] == "completed"
    assert_same_tables(out, ref)
    assert read_manifest(out)["results"]["final_eval"] == read_manifest(ref)["results"]["final_eval"]
