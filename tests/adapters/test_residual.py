"""LoR2C-family forward against a hand-written computation of decisions.md's formula.

Reference: run the frozen blocks one by one with the hooks removed and add
``s * B A h_i`` (ShareLoR2C: ``s * B_i A_shared h_i``; full rank: ``s * W_i h_i``) to each block output.
Inputs have no padding, so blocks can run without an attention mask.
"""

from __future__ import annotations

import pytest
import torch

from lor2c_probe.adapters import get_method
from lor2c_probe.adapters.residual import LowRankPath, ResidualBank, attach_bank
from lor2c_probe.config import AdapterConfig
from lor2c_probe.models import find_layers, load_model

TOL = dict(rtol=1e-5, atol=1e-6)  # float32, same ops in a different order


def _setup(model_dir, method, rank=4, alpha=8.0):
    torch.manual_seed(0)
    model, tok, bb = load_model(str(model_dir), num_labels=2, problem_type="single_label_classification")
    cfg = AdapterConfig(method=method, rank=rank, alpha=alpha, dropout=0.0)
    model = get_method(method).attach(model, bb, cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.startswith("lor2c."):
                p.normal_(0, 0.3)
    enc = tok(["the movie was great fun"], return_tensors="pt")  # one row: no padding, no mask needed
    assert bool(enc["attention_mask"].all())
    return model, enc, cfg


def _reference(model, enc, delta_fn):
    bank = model.lor2c
    bank.detach()  # run the bare blocks
    try:
        base = getattr(model, model.base_model_prefix)
        h = base.embeddings(input_ids=enc["input_ids"], token_type_ids=enc.get("token_type_ids"))
        _, layers = find_layers(model)
        for i, layer in enumerate(layers):
            out = layer(h)
            out = out[0] if isinstance(out, tuple) else out
            h = out + bank.scaling * delta_fn(i, h)
        if getattr(base, "pooler", None) is not None:  # BERT: [CLS] -> dense -> tanh -> classifier
            return model.classifier(base.pooler(h))
        return model.classifier(h)  # RoBERTa head takes the sequence and reads token 0
    finally:
        bank._install()


@pytest.mark.parametrize(
    "method,delta",
    [
        ("lor2c", lambda bank, i, h: h @ bank.paths[str(i)].A.T @ bank.paths[str(i)].B.T),
        ("share-lor2c", lambda bank, i, h: h @ bank.shared_A.T @ bank.paths[str(i)].B.T),
        ("full-rank-residual", lambda bank, i, h: h @ bank.paths[str(i)].W.T),
    ],
)
def test_forward_equals_formula(tiny_model_dir, method, delta):
    model, enc, cfg = _setup(tiny_model_dir, method)
    with torch.no_grad():
        got = model(**enc).logits
        want = _reference(model, enc, lambda i, h: delta(model.lor2c, i, h))
    assert model.lor2c.scaling == cfg.alpha / cfg.rank
    torch.testing.assert_close(got, want, **TOL)


def test_merged_span_reads_first_input_and_adds_to_last_output(tiny_models):
    """A path 0-1 adds s * B A h_0 to the output of block 1 and nothing to block 0."""
    torch.manual_seed(0)
    model, tok, bb = load_model(str(tiny_models["bert"]), num_labels=2, problem_type="single_label_classification")
    bank = ResidualBank(scaling=2.0, dropout=0.0)
    span = LowRankPath(0, 1, bb.hidden_size, 3)
    with torch.no_grad():
        span.B.normal_()
    bank.add_path(span)
    model = attach_bank(model, bb, bank).eval()
    enc = tok(["the movie was great fun"], return_tensors="pt")
    with torch.no_grad():
        got = model(**enc).logits
        bank.detach()
        base = model.bert
        h0 = base.embeddings(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"])
        layers = base.encoder.layer
        h = layers[1](layers[0](h0)) + 2.0 * (h0 @ span.A.T @ span.B.T)
        h = layers[2](h)
        want = model.classifier(base.pooler(h))
    torch.testing.assert_close(got, want, **TOL)


def test_adapters_stay_fp32_and_delta_takes_activation_dtype(tiny_models):
    torch.manual_seed(0)
    model, tok, bb = load_model(str(tiny_models["bert"]), num_labels=2, problem_type="single_label_classification")
    model = get_method("lor2c").attach(model, bb, AdapterConfig(rank=2)).eval()
    model.bert.to(torch.bfloat16)
    model.classifier.to(torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in model.lor2c.parameters())
    enc = tok(["the movie was great"], return_tensors="pt")
    with torch.no_grad():
        out = model(**enc).logits
    assert out.dtype == torch.bfloat16


def test_hooks_only_on_blocks_with_paths(tiny_models):
    torch.manual_seed(0)
    model, _, bb = load_model(str(tiny_models["bert"]), num_labels=2, problem_type="single_label_classification")
    bank = ResidualBank(scaling=1.0, dropout=0.0)
    bank.add_path(LowRankPath(1, 1, bb.hidden_size, 2))
    attach_bank(model, bb, bank)
    layers = model.bert.encoder.layer
    assert [len(l._forward_pre_hooks) for l in layers] == [0, 1, 0]
    assert [len(l._forward_hooks) for l in layers] == [0, 1, 0]
    bank.detach()
    assert sum(len(l._forward_hooks) + len(l._forward_pre_hooks) for l in layers) == 0


def test_path_ending_past_the_stack_is_rejected(tiny_models):
    model, _, bb = load_model(str(tiny_models["bert"]), num_labels=2, problem_type="single_label_classification")
    bank = ResidualBank(scaling=1.0, dropout=0.0)
    bank.add_path(LowRankPath(2, 5, bb.hidden_size, 2))
    with pytest.raises(ValueError, match="ends at block 5 but the model has 3 blocks"):
        attach_bank(model, bb, bank)
