"""The output guard: --overwrite replaces only what lor2c-probe wrote, moves runs aside, never touches the rest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lor2c_probe.cli import app
from lor2c_probe.errors import UserError
from lor2c_probe.record.outputs import ASIDE, check_output, mark, replace_output
from tests.test_cli import assert_user_error, tiny_args

runner = CliRunner()


def _report_folder(path: Path, signed: bool = True) -> Path:
    (path / "figures").mkdir(parents=True)
    (path / "figures" / "a.png").write_bytes(b"png")
    (path / "report.html").write_text("<html>")
    meta = {"title": "t", "runs": {}, "sections": {}}
    (path / "report.json").write_text(json.dumps(mark(meta) if signed else meta))
    return path


@pytest.fixture(scope="module")
def run_dir(tiny_models, tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("guard") / "base"
    assert runner.invoke(app, tiny_args(tiny_models["bert"], tiny_data, out)).exit_code == 0
    return out


def test_report_over_a_project_folder_deletes_nothing(run_dir, tmp_path, monkeypatch):
    """The observed data loss: `report runs/base --out . --overwrite` from a folder of notes and sources."""
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "notes.md").write_text("my notes")
    (project / "src" / "train.py").write_text("print()")
    (project / "runs").mkdir()
    monkeypatch.chdir(project)
    res = runner.invoke(app, ["report", str(run_dir), "--out", ".", "--overwrite"])
    assert_user_error(res, "refusing to --overwrite .: it is the working folder or one of its parents")
    assert (project / "notes.md").read_text() == "my notes" and (project / "src" / "train.py").exists()
    res = runner.invoke(app, ["report", str(run_dir), "--out", str(project / "src"), "--overwrite"])
    assert_user_error(res, f"refusing to --overwrite {project / 'src'}: it has no report.json, so it is not a report output")
    assert (project / "src" / "train.py").exists()


@pytest.mark.parametrize("where", ["/", "~"])
def test_root_and_home_are_never_replaced(where):
    with pytest.raises(UserError, match="refusing to --overwrite .*: it is (the file-system root|your home folder)"):
        check_output(Path(os.path.expanduser(where)), "report", True)


def test_a_foreign_file_in_our_own_output_is_named_and_kept(tmp_path):
    rep = _report_folder(tmp_path / "rep")
    (rep / "figures" / "mine.txt").write_text("not a figure")
    with pytest.raises(UserError, match=rf"{rep / 'figures' / 'mine.txt'} is not lor2c-probe's report output"):
        check_output(rep, "report", True)
    (rep / "figures" / "mine.txt").unlink()
    (rep / "thesis.tex").write_text("x")
    with pytest.raises(UserError, match=rf"{rep / 'thesis.tex'} is not lor2c-probe's report output"):
        check_output(rep, "report", True)
    assert (rep / "thesis.tex").exists()


def test_a_marker_without_signature_is_not_proof(tmp_path):
    rep = _report_folder(tmp_path / "rep")
    (rep / "report.json").write_text(json.dumps({"title": "mine"}))  # neither signed nor an old report's keys
    with pytest.raises(UserError, match="report.json was not written by lor2c-probe"):
        check_output(rep, "report", True)
    legacy = _report_folder(tmp_path / "old", signed=False)  # written before signatures: its keys identify it
    assert check_output(legacy, "report", True) is not None


def test_a_report_over_a_run_or_study_is_refused(run_dir, tmp_path):
    res = runner.invoke(app, ["report", str(run_dir), "--out", str(run_dir), "--overwrite"])
    assert_user_error(res, f"--out {run_dir} holds {run_dir}, a run this command reads")
    assert (run_dir / "manifest.json").exists()


def test_replaced_reports_are_deleted_and_replaced_runs_moved_aside(run_dir, tmp_path, tiny_models, tiny_data):
    rep = _report_folder(tmp_path / "rep")
    r = check_output(rep, "report", True)
    assert r is not None and not r.move_aside and replace_output(r) is None and not rep.exists()
    # train --overwrite of a run: the old run is moved aside beside it, and the notice says where
    out = tmp_path / "run"
    assert runner.invoke(app, tiny_args(tiny_models["bert"], tiny_data, out)).exit_code == 0
    res = runner.invoke(app, tiny_args(tiny_models["bert"], tiny_data, out, "--overwrite"))
    assert res.exit_code == 0, res.output
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(f"run{ASIDE}")]
    assert len(aside) == 1 and (aside[0] / "manifest.json").is_file()
    assert f"notice: the previous run directory {out} holds training runs: moved aside to {aside[0]}, not deleted" in res.output


def test_analysis_output_with_runs_is_moved_aside(tiny_models, tiny_data, tmp_path):
    out = tmp_path / "g"
    args = ["gradients", "--model", str(tiny_models["bert"]), "--task", "custom", "--train-file", str(tiny_data["train"]),
            "--eval-file", str(tiny_data["eval"]), "--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "8", "--rank", "2",
            "--device", "cpu", "--quiet", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    assert json.loads((out / "gradients.json").read_text())["written_by"] == "lor2c-probe"
    (out / "notes.txt").write_text("mine")
    assert_user_error(runner.invoke(app, args + ["--overwrite"]), f"{out / 'notes.txt'} is not lor2c-probe's gradients output")
    (out / "notes.txt").unlink()
    res = runner.invoke(app, args + ["--overwrite"])
    assert res.exit_code == 0, res.output
    aside = next(p for p in tmp_path.iterdir() if ASIDE in p.name)
    assert (aside / "runs" / "lor2c" / "manifest.json").is_file() and (out / "runs" / "lor2c" / "manifest.json").is_file()
