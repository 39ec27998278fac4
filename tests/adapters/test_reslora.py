"""ResLoRA (reference-notes §12) against hand-written formulas on tiny BERT and RoBERTa models.

Reference: hooks registered after the bank's record each projection's input x_l and final output y_l in one
forward; every layer must satisfy y_l = W_l x_l + b_l + (the variant's term, §12.2) computed here by hand from
the recorded x's. Dropout is 0 so the terms are deterministic. Tolerance: float32, rtol 1e-5, atol 1e-6.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lor2c_probe.adapters import get_method
from lor2c_probe.adapters.reslora import TARGETS, TYPES, WINDOW, fold, frozen_weights
from lor2c_probe.config import AdapterConfig
from lor2c_probe.models import find_layers, load_model
from lor2c_probe.record.naming import classify

TOL = dict(rtol=1e-5, atol=1e-6)


def setup(model_dir, variant, pre_num, rank=2):
    torch.manual_seed(0)
    model, tok, bb = load_model(str(model_dir), num_labels=2, problem_type="single_label_classification")
    cfg = AdapterConfig(method=f"reslora-{variant}", rank=rank, alpha=4.0, dropout=0.0, pre_num=pre_num)
    model = get_method(cfg.method).attach(model, bb, cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.startswith("reslora."):
                p.normal_(0, 0.3)
    enc = tok(["the movie was great fun", "dull and slow"], return_tensors="pt", padding=True)
    return model, enc, cfg


def record_projections(model):
    """{(t, l): (x_l, y_l)} from hooks that run after the bank's (registration order)."""
    _, layers = find_layers(model)
    seen, handles = {}, []
    for l, layer in enumerate(layers):
        for t in TYPES:
            lin = layer.get_submodule(TARGETS[model.config.model_type][t])
            handles.append(lin.register_forward_hook(lambda m, a, y, key=(t, l): seen.__setitem__(key, (a[0], y))))
    return seen, handles


def expected_term(bank, variant, t, l, xs, p):
    ad, s = bank.adapters[t], bank.scaling
    ks = range(max(0, l - p), l)
    x = xs[(t, l)]
    if variant == "is":
        prev = xs[(t, l - 1)] if l > 0 else x
        return s * (x + prev) @ ad[l].A.T @ ad[l].B.T
    if variant == "bs":
        return s * sum((x @ ad[k].A.T @ ad[k].B.T for k in [*ks, l]), torch.zeros_like(x))
    mid = x @ ad[l].A.T + sum((xs[(t, k)] @ ad[k].A.T for k in ks), torch.zeros_like(x @ ad[l].A.T))
    return s * mid @ ad[l].B.T


@pytest.mark.parametrize("variant", ["is", "bs", "ms"])
@pytest.mark.parametrize("pre_num", [1, 2, 9, -1])  # 9 and -1 exceed the 3-layer depth: every earlier layer
def test_forward_matches_the_formula(tiny_model_dir, variant, pre_num):
    model, enc, _ = setup(tiny_model_dir, variant, pre_num)
    seen, handles = record_projections(model)
    with torch.no_grad():
        model(**enc)
    for h in handles:
        h.remove()
    bank, n = model.reslora, bank_layers(model)
    p = n if pre_num == -1 else pre_num
    xs = {k: v[0] for k, v in seen.items()}
    _, layers = find_layers(model)
    for l in range(n):  # layer 0 included: is sees 2 x_0, bs and ms only their own adapter
        for t in TYPES:
            lin = layers[l].get_submodule(TARGETS[model.config.model_type][t])
            want = F.linear(xs[(t, l)], lin.weight, lin.bias) + expected_term(bank, variant, t, l, xs, p)
            torch.testing.assert_close(seen[(t, l)][1], want, **TOL)


def bank_layers(model):
    return model.reslora.num_layers


