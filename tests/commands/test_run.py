"""`lor2c-probe run STUDY`: a tiny study end to end, --resume keeping finished runs, and bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lor2c_probe.cli import app
from lor2c_probe.record.store import read_manifest, read_table
from tests.helpers import rewrite_predictions
from tests.test_cli import assert_user_error

runner = CliRunner()


def study_text(model_dir, data) -> str:
    return f'''
name = "tiny-fig7"
title = "Tiny <gradient> study"
paper = "Fig. 7"
claim = "ratio rises toward lower layers"
seeds = [5]
analyses = ["training", "gradients", "activations", "comparison"]
baseline = "lora"

[train]
model = "{model_dir}"
task = "custom"
train_file = "{data["train"]}"
eval_file = "{data["eval"]}"
epochs = 2
steps_per_epoch = 4
batch_size = 8
rank = 2
device = "cpu"
probes = "grads,activations"

[[runs]]
label = "lor2c"
method = "lor2c"

[[runs]]
label = "lora"
method = "lora"
'''


@pytest.fixture(scope="module")
def study_run(tiny_models, tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    path = root / "tiny.toml"
    path.write_text(study_text(tiny_models["bert"], tiny_data))
    out = root / "out"
    res = runner.invoke(app, ["run", str(path), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    return path, out, res.output


def test_study_trains_its_runs_and_writes_the_report(study_run):
    _, out, output = study_run
    assert output.strip().splitlines()[-1] == f"report: {out / 'report' / 'report.html'}"
    for label in ("lor2c", "lora"):
        m = read_manifest(out / "runs" / label)
        assert m["status"] == "completed" and m["config"]["train"]["seed"] == 5
    meta = json.loads((out / "study.json").read_text())
    assert meta["study"]["name"] == "tiny-fig7" and set(meta["run_train_seconds"]) == set(meta["run_wall_seconds_this_invocation"]) == {"lor2c", "lora"}
    assert all(meta["sections"][a] == "drawn" for a in ("training", "gradients", "activations", "comparison"))
    html = (out / "report" / "report.html").read_text()
    assert "Tiny &lt;gradient&gt; study" in html and "Claim under test: ratio rises toward lower layers" in html
    assert "lor2c / lora" in html  # the ratio surface's subplot title names numerator and baseline


def test_resume_keeps_finished_runs_and_redraws(study_run):
    path, out, _ = study_run
    before = read_manifest(out / "runs" / "lor2c")["finished"]
    res = runner.invoke(app, ["run", str(path), "--out", str(out), "--resume", "--static"])
    assert res.exit_code == 0, res.output
    assert res.output.count("completed earlier with the same configuration; kept") == 2
    assert read_manifest(out / "runs" / "lor2c")["finished"] == before
    # a manifest written before a config field existed (here: pre_num) still counts as the same configuration
    m = read_manifest(out / "runs" / "lora")
    del m["config"]["adapter"]["pre_num"]
    (out / "runs" / "lora" / "manifest.json").write_text(json.dumps(m))
    res = runner.invoke(app, ["run", str(path), "--out", str(out), "--resume", "--static"])
    assert res.exit_code == 0 and res.output.count("kept") == 2, res.output
    assert "data:image/svg+xml;base64," in (out / "report" / "report.html").read_text()


def test_seed_override_trains_one_folder_per_seed(tiny_models, tiny_data, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(study_text(tiny_models["bert"], tiny_data).replace('analyses = ["training", "gradients", "activations", "comparison"]', 'analyses = ["comparison"]'))
    res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "o"), "--seeds", "1,2", "--epochs", "1", "--quiet", "--static"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "o" / "runs").iterdir()) == ["lor2c-s1", "lor2c-s2", "lora-s1", "lora-s2"]
    assert read_manifest(tmp_path / "o" / "runs" / "lora-s2")["config"]["train"]["epochs"] == 1
    html = (tmp_path / "o" / "report" / "report.html").read_text()
    assert "mean over 2 seed(s)" in html


def test_only_trains_the_named_labels_and_a_later_resume_the_rest(tiny_models, tiny_data, tmp_path):
    path, out = tmp_path / "s.toml", tmp_path / "o"
    path.write_text(study_text(tiny_models["bert"], tiny_data).replace('analyses = ["training", "gradients", "activations", "comparison"]',
                                                                      'analyses = ["comparison"]'))
    assert_user_error(runner.invoke(app, ["run", str(path), "--out", str(out), "--only", "lora,nope"]),
                      "--only: no run labelled 'nope'; study tiny-fig7 has: lor2c, lora")
    assert_user_error(runner.invoke(app, ["run", str(path), "--out", str(out), "--only", "lor2c"]),
                      "--only leaves out the baseline 'lora', and its run lora has not finished")
    assert not out.exists()
    res = runner.invoke(app, ["run", str(path), "--out", str(out), "--only", "lora", "--quiet", "--static"])
    assert res.exit_code == 0, res.output
    assert "1 run(s); 1 left for later" in res.output
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["lora"]
    meta = json.loads((out / "study.json").read_text())
    assert meta["status"] == "partial: 1 of 2 runs (1 left for a later sitting)" and meta["runs_left"] == ["lor2c"]
    assert meta["runs"] == {"lor2c": "left for later (not in --only)", "lora": "completed"} and set(meta["results"]) == {"lora"}
    finished = read_manifest(out / "runs" / "lora")["finished"]
    # without --resume an existing study folder is refused, and the message names --resume, not only --overwrite
    assert_user_error(runner.invoke(app, ["run", str(path), "--out", str(out), "--only", "lor2c"]), "or --resume to continue it")
    # lor2c alone is fine once the baseline has finished, which is kept
    res = runner.invoke(app, ["run", str(path), "--out", str(out), "--resume", "--only", "lor2c", "--quiet", "--static"])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "study.json").read_text())
    assert meta["status"] == "completed" and meta["runs_left"] == [] and meta["runs"] == {"lor2c": "completed", "lora": "kept"}
    assert read_manifest(out / "runs" / "lora")["finished"] == finished
    # a run left out whose configuration changed is left alone; without --only it is refused as before
    m = read_manifest(out / "runs" / "lor2c")
    m["config"]["train"]["lr"] = 0.5
    (out / "runs" / "lor2c" / "manifest.json").write_text(json.dumps(m))
    res = runner.invoke(app, ["run", str(path), "--out", str(out), "--resume", "--only", "lora", "--quiet", "--static"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "study.json").read_text())["runs_left"] == ["lor2c"]
    assert_user_error(runner.invoke(app, ["run", str(path), "--out", str(out), "--resume"]), "was trained with another configuration (train.lr")
    assert_user_error(runner.invoke(app, ["run", str(path), "--out", str(out), "--status", "--only", "lora"]), "--status only reads; drop --only")


def test_bad_input(study_run, tmp_path):
    path, out, _ = study_run
    assert_user_error(runner.invoke(app, ["run", str(tmp_path / "nope.toml")]), "not found")
    assert_user_error(runner.invoke(app, ["run", str(path), "--out", str(out)]), "pass --overwrite")
    assert_user_error(runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "x"), "--seeds", "a,b"]), "--seeds must be a comma list")
    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace("rank = 2", "rank = 0"))
    assert_user_error(runner.invoke(app, ["run", str(bad), "--out", str(tmp_path / "y")]), "rank must be a positive integer; got 0")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    # data that is not there fails in the first run; the study folder it had just created is removed again
    missing = tmp_path / "missing.toml"
    text = path.read_text()
    start = text.index('train_file = "') + len('train_file = "')
    missing.write_text(text[:start] + str(tmp_path / "nope.csv") + text[text.index('"', start):])
    assert_user_error(runner.invoke(app, ["run", str(missing), "--out", str(tmp_path / "z"), "--quiet"]), "nope.csv")
    assert not (tmp_path / "z").exists()
    # a run that cannot start (its LoRA target is not in the model) is refused before the runs ahead of it train
    late = tmp_path / "late.toml"
    late.write_text(path.read_text().replace('label = "lora"\nmethod = "lora"', 'label = "lora"\nmethod = "lora"\ntarget_modules = "nope"'))
    assert 'target_modules = "nope"' in late.read_text()
    res = runner.invoke(app, ["run", str(late), "--out", str(tmp_path / "w"), "--quiet"])
    assert_user_error(res, "run lora cannot start, so nothing was trained: PEFT")
    assert not (tmp_path / "w").exists()  # lor2c, planned first, did not train


def test_an_interrupted_study_resumes_its_runs_and_refuses_a_changed_one(tiny_models, tiny_data, tmp_path, monkeypatch):
    from lor2c_probe.train import loop

    path, out = tmp_path / "s.toml", tmp_path / "o"
    text = study_text(tiny_models["bert"], tiny_data)
    path.write_text(text)
    real, calls = loop.Trainer.train_step, {"n": 0}

    def step(self, *a, **k):  # lor2c trains 8 steps; lora is interrupted at its 6th, after its first checkpoint
        calls["n"] += 1
        if calls["n"] == 8 + 6:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(loop.Trainer, "train_step", step)
    res = runner.invoke(app, ["run", str(path), "--out", str(out), "--quiet", "--static"])
    assert res.exit_code == 130, res.output
    assert "the study continues with `lor2c-probe run" in res.output and "--resume`" in res.output
    meta = json.loads((out / "study.json").read_text())  # written before the first run, updated after each
    assert meta["written_by"] == "lor2c-probe" and meta["status"] == "interrupted"
    assert meta["runs"] == {"lor2c": "completed", "lora": "interrupted"}
    # --status reads where it stands (and changes nothing): one line per run, what is done and what is left
    res = runner.invoke(app, ["run", str(path), "--out", str(out), "--status"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    r = read_manifest(out / "runs" / "lor2c")["results"]
    wall, cpu, acc = r["wall_seconds"], r["cpu_seconds"], r["final_eval"]["accuracy"]
    assert wall < 120 and cpu < 120  # seconds print as seconds
    rewrite_predictions(out / "runs" / "lor2c", learned=True)  # the tiny model's outcome is chance's: fixed here
    res = runner.invoke(app, ["run", str(path), "--out", str(out), "--status"])
    lines = res.output.splitlines()
    assert lines[1] == f"  lor2c  completed  {wall:.0f} s wall, {cpu:.0f} s CPU  accuracy {acc:.4f}"
    rewrite_predictions(out / "runs" / "lor2c", learned=False)
    flagged = runner.invoke(app, ["run", str(path), "--out", str(out), "--status"]).output.splitlines()[1]
    assert flagged.startswith(lines[1] + " (did not learn: the majority class alone scores ")  # constant predictions: no discordant example
    assert flagged.endswith("; difference +0.00 points, upper 95% end +0.00)")
    last = int(read_table(out / "runs" / "lora", "metrics").step.max())  # the newest rows recorded before the interrupt
    assert lines[2] == f"  lora   interrupted; resumes from epoch-0000 (step {last} of 8 recorded; 1 of 2 epochs checkpointed)" and last >= 4
    assert lines[3] == (f"1 of 2 completed, {wall:.0f} s of training ({cpu:.0f} s CPU, 1 run(s) that count it); "
                        f"1 to train: about {wall:.0f} s at the median completed run's {wall:.0f} s")
    assert lines[4] == f"continue with: lor2c-probe run {path} --out {out} --resume"
    assert json.loads((out / "study.json").read_text()) == meta
    # kill -9 leaves "running" in the manifest and no process holding the run: said as killed, not as running
    killed = {**read_manifest(out / "runs" / "lora"), "status": "running"}
    saved = (out / "runs" / "lora" / "manifest.json").read_text()
    (out / "runs" / "lora" / "manifest.json").write_text(json.dumps(killed))
    res = runner.invoke(app, ["run", str(path), "--out", str(out), "--status"])
    assert res.output.splitlines()[2].startswith("  lora   killed while training (no process on this host holds it); resumes from epoch-0000"), res.output
    (out / "runs" / "lora" / "manifest.json").write_text(saved)
    assert_user_error(runner.invoke(app, ["run", str(path), "--out", str(out), "--status", "--resume"]), "--status only reads; drop --resume")
    res = runner.invoke(app, ["run", str(path), "--out", str(out), "--status", "--seeds", "5,6"])  # other folders: none started
    assert res.output.count(" not started") == 4 and "0 of 4 completed; 4 to train" in res.output, res.output
    other = tmp_path / "other.toml"
    other.write_text(text.replace('name = "tiny-fig7"', 'name = "another"'))
    assert_user_error(runner.invoke(app, ["run", str(other), "--out", str(out), "--status"]),
                      f"cannot --status in {out}: it holds study 'tiny-fig7', not 'another'")
    monkeypatch.setattr(loop.Trainer, "train_step", real)
    res = runner.invoke(app, ["run", str(path), "--out", str(out), "--resume", "--static"])
    assert res.exit_code == 0, res.output
    assert "lor2c: completed earlier with the same configuration; kept" in res.output and "resuming lora" in res.output
    m = read_manifest(out / "runs" / "lora")
    assert m["status"] == "completed" and m["resumes"][0]["from"] == "epoch-0000"
    assert json.loads((out / "study.json").read_text())["status"] == "completed"
    # a changed configuration is refused by name; with --overwrite the old runs are moved aside and retrained
    from lor2c_probe.commands.run import config_diff  # a tuple field read back from JSON as a list is not a change

    assert config_diff({"probes": {"extra": []}, "lr": 1}, {"probes": {"extra": ()}, "lr": 2}) == "lr: 1 then, 2 now"
    path.write_text(text.replace("rank = 2", "rank = 4"))
    assert_user_error(runner.invoke(app, ["run", str(path), "--out", str(out), "--resume"]),
                      "was trained with another configuration (adapter.rank: 2 then, 4 now)")
    res = runner.invoke(app, ["run", str(path), "--out", str(out), "--resume", "--overwrite", "--quiet", "--static"])
    assert res.exit_code == 0, res.output
    assert res.output.count("holds training runs: moved aside to") == 2
    aside = sorted(p.name.split(".replaced-")[0] for p in (out / "runs").iterdir() if ".replaced-" in p.name)
    assert aside == ["lor2c", "lora"] and read_manifest(out / "runs" / "lora")["config"]["adapter"]["rank"] == 4
