"""`lor2c-probe sfs` end to end on a tiny config, on recorded runs, and its bad inputs."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from lor2c_probe.cli import app
from tests.test_cli import assert_user_error

runner = CliRunner()


def tiny(model_dir, data, out, *extra):
    return ["sfs", "--model", str(model_dir), "--task", "custom", "--train-file", str(data["train"]), "--eval-file", str(data["eval"]), "--epochs", "2", "--steps-per-epoch", "12", "--batch-size", "8",
            "--rank", "4", "--merges", "1", "--injections", "1", "--spectra-every", "2", "--device", "cpu", "--out", str(out), "--quiet", *extra]


@pytest.fixture(scope="module")
def sfs_out(tiny_models, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("sfs") / "s"
    res = runner.invoke(app, tiny(tiny_models["bert"], tiny_data, out))
    assert res.exit_code == 0, res.output
    return out, res.output


def test_writes_every_output(sfs_out):
    out, output = sfs_out
    for name in ("sfs.parquet", "events.parquet", "sfs_traces.html", "sfs_traces.png", "summary.txt"):
        assert (out / name).stat().st_size > 0, name
    ev = pd.read_parquet(out / "events.parquet")
    assert ev.kind.tolist() == ["merge", "inject"]
    traces = pd.read_parquet(out / "sfs.parquet")
    merged = ev.result.iloc[0]
    assert traces[traces.module == merged].parents.iloc[0] == ev.parents.iloc[0]
    assert "merge" in output and "params" in output
    assert not re.search(r"<script[^>]+src=[\"']https?://", (out / "sfs_traces.html").read_text())


def test_recorded_runs_and_bad_input(sfs_out, tmp_path):
    out, _ = sfs_out
    res = runner.invoke(app, ["sfs", str(out / "runs" / "im-lor2c"), "--out", str(tmp_path / "again"), "--source", "weights"])
    assert res.exit_code == 0, res.output
    assert_user_error(runner.invoke(app, ["sfs", str(out / "runs" / "im-lor2c"), "--k", "0"]), "k must be a positive integer; got 0")
    assert_user_error(runner.invoke(app, ["sfs", str(out / "runs" / "im-lor2c"), "--epochs", "3"]), "trains nothing; drop --epochs")
    assert_user_error(runner.invoke(app, ["sfs", str(tmp_path)]), "no manifest.json")


@pytest.mark.parametrize(
    "extra,message",
    [(["--merges", "9"], "more than possible"), (["--method", "lor2c"], "sfs traces merges and injections: --method must be one of"),
     (["--schedule", "epoch", "--merges", "2", "--injections", "0"], "after the first half of training")],
)
def test_bad_structure_options(tiny_models, tiny_data, tmp_path, extra, message):
    res = runner.invoke(app, tiny(tiny_models["bert"], tiny_data, tmp_path / "o", *extra))
    assert_user_error(res, message)
    assert not (tmp_path / "o").exists()


def test_seeds_summarise_each_event_across_runs(tiny_models, tiny_data, tmp_path):
    out = tmp_path / "seeds"
    res = runner.invoke(app, tiny(tiny_models["bert"], tiny_data, out, "--seeds", "3,4"))
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["im-lor2c-s3", "im-lor2c-s4"]
    text = (out / "summary.txt").read_text()
    assert "Across 2 runs (seeds), per event: mean [95% t interval]." in text
    assert "merge #1 (n = 2): loss change" in text and "inject #1 (n = 2)" in text
