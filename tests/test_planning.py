"""Memory planning: parameter counts against instantiated models, and the activation fit against a direct
saved-tensor measurement of the whole model (brute force)."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from lor2c_probe.cli import app
from lor2c_probe.planning import MemoryPlan, _attach, _model, activation_fit, activations, arch_config, parameter_counts, saved_bytes
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
    estimate = activations(fit, 4, tokens)
    torch.manual_seed(0)
    model, bb = _model(cfg, 4, "cpu")
    model = _attach(model, bb, plan, "cpu").train()
    direct = saved_bytes(model, cfg, tokens, precision, causal=True, input_grad=False)  # 4 blocks, 40 tokens, frozen embeddings
    # Within 3%: the blocks that need a gradient inside all save the model's one fp32 rotary cos/sin table pair
    # (2 x 40 tokens x 16 x 4 B = 5,120 B), which the per-block fit counts once per block: 2 copies too many under
    # LoR2C (block 0 saves nothing), 3 under LoRA; under bf16 that is the whole difference.
    assert direct <= estimate <= 1.03 * direct
    if precision == "bf16":
        assert estimate - direct == 5_120 * (2 if method == "lor2c" else 3)
    if method == "lor2c":  # nothing inside block 0 needs a gradient: only its adapter's input projection is kept
        assert fit["first_per_token"] < 0.1 * fit["layer_per_token"]
    if precision == "bf16":  # the fit's constant is mostly the bf16 copy of each block's linear weights (+ norm weights, adapters)
        block = model.model.layers[1] if method == "lor2c" else model.base_model.model.model.layers[1]
        linear = sum(m.weight.numel() for m in block.modules() if isinstance(m, torch.nn.Linear))
        assert fit["layer_const"] == pytest.approx(2 * linear, rel=0.05)


def test_smallest_gpu_counts_the_cuda_context():
    from lor2c_probe.planning import CUDA_CONTEXT, smallest_gpu

    assert smallest_gpu(0) == 24
    assert smallest_gpu(24 * 10**9 - CUDA_CONTEXT) == 24 and smallest_gpu(24 * 10**9 - CUDA_CONTEXT + 1) == 40
    assert smallest_gpu(141 * 10**9) is None


def test_memory_plan_cli(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["params", "--arch", "minilm", "--method", "lor2c", "--memory", "--seq-len", "64"])
    assert res.exit_code == 0, res.output
    assert "total per GPU" in res.output and "saved activations" in res.output and "22,750,850 parameters" in res.output
    assert "fits on 24 GB GPUs" in res.output
    assert_user_error(runner.invoke(app, ["params", "--arch", "minilm", "--memory"]), "--memory plans one run: give --method")
    assert_user_error(runner.invoke(app, ["params", "--arch", "minilm", "--method", "lor2c", "--memory", "--precision", "fp8"]),
                      "precision must be one of fp32, bf16, fp16; got 'fp8'")
    assert_user_error(runner.invoke(app, ["params", "--arch", "gpt5", "--method", "lor2c", "--memory"]), "unknown --arch 'gpt5'")


@pytest.mark.parametrize("arch", ["llama-1b", "llama-2-70b", "roberta-base"])
@pytest.mark.parametrize("method", ["lor2c", "lora", "reslora-ms"])
def test_bundled_shapes_and_configs_agree(arch, method):
    """`params --arch` (closed-form counts from ARCH_SHAPES) and `--memory` (meta-device model from ARCH_CONFIGS)
    describe the same model: grouped-query v_proj widths included."""
    from lor2c_probe.compare.params import count_table

    counts = parameter_counts(arch_config(arch), MemoryPlan(method, 8, 1, 16, "bf16"))
    assert counts["adapters"] == count_table(arch, [method], 8)[method]
