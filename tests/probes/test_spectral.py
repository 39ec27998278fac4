"""The spectral probe against dense SVDs (float32 inputs; tolerance 1e-4 relative to sigma_max)."""

from __future__ import annotations

import pytest
import torch

from lor2c_probe.adapters import get_method
from lor2c_probe.config import AdapterConfig
from lor2c_probe.data.examples import Examples
from lor2c_probe.models import load_model
from lor2c_probe.probes.spectral import SpectralProbe, discover
from lor2c_probe.train.batches import encode
from lor2c_probe.train.hooks import TrainState

TOL = 1e-4


def _setup(model_dir, method, rank=3):
    torch.manual_seed(0)
    model, tok, bb = load_model(str(model_dir), num_labels=2, problem_type="single_label_classification")
    cfg = AdapterConfig(method=method, rank=rank, alpha=6.0, dropout=0.3)  # dropout must be off while probing
    model = get_method(method).attach(model, bb, cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad and "classifier" not in n:
                p.normal_(0, 0.3)
    ex = Examples(["the movie was great fun", "dull", "a slow plot and bad acting really"], None, [1, 0, 0])
    return model.train(), bb, cfg, encode(tok, ex, 32, False)


def _run(model, bb, cfg, data):
    rows = {"spectra": [], "sfs": []}
    state = TrainState(model, None, None, lambda t, r: rows[t].extend(r), torch.device("cpu"), "x", step=5, epoch=1)
    probe = SpectralProbe(scaling=cfg.scaling, layers_path=bb.layers_path, probe_data=data, ks=(1, 2, 4, cfg.rank), chunk_size=2)
    probe.record(state)
    assert model.training  # restored after the eval-mode pass
    return rows


def _sigmas(rows, source):
    out: dict[str, list[float]] = {}
    for r in sorted(rows["spectra"], key=lambda r: r["index"]):
        if r["source"] == source:
            out.setdefault(r["module"], []).append(r["sigma"])
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}


def _close(got, want):
    """Equal on the common prefix; values beyond it (rank-limited zeros on either side) are ~0."""
    n = min(len(got), len(want))
    bound = TOL * float(want[0]) + 1e-12
    assert torch.all(want[n:] <= bound) and torch.all(got[n:] <= bound)
    torch.testing.assert_close(got[:n], want[:n], rtol=TOL, atol=bound)


@pytest.mark.parametrize("method", ["lor2c", "share-lor2c", "full-rank-residual", "lora", "reslora-ms", "reslora-is"])
def test_weight_spectra_equal_dense_svd(tiny_models, method):
    model, bb, cfg, data = _setup(tiny_models["bert"], method)
    got = _sigmas(_run(model, bb, cfg, data), "weights")
    mods = {m.module: m for m in discover(model)}
    qv = lambda kind: {f"{kind}.{i}.{p}" for i in range(3) for p in "qv"}  # noqa: E731
    expected_keys = {"lora": qv("lora"), "reslora-ms": qv("reslora"), "reslora-is": qv("reslora")}.get(method, {f"lor2c.{i}" for i in range(3)})
    assert set(got) == expected_keys
    for key, m in mods.items():
        dense = (m.W if m.W is not None else _BA(m)).detach()
        _close(got[key], torch.linalg.svdvals(cfg.scaling * dense.double()))


