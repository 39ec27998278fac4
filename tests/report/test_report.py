"""`lor2c-probe report` on recorded tiny runs: sections, offline HTML, figures, escaping, missing tables, no torch."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lor2c_probe.cli import app
from lor2c_probe.report.build import build_report
from lor2c_probe.report.sections import SECTIONS
from tests.test_cli import assert_user_error

runner = CliRunner()
NO_CDN = re.compile(r"<(script|link|img)[^>]+(src|href)=[\"']?(https?:)?//", re.I)


class Structure(HTMLParser):
    """Collects section ids, figure count, and checks every opened tag of these kinds is closed."""

    CHECKED = {"section", "figure", "table", "details", "pre", "script", "html", "body", "head", "nav"}

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.stack: list[str] = []
        self.figures = 0
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.sections.append(dict(attrs)["id"])
        self.figures += tag == "figure"
        self.scripts += tag == "script"
        if tag in self.CHECKED:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.CHECKED:
            assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
            self.stack.pop()


def parse(html: str) -> Structure:
    p = Structure()
    p.feed(html)
    p.close()
    assert p.stack == [], f"unclosed: {p.stack}"
    return p


@pytest.fixture(scope="module")
def full_report(recorded, tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "report"
    runs = [str(recorded[k]) for k in ("lor2c", "lora", "im-lor2c", "full")]
    res = runner.invoke(app, ["report", *runs, "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_every_section_drawn_from_complete_runs(full_report):
    out, output = full_report
    html = (out / "report.html").read_text()
    p = parse(html)
    assert p.sections == [s.id for s in SECTIONS]
    meta = json.loads((out / "report.json").read_text())
    assert all(v == "drawn" for v in meta["sections"].values()), meta["sections"]
    assert f"report: {out / 'report.html'}" in output
    assert "Not drawn" not in html
    for heading in ("Gradient flow", "Activation gradients", "Low-rank evidence", "SFS traces", "Structural events", "Method comparison"):
        assert heading in html


def test_offline_with_plotly_inlined_once(full_report):
    from plotly.offline import get_plotlyjs

    html = (full_report[0] / "report.html").read_text()
    assert not NO_CDN.search(html)
    assert html.count(get_plotlyjs()[:300]) == 1  # the library once, however many interactive figures
    assert html.count("Plotly.newPlot") >= 4  # training curves, ratio surface, low-rank, sfs traces


def test_each_figure_as_png_and_svg(full_report, recorded):
    out = full_report[0]
    meta = json.loads((out / "report.json").read_text())
    expected = {"training_curves", "comparison", "gradient_ratio", "activation_profile", "activation_grads", "low_rank", "subspace"}
    assert expected <= set(meta["figures"])
    assert any(f.startswith("sfs_traces-") for f in meta["figures"])
    for stem in meta["figures"]:
        png, svg = out / "figures" / f"{stem}.png", out / "figures" / f"{stem}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", stem
        assert b"<svg" in svg.read_bytes()[:2000], stem
    assert (out / "data" / "gradient_ratio.parquet").is_file() and (out / "data" / "events.parquet").is_file()
    import pandas as pd

    ratio = pd.read_parquet(out / "data" / "gradient_ratio.parquet")  # numbers, not the formatted cells shown in the page
    assert {"method", "epoch", "layer", "ratio", "ci_low", "ci_high", "n_seeds"} <= set(ratio.columns) and ratio.ratio.dtype == float
    act = pd.read_parquet(out / "data" / "activation_grad_ratio.parquet")  # block-input ratios with their intervals
    assert {"method", "epoch", "layer", "ratio", "ci_low", "ci_high", "ci_method"} <= set(act.columns)
    last = act[(act.method == "lor2c") & (act.epoch == act.epoch.max())].set_index("layer").ratio
    raw = pd.read_parquet(out / "data" / "activation_grads.parquet").set_index("layer")  # the last epoch's ||dL/dh_i|| per run
    assert last.to_numpy() == pytest.approx((raw["lor2c"] / raw["lora"]).loc[last.index].to_numpy(), rel=1e-9)
    flat = pd.read_parquet(out / "data" / "flattening.parquet").set_index("group")  # one row per method (each its own group here)
    assert {"flat_step_median", "last_gain", "low", "high", "p", "flattened"} <= set(flat.columns) and len(flat) == 4
    assert flat.flat_step_median.notna().all() and flat.low.notna().all()  # 2 evaluations each, predictions recorded
    from lor2c_probe.record.store import read_table

    m = read_table(recorded["lor2c"], "metrics")
    acc = m[(m.split == "eval") & (m.name == "accuracy")].sort_values("step").value.to_numpy()
    assert flat.loc["lor2c", "last_gain"] == pytest.approx(acc[-1] - acc[-2], abs=1e-12)  # by hand from the recorded evals


def test_flattening_reads_completed_runs_and_accuracy_only(recorded, tmp_path):
    from lor2c_probe.record.runs import load_runs
    from lor2c_probe.report.sections import training_section

    runs = {}
    for name in ("lor2c", "lora"):
        runs[name] = tmp_path / name
        shutil.copytree(recorded[name], runs[name])
    manifest = json.loads((runs["lora"] / "manifest.json").read_text())
    (runs["lora"] / "manifest.json").write_text(json.dumps({**manifest, "status": "interrupted"}))
    table = next(b for b in training_section(load_runs(list(runs.values()))).blocks if getattr(b, "data", None) == "flattening")
    assert list(table.frame.group) == ["lor2c"]  # the interrupted run has not had its last epoch
    for name in runs:  # a headline that is not a proportion: no binomial rule, no accuracy-point margin
        m = json.loads((runs[name] / "manifest.json").read_text())
        m["results"]["headline_metric"] = "f1"
        (runs[name] / "manifest.json").write_text(json.dumps(m))
    blocks = training_section(load_runs(list(runs.values()))).blocks
    assert not any(getattr(b, "data", None) == "flattening" for b in blocks) and len(blocks) == 1


def test_static_report_embeds_svgs_without_javascript(recorded, tmp_path):
    build_report([recorded["lor2c"], recorded["lora"]], tmp_path / "s", interactive=False)
    html = (tmp_path / "s" / "report.html").read_text()
    p = parse(html)
    assert p.scripts == 0 and p.figures == html.count("data:image/svg+xml;base64,") > 0
    assert (tmp_path / "s" / "report.html").stat().st_size < 3_000_000


def test_missing_tables_give_notes_not_failures(recorded, tmp_path):
    res = runner.invoke(app, ["report", str(recorded["bare"]), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "r" / "report.html").read_text()
    parse(html)
    meta = json.loads((tmp_path / "r" / "report.json").read_text())
    missing = {k for k, v in meta["sections"].items() if v != "drawn"}
    assert missing == {"comparison", "gradients", "activations", "low_rank", "sfs", "events", "update_spectra", "histograms"}
    assert "needs two runs with a `grads` table" in html and "--probes" in html
    assert html.count('class="note"') == len(missing)
    assert "section gradients not drawn" in res.output


def test_user_strings_are_escaped(recorded, tmp_path):
    evil = tmp_path / 'a<b>&"c"'
    shutil.copytree(recorded["lor2c"], evil)
    twin = tmp_path / "twin<i>"
    shutil.copytree(recorded["lor2c"], twin)  # same method and seed: labels fall back to the folder names
    res = build_report([evil, twin], tmp_path / "r", title="<script>alert(1)</script>", interactive=False)
    html = res.html.read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<b>&"c"' not in html and "a&lt;b&gt;&amp;&quot;c&quot;" in html
    assert "twin<i>" not in html and "twin&lt;i&gt;" in html
    parse(html)
    live = build_report([evil, twin], tmp_path / "i", interactive=True).html.read_text()  # labels also inside plotly's JSON
    assert 'a<b>&"c"' not in live and "twin<i>" not in live and "twin\\u003ci\\u003e" in live


def test_report_imports_no_torch(recorded, tmp_path):
    code = (
        "import sys\nfrom pathlib import Path\nfrom lor2c_probe.report.build import build_report\n"
        f"build_report([Path({str(recorded['lor2c'])!r}), Path({str(recorded['lora'])!r}), Path({str(recorded['im-lor2c'])!r})], "
        f"Path({str(tmp_path / 'r')!r}), interactive=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "r" / "report.html").is_file()


def test_nothing_half_written_and_overwrite_rules(recorded, tmp_path):
    out = tmp_path / "r"
    assert runner.invoke(app, ["report", str(recorded["lor2c"]), "--out", str(out)]).exit_code == 0
    assert_user_error(runner.invoke(app, ["report", str(recorded["lor2c"]), "--out", str(out)]), "pass --overwrite")
    assert runner.invoke(app, ["report", str(recorded["lor2c"]), "--out", str(out), "--overwrite"]).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["data", "figures", "report.html", "report.json"] or \
        sorted(p.name for p in out.iterdir()) == ["figures", "report.html", "report.json"]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    assert_user_error(runner.invoke(app, ["report", str(recorded["lor2c"]), "--out", str(other), "--overwrite"]), "refusing to --overwrite")
    assert (other / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize("args,message", [
    (["{tmp}"], "not a lor2c-probe run directory"),
    (["{lor2c}", "--stat", "median"], "unknown --stat 'median'"),
    (["{lor2c}", "--k", "0"], "k must be a positive integer; got 0"),
    (["{lor2c}", "{lor2c}"], "the same run directory is given twice"),
    (["{lor2c}", "{lora}", "--baseline", "adalora"], "--baseline 'adalora' matches no run"),
])
def test_bad_input(recorded, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, lor2c=recorded["lor2c"], lora=recorded["lora"]) for a in args]
    out = tmp_path / "out"
    assert_user_error(runner.invoke(app, ["report", *args, "--out", str(out)]), message)
    assert not out.exists()


def test_study_folder_stands_for_its_runs(recorded, tmp_path):
    study = tmp_path / "study"
    for name in ("lor2c", "lora"):
        shutil.copytree(recorded[name], study / "runs" / name)
    res = runner.invoke(app, ["report", str(study)])
    assert res.exit_code == 0, res.output
    assert (study / "report" / "report.html").is_file()
    assert json.loads((study / "report" / "report.json").read_text())["sections"]["gradients"] == "drawn"


def test_labels_distinguish_seeds(recorded, tmp_path):
    from lor2c_probe.record.runs import load_runs

    runs = load_runs([recorded["lor2c"], recorded["bare"], recorded["lora"]])
    assert [r.label for r in runs] == ["lor2c s3", "lor2c s4", "lora s3"]
    assert [r.group for r in runs] == ["lor2c", "lor2c", "lora"]
    assert Path(runs[0].path) == recorded["lor2c"]


@pytest.mark.parametrize("status,extra,banner", [
    ("running", {}, "stopped without finishing (the process was killed)"),
    ("interrupted", {"interrupted": {"step": 7, "reason": "SIGTERM"}}, "did not finish (interrupted at step 7: SIGTERM)"),
    ("diverged", {"diverged": {"step": 3, "epoch": 0, "what": "loss"}}, "DIVERGED at step 3 (epoch 0): the loss was not finite"),
])
def test_a_run_that_did_not_complete_gets_a_banner(recorded, tmp_path, status, extra, banner):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(recorded["bare"], run)
    m = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**m, "status": status, **extra}))
    res = build_report([run], tmp_path / "rep", interactive=False)
    html = res.html.read_text()
    assert 'class="banner"' in html and banner in html
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["warnings"][0].startswith("Run ")
    clean = build_report([recorded["bare"]], tmp_path / "rep2", interactive=False).html.read_text()
    assert 'class="banner"' not in clean


def test_a_damaged_shard_is_a_note_in_its_section_not_a_failed_report(recorded, tmp_path):
    import shutil

    runs = []
    for name in ("lor2c", "lora"):
        shutil.copytree(recorded[name], tmp_path / name)
        runs.append(tmp_path / name)
    shard = sorted((tmp_path / "lor2c" / "tables" / "grads").iterdir())[0]
    shard.write_bytes(b"\0" * shard.stat().st_size)
    res = build_report(runs, tmp_path / "rep", interactive=False)
    assert res.sections["gradients"] is not None and "damaged Parquet shard" in res.sections["gradients"]
    assert res.sections["training"] is None  # the other sections are drawn
