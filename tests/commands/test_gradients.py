"""`lor2c-probe gradients` end to end on tiny configs, --from-runs, and its bad inputs."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lor2c_probe.cli import app
from tests.helpers import rewrite_predictions
from tests.test_cli import assert_user_error

runner = CliRunner()
OUTPUTS = [
    "gradient_ratio.parquet", "gradient_ratio.html", "gradient_ratio.png", "activation_grads.parquet",
    "activation_grad_ratio.parquet", "activation_grads.png", "activation_profile.png", "summary.txt", "gradients.json",
]


def tiny(model_dir, data, out, *extra):
    return [
        "gradients", "--model", str(model_dir), "--task", "custom", "--train-file", str(data["train"]),
        "--eval-file", str(data["eval"]), "--epochs", "2", "--steps-per-epoch", "4", "--batch-size", "8",
        "--rank", "2", "--device", "cpu", "--out", str(out), "--quiet", *extra,
    ]


@pytest.fixture(scope="module")
def compared(tiny_models, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("grad") / "cmp"
    res = runner.invoke(app, tiny(tiny_models["bert"], tiny_data, out))
    assert res.exit_code == 0, res.output
    return out, res.output


def test_ends_with_a_report_that_draws_the_headline_sections(compared):
    import json

    out, output = compared
    assert output.strip().splitlines()[-1] == f"report: {out / 'report' / 'report.html'}"
    meta = json.loads((out / "report" / "report.json").read_text())
    assert all(meta["sections"][s] == "drawn" for s in ("gradients", "activations", "training", "comparison")), meta["sections"]
    assert "gradient_ratio" in meta["figures"] and "lor2c / lora" in (out / "report" / "report.html").read_text()


def test_writes_every_output(compared):
    out, output = compared
    for name in OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "runs" / "lor2c" / "manifest.json").is_file() and (out / "runs" / "lora" / "manifest.json").is_file()
    surface = pd.read_parquet(out / "gradient_ratio.parquet")
    assert {"method", "epoch", "layer", "numerator", "denominator", "ratio", "status"} <= set(surface.columns)
    assert sorted(surface.epoch.unique()) == [0, 1] and sorted(surface.layer.unique()) == [0, 1, 2]
    assert (surface.status == "ok").all() and (surface.method == "lor2c").all()
    assert "Paper claim (LoR2C's gradient ratio to LoRA rises toward lower layers)" in output
    assert "Paper claim" in (out / "summary.txt").read_text()


def test_html_works_offline(compared):
    html = (compared[0] / "gradient_ratio.html").read_text()
    assert "plotly" in html and '"type":"surface"' in html.replace(" ", "")
    assert not re.search(r"<script[^>]+src=[\"']https?://", html)  # plotly.js is inlined, no CDN


def test_from_runs_recomputes_the_same_surface(compared, tmp_path):
    out, _ = compared
    runs = out / "runs"
    res = runner.invoke(app, ["gradients", "--from-runs", str(runs / "lor2c"), "--from-runs", str(runs / "lora"), "--out", str(tmp_path / "again")])
    assert res.exit_code == 0, res.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "again" / "gradient_ratio.parquet"), pd.read_parquet(out / "gradient_ratio.parquet"))
    res = runner.invoke(app, ["gradients", "--from-runs", str(runs / "lor2c"), "--from-runs", str(runs / "lora"),
                              "--stat", "l2", "--factor", "B", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert "statistic l2, factor B" in (tmp_path / "b" / "summary.txt").read_text()


def test_from_runs_misaligned_epochs_say_which(compared, tiny_models, tiny_data, tmp_path):
    out, _ = compared
    short = tmp_path / "short"
    res = runner.invoke(app, ["train", "--model", str(tiny_models["bert"]), "--task", "custom", "--train-file", str(tiny_data["train"]),
                              "--eval-file", str(tiny_data["eval"]), "--epochs", "1", "--steps-per-epoch", "4", "--batch-size", "8",
                              "--rank", "2", "--method", "lora", "--out", str(short), "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["gradients", "--from-runs", str(out / "runs" / "lor2c"), "--from-runs", str(short), "--out", str(tmp_path / "x")])
    assert_user_error(res, "epochs do not align: lor2c alone has [1]")
    assert not (tmp_path / "x").exists()


def test_from_runs_misaligned_layers_say_which(compared, tiny_models, tiny_data, tmp_path):
    out, _ = compared
    from tests.conftest import build_tiny_bert
    from transformers import BertConfig, BertModel

    deep = build_tiny_bert(tmp_path / "deep")
    cfg = BertConfig.from_pretrained(deep)
    cfg.num_hidden_layers = 4
    BertModel(cfg).save_pretrained(deep)
    res = runner.invoke(app, ["train", "--model", str(deep), "--task", "custom", "--train-file", str(tiny_data["train"]),
                              "--eval-file", str(tiny_data["eval"]), "--epochs", "2", "--steps-per-epoch", "4", "--batch-size", "8",
                              "--rank", "2", "--method", "lora", "--out", str(tmp_path / "d"), "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["gradients", "--from-runs", str(out / "runs" / "lor2c"), "--from-runs", str(tmp_path / "d"), "--out", str(tmp_path / "x")])
    assert_user_error(res, "models with 3 and 4 layers")


def test_run_without_grads_table(compared, tiny_models, tiny_data, tmp_path):
    out, _ = compared
    res = runner.invoke(app, ["train", "--model", str(tiny_models["bert"]), "--task", "custom", "--train-file", str(tiny_data["train"]),
                              "--eval-file", str(tiny_data["eval"]), "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8",
                              "--probes", "none", "--out", str(tmp_path / "np"), "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["gradients", "--from-runs", str(tmp_path / "np"), "--from-runs", str(out / "runs" / "lora"), "--out", str(tmp_path / "x")])
    assert_user_error(res, "has no `grads` table")


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--methods", "lor2c,nosuch"], "unknown method 'nosuch' in --methods"),
        (["--methods", "lor2c"], "at least two different methods"),
        (["--baseline", "share-lor2c"], "--baseline 'share-lor2c' is not among"),
        (["--stat", "median"], "unknown --stat 'median'"),
        (["--rank", "0"], "rank must be a positive integer; got 0"),
    ],
)
def test_bad_options_train_nothing(tiny_models, tiny_data, tmp_path, extra, message):
    res = runner.invoke(app, tiny(tiny_models["bert"], tiny_data, tmp_path / "o", *extra))
    assert_user_error(res, message)
    assert not (tmp_path / "o").exists()


def test_from_runs_rejects_training_options_and_single_run(compared, tmp_path):
    out, _ = compared
    res = runner.invoke(app, ["gradients", "--from-runs", str(out / "runs" / "lor2c"), "--from-runs", str(out / "runs" / "lora"), "--epochs", "3"])
    assert_user_error(res, "trains nothing; drop --epochs")
    res = runner.invoke(app, ["gradients", "--from-runs", str(out / "runs" / "lor2c")])
    assert_user_error(res, "at least two run directories")


def test_reslora_joins_the_comparison(tiny_models, tiny_data, tmp_path):
    out = tmp_path / "three"
    res = runner.invoke(app, tiny(tiny_models["bert"], tiny_data, out, "--methods", "lor2c,lora,reslora-ms", "--pre-num", "2"))
    assert res.exit_code == 0, res.output
    surface = pd.read_parquet(out / "gradient_ratio.parquet")
    assert set(surface.method) == {"lor2c", "reslora-ms"}
    assert (surface[surface.method == "reslora-ms"].status == "ok").all()
    profile = pd.read_parquet(out / "activation_grads.parquet")
    assert set(profile.method) == {"lor2c", "lora", "reslora-ms"}
    assert (out / "activation_profile.png").stat().st_size > 0
    assert "reslora-ms / lora" in res.output


def test_from_runs_of_one_method_label_the_report_like_the_command(compared, tiny_models, tiny_data, tmp_path):
    """Two lora runs are labelled by folder; the report at the end must use those labels for its baseline."""
    import json

    out, _ = compared
    other = tmp_path / "lora-b"
    res = runner.invoke(app, ["train", "--model", str(tiny_models["bert"]), "--task", "custom", "--train-file", str(tiny_data["train"]),
                              "--eval-file", str(tiny_data["eval"]), "--epochs", "2", "--steps-per-epoch", "4", "--batch-size", "8",
                              "--rank", "2", "--method", "lora", "--seed", "9", "--out", str(other), "--quiet", "--no-report"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["gradients", "--from-runs", str(out / "runs" / "lora"), "--from-runs", str(other), "--out", str(tmp_path / "g")])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "g" / "report" / "report.json").read_text())
    assert meta["sections"]["gradients"] == "drawn" and set(meta["runs"]) == {"lora", "lora-b"}


def test_seeds_pair_each_run_with_the_baseline_of_its_seed(tiny_models, tiny_data, tmp_path):
    import json

    out = tmp_path / "seeds"
    res = runner.invoke(app, tiny(tiny_models["bert"], tiny_data, out, "--seeds", "3,4"))
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["lor2c-s3", "lor2c-s4", "lora-s3", "lora-s4"]
    seeds = pd.read_parquet(out / "gradient_ratio_seeds.parquet")
    surface = pd.read_parquet(out / "gradient_ratio.parquet")
    assert sorted(seeds.seed.unique()) == [3, 4] and set(surface.method) == {"lor2c"}
    # the surface is the geometric mean of the two seeds' ratios, each over the lora run of its own seed (recomputed from the tables)
    from lor2c_probe.analysis.gradients import gradient_ratio_surface
    from lor2c_probe.record.store import read_table

    by_hand = [gradient_ratio_surface(read_table(out / "runs" / f"lor2c-s{s}", "grads"), read_table(out / "runs" / f"lora-s{s}", "grads"))
               for s in (3, 4)]
    mean = np.sqrt(by_hand[0].ratio.to_numpy() * by_hand[1].ratio.to_numpy())
    assert surface.sort_values(["epoch", "layer"]).ratio.to_numpy() == pytest.approx(mean, rel=1e-12)
    assert (surface.ci_method == "t over seeds (log scale)").all() and (surface.ci_low > 0).all() and (surface.ci_low <= surface.ratio).all() and (surface.ratio <= surface.ci_high).all()
    assert (surface.n_seeds == 2).all()
    trend = pd.read_parquet(out / "gradient_trend.parquet")
    assert set(trend.verdict) <= {"holds", "does not hold", "cannot tell"} and (trend.seeds == 2).all()
    text = (out / "summary.txt").read_text()
    assert "2 seed(s) (3, 4)" in text and "n = 2 seeds" in text and "Spearman" in text
    assert json.loads((out / "gradients.json").read_text())["seeds"] == [3, 4]
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["sections"]["gradients"] == "drawn" and report["sections"]["comparison"] == "drawn"
    html = (out / "report" / "report.html").read_text()
    assert "Trend test per epoch" in html and "exact McNemar" in html  # predictions recorded: the per-example test is drawn

    # the gallery's claim lines from the same runs: claim 1 recomputed by hand from the per-seed ratios
    import math

    from lor2c_probe.compare.claims import CLAIMS, claims_markdown, paper_claims
    from lor2c_probe.record.runs import load_runs

    for run in (out / "runs").iterdir():  # the tiny runs stay at chance, and claims 1-4 leave out runs that did not learn
        rewrite_predictions(run, learned=True)
    claims = paper_claims(load_runs(sorted((out / "runs").iterdir())))
    assert [c.claim for c in claims] == list(CLAIMS)
    ok = seeds[seeds.status == "ok"]
    by_hand = math.exp(ok.groupby("seed").ratio.apply(lambda r: np.log(r).mean()).mean())
    assert claims[0].effect == f"×{by_hand:.2f}" and claims[0].n == "2 seed(s)"
    assert all(c.verdict in ("holds", "does not hold", "cannot tell") for c in claims[:3] + [claims[4]])
    assert claims[3].verdict.startswith("not measured") and claims[5].verdict.startswith("not measured")
    assert "2 seed(s)" in claims[4].n and "parity" in claims[4].test
    table = claims_markdown({"tiny": claims})
    assert table.count("\n") == len(CLAIMS) + 1 and "**not measured" in table
    assert claims[0].source == claims[4].source == "seeds" and "(seeds)" in table  # the study folder each line was read from
    # a second study at the same depth (lor2c and lora of seed 3 only) joins the column: no claim pools it with this
    # one (its seed 3 would pair twice); each claim keeps the study with the most paired seeds (2 here, against 1)
    import shutil

    other = tmp_path / "other-study" / "runs"
    for name in ("lor2c-s3", "lora-s3"):
        shutil.copytree(out / "runs" / name, other / name)
    assert paper_claims(load_runs(sorted((out / "runs").iterdir()) + sorted(other.iterdir()))) == claims
    alone = paper_claims(load_runs(sorted(other.iterdir()) + [out / "runs" / "lor2c-s4"]))  # now other-study pairs one seed, seeds none
    assert alone[4].source == "other-study" and alone[4].n == "1 seed(s)"
    # a run that did not learn leaves the gradient claims (its seed loses its pair) but not the accuracy comparison
    rewrite_predictions(out / "runs" / "lora-s4", learned=False)
    failed = paper_claims(load_runs(sorted((out / "runs").iterdir())))
    assert failed[0].n.startswith("1 seed(s); 1 run(s) that did not learn the task left out (lora") and failed[4] == claims[4]


def test_one_seed_gets_step_intervals(compared):
    out, _ = compared
    surface = pd.read_parquet(out / "gradient_ratio.parquet")
    assert (surface.ci_method == "block bootstrap over steps").all() and (surface.ci_low <= surface.ci_high).all()
    assert "cannot tell at n = 1 seed" in (out / "summary.txt").read_text()


def test_seeds_and_seed_together_are_refused(tiny_models, tiny_data, tmp_path):
    res = runner.invoke(app, tiny(tiny_models["bert"], tiny_data, tmp_path / "x", "--seeds", "3,4", "--seed", "5"))
    assert_user_error(res, "give --seed or --seeds, not both")
    res = runner.invoke(app, tiny(tiny_models["bert"], tiny_data, tmp_path / "y", "--seeds", "3,x"))
    assert_user_error(res, "--seeds must be a comma list of integers; got '3,x'")
