"""`lor2c-probe spectrum` end to end on tiny configs, on recorded runs, and its bad inputs."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from lor2c_probe.cli import app
from tests.helpers import rewrite_predictions
from tests.test_cli import assert_user_error

runner = CliRunner()
OUTPUTS = ["low_rank.parquet", "low_rank_summary.parquet", "low_rank.png", "low_rank.html", "subspace.parquet", "subspace.png", "summary.txt", "spectrum.json"]


def tiny(model_dir, data, out, *extra):
    return ["spectrum", "--model", str(model_dir), "--task", "custom", "--train-file", str(data["train"]), "--eval-file", str(data["eval"]),
            "--epochs", "2", "--steps-per-epoch", "4", "--batch-size", "8", "--rank", "2", "--device", "cpu", "--out", str(out), "--quiet", *extra]


@pytest.fixture(scope="module")
def spec_out(tiny_models, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("spec") / "s"
    res = runner.invoke(app, tiny(tiny_models["bert"], tiny_data, out))
    assert res.exit_code == 0, res.output
    return out, res.output


def test_writes_every_output(spec_out):
    out, output = spec_out
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    curves = pd.read_parquet(out / "low_rank.parquet")
    assert {"run", "layer", "epoch", "index", "sigma", "kind"} <= set(curves.columns)
    full = curves[(curves.run == "full-rank-residual") & (curves.kind == "learned") & (curves.epoch == 1)]
    assert full.groupby("layer")["index"].count().tolist() == [32, 32, 32]  # d = 32 singular values per dense map
    grid = pd.read_parquet(out / "subspace.parquet")
    assert grid.phi.between(0, 1 + 1e-9).all() and grid.j.max() == 2  # lor2c rank 2 limits j
    assert "Low-rank evidence" in output and "Subspace similarity of full-rank-residual vs lor2c" in output
    html = (out / "low_rank.html").read_text()
    assert not re.search(r"<script[^>]+src=[\"']https?://", html)


def test_recorded_runs_without_training(spec_out, tmp_path):
    out, _ = spec_out
    res = runner.invoke(app, ["spectrum", str(out / "runs" / "full-rank-residual"), str(out / "runs" / "lor2c"),
                              "--source", "features", "--out", str(tmp_path / "f")])
    assert res.exit_code == 0, res.output
    assert "features spectra" in (tmp_path / "f" / "summary.txt").read_text()
    res = runner.invoke(app, ["spectrum", str(out / "runs" / "lor2c"), "--out", str(tmp_path / "one")])
    assert res.exit_code == 0 and "phi: needs two runs" in res.output


def test_run_without_spectra(spec_out, tiny_models, tiny_data, tmp_path):
    res = runner.invoke(app, ["train", "--model", str(tiny_models["bert"]), "--task", "custom", "--train-file", str(tiny_data["train"]),
                              "--eval-file", str(tiny_data["eval"]), "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8",
                              "--probes", "grads", "--out", str(tmp_path / "ns"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert_user_error(runner.invoke(app, ["spectrum", str(tmp_path / "ns"), "--out", str(tmp_path / "x")]), "has no `spectra` table")


def test_mismatched_layers_for_phi(spec_out, tiny_models, tiny_data, tmp_path):
    from tests.conftest import build_tiny_bert
    from transformers import BertConfig, BertModel

    deep = build_tiny_bert(tmp_path / "deep")
    cfg = BertConfig.from_pretrained(deep)
    cfg.num_hidden_layers = 4
    BertModel(cfg).save_pretrained(deep)
    res = runner.invoke(app, ["train", "--model", str(deep), "--task", "custom", "--train-file", str(tiny_data["train"]),
                              "--eval-file", str(tiny_data["eval"]), "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8",
                              "--rank", "2", "--out", str(tmp_path / "d"), "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["spectrum", str(spec_out[0] / "runs" / "lor2c"), str(tmp_path / "d"), "--out", str(tmp_path / "x")])
    assert_user_error(res, "layers do not match for phi")


@pytest.mark.parametrize(
    "extra,message",
    [(["--ks", "0,8"], "k must be a positive integer; got 0"), (["--ks", "a"], "--ks must be a comma list"),
     (["--source", "grads"], "unknown --source 'grads'"), (["--methods", "lor2c,nosuch"], "unknown method 'nosuch'")],
)
def test_bad_options(tiny_models, tiny_data, tmp_path, extra, message):
    res = runner.invoke(app, tiny(tiny_models["bert"], tiny_data, tmp_path / "o", *extra))
    assert_user_error(res, message)
    assert not (tmp_path / "o").exists()


def test_seeds_give_intervals_and_phi_against_chance(tiny_models, tiny_data, tmp_path):
    out = tmp_path / "seeds"
    res = runner.invoke(app, tiny(tiny_models["bert"], tiny_data, out, "--seeds", "3,4"))
    assert res.exit_code == 0, res.output
    # the tiny runs stay near chance, and runs at chance leave the test: made to have learned, then analysed again
    runs = sorted((out / "runs").iterdir())
    for run in runs:
        rewrite_predictions(run, learned=True)
    out = tmp_path / "again"
    res = runner.invoke(app, ["spectrum", *map(str, runs), "--out", str(out)])
    assert res.exit_code == 0, res.output
    claims = pd.read_parquet(out / "low_rank_claims.parquet").set_index("group")
    assert (claims.left_out == 0).all()
    assert claims.loc["full-rank-residual", "unit"] == "seed" and claims.loc["full-rank-residual", "n"] == 2
    assert claims.loc["full-rank-residual", "top8_energy_low"] <= claims.loc["full-rank-residual", "top8_energy"]
    # the estimate is the mean over seeds of each seed's mean over layers, recomputed from the per-layer table
    summary = pd.read_parquet(out / "low_rank_summary.parquet")
    full = summary[(summary.group == "full-rank-residual") & (summary.epoch == summary.epoch.max())]
    assert claims.loc["full-rank-residual", "top8_energy"] == pytest.approx(full.groupby("seed").top8_energy.mean().mean())
    phi = pd.read_parquet(out / "phi_chance.parquet")
    assert sorted(phi.seed.unique()) == [3, 4] and len(phi) == 2 * 3 and phi.p.between(0, 1).all()
    assert "phi(8, 2) against chance" in res.output and "one-sample t-test across seeds" in res.output
    assert "Mean phi over layers per seed:" in res.output and "one-sample t-test across n = 2 seeds" in res.output