@pytest.mark.parametrize("method", ["lor2c", "full-rank-residual", "lora", "reslora-ms"])
def test_feature_spectra_equal_svd_of_the_materialised_output(tiny_model_dir, method):
    model, bb, cfg, data = _setup(tiny_model_dir, method)
    got = _sigmas(_run(model, bb, cfg, data), "features")
    # Reference: materialise every module's output on the non-pad tokens, in eval mode, and SVD it.
    model.eval()
    mods = discover(model)
    captured: dict[str, list[torch.Tensor]] = {m.module: [] for m in mods}
    from lor2c_probe.probes.activations import find_block_stack

    blocks = find_block_stack(model, bb.layers_path)
    batch = {k: torch.tensor([r + [data.pad_id if k == "input_ids" else 0] * (max(map(len, rows)) - len(r)) for r in rows])
             for k, rows in data.features.items()}
    mask = batch["attention_mask"].bool()
    hs = []
    for m in mods:
        target = blocks[m.block] if m.block is not None else model.get_submodule(m.path)
        hs.append(target.register_forward_pre_hook(lambda mod, a, k, key=m.module: captured[key].append(a[0] if a else k["hidden_states"]), with_kwargs=True))
    with torch.no_grad():
        model(**batch)
    for h in hs:
        h.remove()
    assert bool((~mask).any())  # padding present and excluded
    for m in mods:
        X = captured[m.module][0][mask].double()
        Y = cfg.scaling * (X @ (m.W.double().T if m.W is not None else _BA(m).double().T))
        _close(got[m.module], torch.linalg.svdvals(Y.detach()))


def test_sfs_rows_and_zero_B(tiny_models):
    model, bb, cfg, data = _setup(tiny_models["bert"], "lor2c")
    with torch.no_grad():
        model.lor2c.paths["1"].B.zero_()
    rows = _run(model, bb, cfg, data)
    sfs = {(r["module"], r["source"], r["k"]): r["value"] for r in rows["sfs"]}
    assert {k for (_, _, k) in sfs} == {1, 2, 3, 4}
    assert sfs[("lor2c.1", "weights", 2)] == 0.0 and sfs[("lor2c.1", "features", 1)] == 0.0  # zero map: defined, 0
    assert all(r["sigma"] == 0.0 for r in rows["spectra"] if r["module"] == "lor2c.1")
    assert sfs[("lor2c.0", "weights", 3)] == 0.0  # k >= rank: nothing in the tail
    assert 0 < sfs[("lor2c.0", "weights", 1)] < 1


def test_recorded_in_a_run_at_epoch_ends(tiny_models, tiny_data, tmp_path):
    from lor2c_probe.record.store import read_table
    from lor2c_probe.train.session import run_training
    from tests.helpers import tiny_config

    m = run_training(tiny_config(tiny_models["bert"], tiny_data, epochs=2), tmp_path / "r", progress=False)
    sp = read_table(tmp_path / "r", "spectra")
    assert sorted(sp.step.unique()) == [12, 24] and set(sp.source) == {"weights", "features"}
    assert set(read_table(tmp_path / "r", "sfs").k) == {1, 2, 4}
    entry = next(e for e in m["recording"]["callbacks"] if e["name"] == "spectra")
    assert entry["probe_batch"]["examples"] == 64 and entry["sfs_k"] == [1, 2, 4]
    idx = entry["probe_batch"]["train_indices"]
    assert len(idx) == 64 and idx == sorted(set(idx)) and max(idx) < 96  # seeded sample of the 96 training examples


def test_step_interval_and_epoch_end_on_the_same_step_record_once(tiny_models, tiny_data, tmp_path):
    from dataclasses import replace

    from lor2c_probe.config import ProbeConfig
    from lor2c_probe.record.store import read_table
    from lor2c_probe.train.session import run_training
    from tests.helpers import tiny_config

    cfg = replace(tiny_config(tiny_models["bert"], tiny_data, epochs=1), probes=ProbeConfig(grads=False, activations=False, spectra_every=6))
    run_training(cfg, tmp_path / "r", progress=False)
    sfs = read_table(tmp_path / "r", "sfs")
    assert sorted(sfs.step.unique()) == [6, 12] and not sfs.duplicated(["step", "module", "source", "k"]).any()


def _BA(m):
    """B @ A of a module by hand: LoR2C's factors, or a PEFT LoRA layer's own weights."""
    if m.tuner is None:
        return m.B @ m.A
    return m.tuner.lora_B[m.adapter].weight @ m.tuner.lora_A[m.adapter].weight
