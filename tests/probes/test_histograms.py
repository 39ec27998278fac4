"""The histograms probe against numpy on p.grad and on the weights, and ||Δθ|| / ||θ|| by hand (exact counts; norms rtol 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lor2c_probe.adapters import METHODS, get_method
from lor2c_probe.config import AdapterConfig
from lor2c_probe.models import backbone_of
from lor2c_probe.analysis.histograms import EDGES, N_BINS, bin_bounds
from lor2c_probe.probes.histograms import HistogramProbe
from lor2c_probe.probes.placement import place
from lor2c_probe.probes.schedule import Every
from lor2c_probe.train.hooks import TrainState
from tests.families import tiny_inputs, tiny_model


def _by_hand(values_by_module):
    """module -> counts over N_BINS: bin b holds EDGES[b-1] <= |x| < EDGES[b]."""
    return {m: np.bincount(np.searchsorted(EDGES, np.abs(np.concatenate(v)), side="right"), minlength=N_BINS)
            for m, v in values_by_module.items()}


@pytest.mark.parametrize("family,method", [("bert", "lora"), ("gpt2", "lor2c"), ("llama", "dora")])
def test_histograms_and_update_ratio_equal_brute_force(family, method):
    model = tiny_model(family)
    bb = backbone_of(model)
    model = get_method(method).attach(model, bb, AdapterConfig(method=method, rank=2, alpha=4.0, dropout=0.0))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.3)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    rows: dict[str, list] = {}
    state = TrainState(model, opt, None, lambda t, r: rows.setdefault(t, []).extend(r), torch.device("cpu"), "x")
    probe = HistogramProbe(METHODS[method].markers, layers_path=bb.layers_path, schedule=Every(1))
    model(**tiny_inputs(model), labels=torch.tensor([0, 1])).loss.backward()
    probe.before_clip(state)
    probe.before_optimizer_step(state)
    named = [(n, p) for n, p in model.named_parameters() if p in set(probe._params)]
    roles = place(model, [n for n, _ in named], bb.layers_path).roles
    grads, before = {}, {}
    for n, p in named:
        grads.setdefault(roles[n].module, []).append(p.grad.detach().numpy().ravel().copy())
        before[n] = p.detach().clone()
    opt.step()
    state.step = 1
    probe.on_step_end(state)
    probe.on_flush(state)

    hist = {(r["module"], r["source"], r["bin"]): r["count"] for r in rows["histograms"]}
    weights = {}
    for n, p in named:
        weights.setdefault(roles[n].module, []).append(p.detach().numpy().ravel().copy())
    for source, values in (("grad", grads), ("weight", weights)):
        for module, counts in _by_hand(values).items():
            got = np.array([hist.get((module, source, b), 0) for b in range(N_BINS)])
            np.testing.assert_array_equal(got, counts, err_msg=f"{source} histogram of {module}")
    lo, hi = bin_bounds()
    assert all(r["lo"] == lo[r["bin"]] and r["hi"] == hi[r["bin"]] for r in rows["histograms"])

    upd = {(r["module"], r["stat"]): r["value"] for r in rows["updates"]}
    for module in grads:
        names = [n for n, _ in named if roles[n].module == module]
        du = np.sqrt(sum(float(((dict(named)[n].detach() - before[n]) ** 2).sum()) for n in names))
        w = np.sqrt(sum(float((dict(named)[n].detach() ** 2).sum()) for n in names))
        assert upd[(module, "update_l2")] == pytest.approx(du, rel=1e-5)
        assert upd[(module, "weight_l2")] == pytest.approx(w, rel=1e-5)
        assert upd[(module, "update_ratio")] == pytest.approx(du / w, rel=1e-5)


def _lora_run():
    """A tiny BERT with LoRA, its SGD, and a TrainState whose recorded rows land in ``rows`` (table -> rows)."""
    model = tiny_model("bert")
    bb = backbone_of(model)
    model = get_method("lora").attach(model, bb, AdapterConfig(method="lora", rank=2, alpha=4.0, dropout=0.0))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    rows: dict[str, list] = {}
    state = TrainState(model, opt, None, lambda t, r: rows.setdefault(t, []).extend(r), torch.device("cpu"), "x")
    return model, bb, opt, rows, state


def test_histograms_only_every_nth_recorded_step_and_zeros_land_in_bin_0():
    model, bb, opt, rows, state = _lora_run()
    probe = HistogramProbe(("lora_",), layers_path=bb.layers_path, schedule=Every(1), hist_every=3)
    for step in range(5):
        state.step = step
        model(**tiny_inputs(model), labels=torch.tensor([0, 1])).loss.backward()
        probe.before_clip(state)
        probe.before_optimizer_step(state)
        opt.step()
        opt.zero_grad()
        state.step = step + 1
        probe.on_step_end(state)
    probe.on_flush(state)
    assert sorted({r["step"] for r in rows["histograms"]}) == [1, 4]  # recorded steps 1..5, histograms on the 1st and 4th
    assert sorted({r["step"] for r in rows["updates"]}) == [1, 2, 3, 4, 5]
    zeros = [torch.zeros_like(p) for p in probe._params]  # e.g. LoRA's B before the first step
    counts = probe._counts(zeros)
    assert (counts[:, 0] > 0).all() and int(counts[:, 1:].sum()) == 0  # every zero lands in bin 0


def test_a_structural_change_flushes_the_old_modules_rows_first():
    """Pending counts are indexed by the modules of the binding they were taken under: a rebind writes them first."""
    model, bb, opt, rows, state = _lora_run()
    probe = HistogramProbe(("lora_",), layers_path=bb.layers_path, schedule=Every(1))
    model(**tiny_inputs(model), labels=torch.tensor([0, 1])).loss.backward()
    probe.before_clip(state)
    probe.before_optimizer_step(state)
    opt.step()
    state.step = 1
    probe.on_step_end(state)
    assert rows == {}
    state.extras["structure_version"] = 1  # e.g. a merge or an injection
    probe.before_clip(state)
    assert {r["step"] for r in rows["updates"]} == {1} and {r["module"] for r in rows["histograms"]} == {f"lora.{i}" for i in range(3)}
