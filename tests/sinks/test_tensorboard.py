"""`lor2c-probe export --to tensorboard`, read back with TensorBoard's own reader and compared with the run store
(scalars to float32 precision; histogram bucket counts exactly)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from lor2c_probe.cli import app
from lor2c_probe.config import ProbeConfig
from lor2c_probe.record.store import read_table
from lor2c_probe.sinks.base import scalar_rows
from lor2c_probe.train.session import run_training
from tests.helpers import tiny_config

pytest.importorskip("tensorboard")
runner = CliRunner()


@pytest.fixture(scope="module")
def run(tiny_models, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("tb") / "run"
    cfg = replace(tiny_config(tiny_models["bert"], tiny_data, epochs=1),
                  probes=ProbeConfig(grads=True, activations=True, spectra=True, extra=("histograms",)))
    run_training(cfg, out, progress=False)
    return out


def test_scalars_and_histograms_read_back_equal_the_run_store(run, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    res = runner.invoke(app, ["export", str(run), "--to", "tensorboard", "--out", str(tmp_path / "tb")])
    assert res.exit_code == 0, res.output
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for table in ("metrics", "grads", "activation_grads", "sfs", "updates"):
        want = scalar_rows(table, read_table(run, table))
        assert len(want) and set(want.tag) <= tags, table
        for tag, g in want.groupby("tag"):
            got = {e.step: e.value for e in acc.Scalars(tag)}
            for step, value in zip(g.step, g.value):
                assert got[int(step)] == pytest.approx(value, rel=1e-6, abs=1e-30), (tag, step)
    hist = read_table(run, "histograms")
    assert len(hist)
    (source, module, step), g = next(iter(hist.groupby(["source", "module", "step"])))
    [event] = [e for e in acc.Histograms(f"histograms/{source}/{module}") if e.step == step]
    buckets = np.asarray(event.histogram_value.bucket)  # every bin from the first to the last non-empty one
    assert len(buckets) == g["bin"].max() - g["bin"].min() + 1
    np.testing.assert_array_equal(buckets[g["bin"].to_numpy() - g["bin"].min()], g["count"].to_numpy(dtype=float))
    assert buckets.sum() == g["count"].sum()


def test_export_refuses_a_non_run_and_a_full_folder(run, tmp_path):
    res = runner.invoke(app, ["export", str(tmp_path), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "not a run directory" in res.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    res = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "full")])
    assert res.exit_code == 2 and "is not empty" in res.output
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep"
