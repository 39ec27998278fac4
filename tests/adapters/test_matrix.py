"""One matrix over every registered method on tiny BERT and RoBERTa (PEFT's TEST_CASES style)."""

from __future__ import annotations

import pytest
import torch

from lor2c_probe.adapters import METHODS, get_method
from lor2c_probe.train.build import arch_shape
from lor2c_probe.config import AdapterConfig
from lor2c_probe.models import load_model
from lor2c_probe.train.checkpoint import load_trainable_state, trainable_state
from lor2c_probe.record.naming import classify, is_head

ALL = [m for m in METHODS if m != "peft"]  # `peft` needs a config file: tests/adapters/test_peft_config.py


def _inputs(tok):
    enc = tok(["the movie was great", "a dull and slow plot"], ["it was fun", "bad acting"], padding=True, return_tensors="pt")
    return {k: v for k, v in enc.items()}


def _build(model_dir, method, rank=4):
    torch.manual_seed(0)
    model, tok, bb = load_model(str(model_dir), num_labels=2, problem_type="single_label_classification")
    base_out = model.eval()(**_inputs(tok)).logits.detach()
    cfg = AdapterConfig(method=method, rank=rank, alpha=8.0, dropout=0.0)
    model = get_method(method).attach(model, bb, cfg).eval()
    return model, tok, bb, cfg, base_out


def _perturb(model):
    """Give every trainable tensor non-zero values so the adapters change the output."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("method", ALL)
def test_identity_at_init(tiny_model_dir, method):
    model, tok, _, _, base_out = _build(tiny_model_dir, method)
    out = model(**_inputs(tok)).logits
    if method == "pissa":  # W_res + B0 A0 = W up to the rounding of PiSSA's own SVD
        torch.testing.assert_close(out, base_out, rtol=0, atol=1e-6)
    else:
        torch.testing.assert_close(out, base_out, rtol=0, atol=0)  # B = 0 (or W = 0, λ = 0, l = 1): bit-identical


@pytest.mark.parametrize("method", ALL)
def test_only_adapters_and_head_get_gradients(tiny_model_dir, method):
    model, tok, _, _, _ = _build(tiny_model_dir, method)
    _perturb(model)  # so the zero-initialised factor does not block the other factor's gradient
    model.train()
    out = model(**_inputs(tok), labels=torch.tensor([0, 1]))
    out.loss.backward()
    spec = METHODS[method]
    for name, p in model.named_parameters():
        dormant = spec.dormant_lora and classify(name).kind == "lora"  # frozen until an injection switches it on
        expected = (any(m in name for m in spec.markers) and not dormant) or is_head(name)
        if p.requires_grad != expected:
            pytest.fail(f"{name}: requires_grad={p.requires_grad}, expected {expected}")
        if expected:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient"
        else:
            assert p.grad is None, f"frozen {name} got a gradient"


@pytest.mark.parametrize("method", ALL)
def test_param_count_matches_formula(tiny_model_dir, method):
    model, _, bb, cfg, _ = _build(tiny_model_dir, method)
    m = get_method(method)
    markers = METHODS[method].markers
    counted = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and any(k in n for k in markers) and not is_head(n))
    shape = arch_shape(model, bb)  # the targeted layers' fans, read through PEFT's matching
    assert counted == m.count_params(shape, cfg)


@pytest.mark.parametrize("method", ALL)
def test_save_load_round_trip(tiny_model_dir, method, tmp_path):
    from safetensors.torch import load_file, save_file

    model, tok, _, _, _ = _build(tiny_model_dir, method)
    _perturb(model)
    expected = model(**_inputs(tok)).logits.detach()
    save_file(trainable_state(model), str(tmp_path / "a.safetensors"))
    fresh, _, _, _, _ = _build(tiny_model_dir, method)
    assert not torch.equal(fresh(**_inputs(tok)).logits, expected)
    load_trainable_state(fresh, load_file(str(tmp_path / "a.safetensors")))
    torch.testing.assert_close(fresh(**_inputs(tok)).logits, expected, rtol=0, atol=0)


def test_formula_counts_from_decisions():
    """Golden values from decisions.md (RoBERTa-base r=8; LLaMA-2-7B r=64), arithmetic in reference-notes §1.6."""
    from lor2c_probe.compare.params import count_table

    rb = count_table("roberta-base", ["lor2c", "lora", "share-lor2c"], 8)
    assert rb == {"lor2c": 147_456, "lora": 294_912, "share-lor2c": 79_872}
    ll = count_table("llama-2-7b", ["lor2c", "lora"], 64)
    assert ll == {"lor2c": 16_777_216, "lora": 33_554_432}
    assert count_table("llama-2-7b", ["im-lor2c"], 64, merges=8) == {"im-lor2c": 12_582_912}  # decisions.md
