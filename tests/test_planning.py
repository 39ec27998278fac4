"""Memory planning: parameter counts against instantiated models, and the activation fit against a direct
saved-tensor measurement of the whole model (brute force)."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from lor2c_probe.cli import app
from lor2c_probe.planning import MemoryPlan, _attach, _model, activation_fit, arch_config, parameter_counts, saved_bytes
from tests.test_cli import assert_user_error


def _small_llama():
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=500, hidden_size=64, intermediate_size=172, num_hidden_layers=4, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=256)


@pytest.mark.parametrize("method", ["lor2c", "lora", "im-lor2c"])
def test_meta_counts_equal_an_instantiated_model(method):
    cfg = _small_llama()
    plan = MemoryPlan(method, 4, 1, 16, "bf16")
    got = parameter_counts(cfg, plan)
    model, bb = _model(cfg, 4, "cpu")
    model = _attach(model, bb, plan, "cpu")
    assert got["total"] == sum(p.numel() for p in model.parameters())
    assert got["adapters"] + got["head"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert got["modules"] == 4  # one recorded module per block before any merge: lor2c.<l>, lora.<l> (q and v together)


def test_bundled_llama_2_7b_counts():
    counts = parameter_counts(arch_config("llama-2-7b"), MemoryPlan("lor2c", 64, 1, 16, "bf16"))
    assert counts["frozen"] == 6_738_415_616  # Llama-2-7b-hf's parameter count
    assert counts["adapters"] == 16_777_216  # decisions.md: LoR2C r = 64 on 32 layers of d = 4096


@pytest.mark.parametrize("method,precision", [("lor2c", "bf16"), ("lora", "bf16"), ("lor2c", "fp32")])
def test_activation_fit_matches_a_direct_measurement_of_the_whole_model(method, precision):
    cfg, tokens = _small_llama(), 40
    plan = MemoryPlan(method, 4, 1, tokens, precision)
    fit = activation_fit(cfg, plan)
    estimate = fit["head_const"] + fit["head_per_token"] * tokens + 4 * (fit["layer_const"] + fit["layer_per_token"] * tokens)
    torch.manual_seed(0)
    model, bb = _model(cfg, 4, "cpu")
    model = _attach(model, bb, plan, "cpu").train()
    direct = saved_bytes(model, cfg, tokens, precision, causal=True)  # 4 blocks, 40 tokens, same leaf input
    # Within 3%: in fp32 every block saves the same rotary cos/sin tables, which the per-block fit counts once per
    # block (15,360 B too many here, 2.1%); under autocast each block casts its own copy, and the fit is exact.
    assert direct <= estimate <= 1.03 * direct
    if precision == "bf16":  # the fit's constant is mostly the bf16 copy of each block's linear weights (+ norm weights, adapters)
        block = model.model.layers[1] if method == "lor2c" else model.base_model.model.model.layers[1]
        linear = sum(m.weight.numel() for m in block.modules() if isinstance(m, torch.nn.Linear))
        assert fit["layer_const"] == pytest.approx(2 * linear, rel=0.05)


def test_memory_plan_cli(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["params", "--arch", "minilm", "--method", "lor2c", "--memory", "--seq-len", "64"])
    assert res.exit_code == 0, res.output
    assert "total per GPU" in res.output and "saved activations" in res.output and "22,750,850 parameters" in res.output
    assert_user_error(runner.invoke(app, ["params", "--arch", "minilm", "--memory"]), "--memory plans one run: give --method")
    assert_user_error(runner.invoke(app, ["params", "--arch", "minilm", "--method", "lor2c", "--memory", "--precision", "fp8"]),
                      "precision must be one of fp32, bf16, fp16; got 'fp8'")
    assert_user_error(runner.invoke(app, ["params", "--arch", "gpt5", "--method", "lor2c", "--memory"]), "unknown --arch 'gpt5'")