@pytest.mark.parametrize("variant", ["is", "bs", "ms"])
def test_top_adapter_term_depends_on_earlier_adapters_through_the_shortcut(tiny_models, variant):
    """The top layer's term, given a detached input, still reaches earlier adapters (live tensors of the forward)."""
    model, enc, _ = setup(tiny_models["bert"], variant, pre_num=-1)
    model(**enc)
    bank = model.reslora
    top = bank.num_layers - 1
    x = torch.randn_like(bank._ctx["q"][top][0]).detach()  # a leaf that depends on nothing, shaped like x_top
    bank.delta("q", top, x).sum().backward()
    # bs reuses B_{l-1} A_{l-1}; ms reuses A_{l-1} D(x_{l-1}); is reuses x_{l-1}, which adapter l-2 helped compute
    earlier = bank.adapters["q"][top - 2 if variant == "is" else top - 1]
    grad = earlier.B.grad if variant == "bs" else earlier.A.grad
    assert grad is not None and grad.abs().sum() > 0


def test_plain_lora_top_term_does_not_reach_earlier_adapters(tiny_models):
    torch.manual_seed(0)
    model, tok, bb = load_model(str(tiny_models["bert"]), num_labels=2, problem_type="single_label_classification")
    model = get_method("lora").attach(model, bb, AdapterConfig(method="lora", rank=2, alpha=4.0, dropout=0.0))
    model(**tok(["the movie was great fun"], return_tensors="pt"))
    layers = [m for n, m in model.named_modules() if n.endswith("attention.self.query")]
    top, first = layers[-1], layers[0]
    x = torch.randn(1, 3, top.in_features)
    top.lora_B["default"](top.lora_A["default"](x)).sum().backward()
    assert first.lora_A["default"].weight.grad is None


def test_block_shortcut_fold_is_exact(tiny_model_dir):
    model, enc, _ = setup(tiny_model_dir, "bs", pre_num=2)
    with torch.no_grad():
        want = model(**enc).logits
        model.reslora.use(fold(model.reslora, "exact"))
        got = model(**enc).logits
        model.reslora.use(None)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert fold(model.reslora, "exact").factors[("q", 2)][1].shape[0] == 3 * 2  # own + 2 earlier, rank 2 each


def _constructed_stats(bank):
    """Known window means: n_bar[t, l] = 1 + l + 10 t, m_bar[t, l] = 2 + 3 l (a partial window of 4 forwards)."""
    bank.norm_x.zero_()
    bank.norm_mid.zero_()
    for ti in range(len(TYPES)):
        for l in range(bank.num_layers):
            bank.norm_x[ti, l, :4] = 1 + l + 10 * ti
            bank.norm_mid[ti, l, :4] = 2 + 3 * l
            bank._count[ti][l] = 4
    return lambda ti, l: 1 + l + 10 * ti, lambda ti, l: 2 + 3 * l


def test_approximate_folds_follow_their_formulas(tiny_models):
    for variant in ("is", "ms"):
        model, _, _ = setup(tiny_models["bert"], variant, pre_num=2)
        bank, s = model.reslora, model.reslora.scaling
        n_bar, m_bar = _constructed_stats(bank)
        for ti, t in enumerate(TYPES):
            ad = bank.adapters[t]
            for l in range(bank.num_layers):
                ks = range(max(0, l - 2), l)
                if variant == "is":
                    B, A = fold(bank, "input-norm").factors[(t, l)]
                    alpha = n_bar(ti, l - 1) / n_bar(ti, l) if l > 0 else 1.0
                    torch.testing.assert_close(B @ A, (1 + alpha) * s * ad[l].B @ ad[l].A, **TOL)
                else:
                    B, A = fold(bank, "input-norm").factors[(t, l)]
                    A_want = ad[l].A + sum((n_bar(ti, k) / n_bar(ti, l) * ad[k].A for k in ks), torch.zeros_like(ad[l].A))
                    torch.testing.assert_close(B @ A, s * ad[l].B @ A_want, **TOL)
                    B, A = fold(bank, "activation-norm").factors[(t, l)]
                    alpha = sum(m_bar(ti, k) / m_bar(ti, l) for k in ks)
                    torch.testing.assert_close(B @ A, (1 + alpha) * s * ad[l].B @ ad[l].A, **TOL)
    model, _, _ = setup(tiny_models["bert"], "is", pre_num=1)
    bank, s = model.reslora, model.reslora.scaling
    W = frozen_weights(model, bank)
    with torch.no_grad():
        f = [float(torch.linalg.matrix_norm(W[("v", l)] + s * bank.adapters["v"][l].B @ bank.adapters["v"][l].A)) for l in range(3)]
    B, A = fold(bank, "weight-norm", W).factors[("v", 2)]
    torch.testing.assert_close(B @ A, (1 + f[0] / f[1]) * s * bank.adapters["v"][2].B @ bank.adapters["v"][2].A, **TOL)
    B, A = fold(bank, "weight-norm", W).factors[("v", 1)]  # l < 2: alpha = 1
    torch.testing.assert_close(B @ A, 2 * s * bank.adapters["v"][1].B @ bank.adapters["v"][1].A, **TOL)


