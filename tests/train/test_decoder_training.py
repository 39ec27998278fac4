"""`lor2c-probe train` on a tiny LLaMA-style decoder with Alpaca-format data, end to end through the CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lor2c_probe.cli import app
from lor2c_probe.record.store import read_manifest, read_table
from tests.test_cli import assert_user_error

runner = CliRunner()


def _args(model, data, out, *extra):
    return ["train", "--model", str(model), "--task", "alpaca", "--train-file", str(data["train"]), "--eval-file", str(data["eval"]),
            "--epochs", "2", "--batch-size", "8", "--rank", "4", "--lr", "5e-3", "--max-length", "96", "--device", "cpu",
            "--out", str(out), "--quiet", "--no-report", *extra]


@pytest.mark.parametrize("method,modules", [("lor2c", {"lor2c.0", "lor2c.1", "lor2c.2"}), ("lora", {"lora.0", "lora.1", "lora.2"})])
def test_instruction_tuning_records_every_table(tiny_llama, tiny_alpaca, tmp_path, method, modules):
    res = runner.invoke(app, _args(tiny_llama, tiny_alpaca, tmp_path / "r", "--method", method))
    assert res.exit_code == 0, res.output
    m = read_manifest(tmp_path / "r")
    assert m["status"] == "completed" and m["task"]["name"] == "alpaca" and m["model"]["model_type"] == "llama"
    assert m["params"]["head_params"] == 0 and m["params"]["adapter_params"] == m["params"]["adapter_params_formula"]
    metrics = read_table(tmp_path / "r", "metrics")
    ev = metrics[(metrics.split == "eval")].pivot_table(index="step", columns="name", values="value")
    assert list(ev.columns) == ["loss", "perplexity"] and len(ev) == 2
    assert ev.perplexity.round(6).tolist() == [round(2.718281828459045 ** x, 6) for x in ev.loss]
    assert ev.loss.iloc[-1] < ev.loss.iloc[0]  # it learns the instruction format
    assert set(read_table(tmp_path / "r", "grads").module) - {"global"} == modules
    assert len(read_table(tmp_path / "r", "activation_grads").layer.unique()) == 4  # h_0..h_2 and the stack output
    assert not read_table(tmp_path / "r", "spectra").empty


def test_imlor2c_merges_and_injects_on_step_schedule(tiny_llama, tiny_alpaca, tmp_path):
    res = runner.invoke(app, _args(tiny_llama, tiny_alpaca, tmp_path / "r", "--method", "im-lor2c", "--merges", "1",
                                   "--injections", "1", "--schedule", "step"))
    assert res.exit_code == 0, res.output
    events = read_table(tmp_path / "r", "events")
    assert sorted(events.kind) == ["inject", "merge"]
    grads = read_table(tmp_path / "r", "grads")
    last = grads[grads.step == grads.step.max()]
    injected = json.loads(events[events.kind == "inject"].detail_json.iloc[0])
    assert any(m.startswith("lora.") for m in last.module), injected  # the injected q_proj/v_proj LoRA trains
    assert any("-" in m for m in last.module)  # a merged span


def test_loss_on_response_is_recorded_and_changes_the_loss(tiny_llama, tiny_alpaca, tmp_path):
    for name, extra in (("all", []), ("resp", ["--loss-on", "response"])):
        assert runner.invoke(app, _args(tiny_llama, tiny_alpaca, tmp_path / name, "--method", "lor2c", *extra)).exit_code == 0
    assert read_manifest(tmp_path / "resp")["config"]["data"]["loss_on"] == "response"
    ev = {n: read_table(tmp_path / n, "metrics").query("split == 'eval' and name == 'loss'").value.iloc[0] for n in ("all", "resp")}
    assert ev["all"] != ev["resp"]


def test_decoder_bad_input_is_one_line(tiny_llama, tiny_alpaca, tiny_models, tiny_data, tmp_path):
    base = ["train", "--device", "cpu", "--quiet", "--no-report", "--epochs", "1"]
    assert_user_error(runner.invoke(app, [*base, "--model", str(tiny_llama), "--layers-path", "model.nothing", "--out", str(tmp_path / "a")]),
                      "--layers-path")
    assert_user_error(runner.invoke(app, [*base, "--model", str(tiny_models["bert"]), "--task", "alpaca", "--train-file",
                                          str(tiny_alpaca["train"]), "--out", str(tmp_path / "b")]), "bert is an encoder")
    assert_user_error(runner.invoke(app, [*base, "--task", "alpaca", "--out", str(tmp_path / "c")]), "task 'alpaca' needs --train-file")
    assert not any((tmp_path / n).exists() for n in "abc")
