"""Activation gradients against ``torch.autograd.grad`` of the loss w.r.t. each block's input (rtol 1e-5)."""

from __future__ import annotations

import pytest
import torch

from lor2c_probe.adapters import get_method
from lor2c_probe.config import AdapterConfig
from lor2c_probe.models import find_layers, load_model
from lor2c_probe.probes.activations import ActivationGradProbe
from lor2c_probe.train.hooks import TrainState


def _model(model_dir, method):
    torch.manual_seed(0)
    model, tok, bb = load_model(str(model_dir), num_labels=2, problem_type="single_label_classification")
    model = get_method(method).attach(model, bb, AdapterConfig(method=method, rank=2, dropout=0.0))
    for m in model.modules():  # deterministic forward, so the reference pass sees the same function
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.normal_(0, 0.2)
    return model.train(), tok, bb


def _reference(model, batches):
    """Per layer: (sum g^2, sum |g| on non-pad tokens, non-pad elements), summed over micro-batches."""
    _, blocks = find_layers(model.base_model.model if hasattr(model, "peft_config") else model)
    L = len(blocks)
    acc = torch.zeros(L + 1, 3, dtype=torch.float64)
    for batch in batches:
        inputs: list[torch.Tensor] = []

        def grab(m, a, k):
            h = a[0] if a else k["hidden_states"]
            if not h.requires_grad:  # frozen embeddings: make h_0 differentiable, as the probe does
                h = h.detach().requires_grad_(True)
                inputs.append(h)
                return ((h, *a[1:]), k) if a else (a, {**k, "hidden_states": h})
            inputs.append(h)
            return None

        handles = [b.register_forward_pre_hook(grab, with_kwargs=True) for b in blocks]
        handles.append(blocks[-1].register_forward_hook(lambda m, a, o: inputs.append(o[0] if isinstance(o, tuple) else o)))
        loss = model(**batch).loss / len(batches)
        grads = torch.autograd.grad(loss, inputs)
        for h in handles:
            h.remove()
        mask = batch["attention_mask"].double()
        for i, g in enumerate(grads):
            g = g.double()
            acc[i] += torch.stack([g.pow(2).sum(), (g.abs().sum(-1) * mask).sum(), mask.sum() * g.shape[-1]])
    return acc


@pytest.mark.parametrize("method", ["lor2c", "lora", "full-rank-residual"])
def test_activation_grads_equal_autograd(tiny_model_dir, method):
    model, tok, bb = _model(tiny_model_dir, method)
    texts = [["the movie was great fun", "dull"], ["a slow plot and bad acting really", "it was fun"]]
    batches = [dict(tok(t, padding=True, return_tensors="pt"), labels=torch.tensor([1, 0])) for t in texts]
    assert any(bool((b["attention_mask"] == 0).any()) for b in batches)  # padding is exercised
    rows: list = []
    state = TrainState(model, None, None, lambda t, r: rows.extend(r), torch.device("cpu"), "x")
    probe = ActivationGradProbe(bb.layers_path, bottom_every=1)  # measure dL/dh_0 at this step too
    probe.on_train_start(state)
    probe.on_step_begin(state)
    for b in batches:
        (model(**b).loss / len(batches)).backward()
    probe.before_clip(state)
    probe.on_flush(state)
    ref = _reference(model, batches)
    got = {(r["layer"], r["stat"]): r["value"] for r in rows}
    assert len(got) == 2 * (bb.num_layers + 1)
    for layer in range(bb.num_layers + 1):
        sq, ab, n = ref[layer].tolist()
        assert got[(layer, "l2")] == pytest.approx(sq**0.5, rel=1e-5)
        assert got[(layer, "mean_abs")] == pytest.approx(ab / n, rel=1e-5)


def test_probe_is_inactive_outside_scheduled_steps_and_in_eval(tiny_models):
    model, tok, bb = _model(tiny_models["bert"], "lor2c")
    rows: list = []
    state = TrainState(model, None, None, lambda t, r: rows.extend(r), torch.device("cpu"), "x")
    from lor2c_probe.probes.schedule import Every

    probe = ActivationGradProbe(bb.layers_path, schedule=Every(2))
    probe.on_train_start(state)
    probe.on_step_begin(state)  # step 1: not scheduled
    batch = dict(tok(["the movie"], return_tensors="pt"), labels=torch.tensor([1]))
    model(**batch).loss.backward()
    probe.before_clip(state)
    with torch.no_grad():
        model(**batch)
    probe.on_flush(state)
    assert rows == []
    n_hooks = lambda: sum(len(b._forward_pre_hooks) + len(b._forward_hooks) for b in find_layers(model)[1])  # noqa: E731
    with_probe = n_hooks()
    probe.on_train_end(state)
    assert n_hooks() == with_probe - (bb.num_layers + 1)  # the probe's hooks are gone, the adapters' remain


def test_block0_input_is_read_every_nth_step_and_never_recorded_as_zero(tiny_models, tiny_data, tmp_path):
    from dataclasses import replace

    from lor2c_probe.config import ProbeConfig
    from lor2c_probe.record.store import read_table
    from lor2c_probe.train.session import run_training
    from tests.helpers import tiny_config

    cfg = replace(tiny_config(tiny_models["bert"], tiny_data, epochs=1), probes=ProbeConfig(grads=False, bottom_every=4))
    m = run_training(cfg, tmp_path / "r", progress=False)
    ag = read_table(tmp_path / "r", "activation_grads")
    assert sorted(ag[ag.layer == 0].step.unique()) == [4, 8, 12]
    assert sorted(ag[ag.layer == 1].step.unique()) == list(range(1, 13))
    assert (ag[ag.stat == "l2"].value > 0).all()
    entry = next(e for e in m["recording"]["callbacks"] if e["name"] == "activation_gradients")
    assert entry["block0_input_every"].startswith("every 4th")