def test_norm_statistics_are_window_means_of_training_forwards(tiny_models):
    model, enc, _ = setup(tiny_models["bert"], "ms", pre_num=1)
    bank = model.reslora
    model.train()
    seen, handles = record_projections(model)
    norms = []
    for _ in range(3):
        model(**enc)
        norms.append(torch.linalg.vector_norm(seen[("q", 1)][0]))
    for h in handles:
        h.remove()
    n_bar, _ = bank.mean_norms()
    torch.testing.assert_close(n_bar[0, 1], torch.stack(norms).mean(), **TOL)
    model.eval()
    model(**enc)  # eval forwards are not recorded
    assert bank._count[0][1] == 3 and WINDOW == 100


def test_bad_fold_and_naming():
    with pytest.raises(ValueError, match="reslora-bs folds with exact"):
        from lor2c_probe.adapters.reslora import ResLoraBank

        bank = ResLoraBank("bs", 2, {"q": (4, 4), "v": (4, 4)}, rank=2, scaling=1.0, dropout=0.0, pre_num=1)
        fold(bank, "input-norm")
    v, q = classify("reslora.adapters.v.3.B"), classify("reslora.adapters.q.3.B")
    assert (v.module, v.layer, v.factor) == (q.module, q.layer, q.factor) and (q.proj, v.proj) == ("q", "v")  # one module per layer
    r = classify("reslora.adapters.q.3.A")
    assert (r.module, r.layer, r.factor) == ("reslora.3", 3, "A")
    with pytest.raises(ValueError, match="pre_num must be a positive integer or -1"):
        AdapterConfig(method="reslora-ms", pre_num=0)


@pytest.mark.parametrize("variant", ["is", "bs", "ms"])
def test_training_and_folding_leave_frozen_weights_bit_identical(tiny_models, tiny_data, tmp_path, variant):
    from lor2c_probe.options import config_from_options
    from lor2c_probe.record.store import read_table
    from lor2c_probe.train import session

    cfg, _ = config_from_options(dict(model=str(tiny_models["bert"]), task="custom", train_file=str(tiny_data["train"]),
                                      eval_file=str(tiny_data["eval"]), epochs=1, steps_per_epoch=4, batch_size=8, rank=2,
                                      device="cpu", method=f"reslora-{variant}", pre_num=2, probes="grads,activations"))
    built = session.build_model(cfg, session.load_task(cfg.data)[2])
    before = {n: p.detach().clone() for n, p in built.model.named_parameters() if not p.requires_grad}
    original = session.build_model
    session.build_model = lambda *a, **k: built  # train this very model object
    try:
        manifest = session.run_training(cfg, tmp_path / "r", progress=False)
    finally:
        session.build_model = original
    after = dict(built.model.named_parameters())
    assert before and all(torch.equal(before[n], after[n]) for n in before)  # training and every fold
    folded = manifest["results"]["folded_eval"]
    from lor2c_probe.adapters.reslora import ESTIMATORS

    assert set(folded) == set(ESTIMATORS[variant])
    metrics = read_table(tmp_path / "r", "metrics")
    assert {f"eval_folded:{e}" for e in ESTIMATORS[variant]} <= set(metrics.split)
    if variant == "bs":  # the exact fold reproduces the training-time eval
        assert folded["exact"]["accuracy"] == manifest["results"]["final_eval"]["accuracy"]
        assert abs(folded["exact"]["loss"] - manifest["results"]["final_eval"]["loss"]) < 1e-5
    grads = read_table(tmp_path / "r", "grads")
    assert set(grads[grads.module.str.startswith("reslora.")].layer) == {0, 1, 2}
