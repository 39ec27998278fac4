"""The gradient probe against brute force from ``p.grad`` snapshotted at the same point (rtol 1e-5, float32)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lor2c_probe.record.naming import classify, module_span
from lor2c_probe.record.store import read_table
from lor2c_probe.train.hooks import TrainerCallback
from lor2c_probe.train.session import run_training
from tests.helpers import tiny_config

RTOL = 1e-5


class Snapshot(TrainerCallback):
    """Copies every trainable gradient at before_clip and after clipping (brute-force reference)."""

    def __init__(self) -> None:
        self.pre: dict[int, dict[str, torch.Tensor]] = {}
        self.post: dict[int, dict[str, torch.Tensor]] = {}
        self.micro: list[dict[str, torch.Tensor]] = []

    def _grads(self, s):
        return {n: p.grad.detach().clone() for n, p in s.model.named_parameters() if p.grad is not None}

    def after_backward(self, s):
        self.micro.append(self._grads(s))

    def before_clip(self, s):
        self.pre[s.step + 1] = self._grads(s)

    def before_optimizer_step(self, s):
        self.post[s.step + 1] = self._grads(s)


def brute_force(grads: dict[str, torch.Tensor], marker: str) -> pd.DataFrame:
    rows = []
    groups: dict[tuple[str, int, str], list[torch.Tensor]] = {}
    for name, g in grads.items():
        if marker not in name or "classifier" in name.split("."):
            continue
        r = classify(name)
        groups.setdefault((r.module, r.layer, r.factor), []).append(g)
        groups.setdefault((r.module, r.layer, "all"), []).append(g)
    for (module, layer, factor), gs in groups.items():
        flat = torch.cat([g.flatten() for g in gs]).double()
        rows += [
            (module, layer, factor, "mean_abs", float(flat.abs().mean())),
            (module, layer, factor, "l2", float(flat.norm())),
            (module, layer, factor, "max_abs", float(flat.abs().max())),
            (module, layer, factor, "numel", float(flat.numel())),
        ]
    return pd.DataFrame(rows, columns=["module", "layer", "factor", "stat", "value"])


def _compare(run, snap: Snapshot, marker: str, max_norm: float | None):
    grads = read_table(run, "grads")
    assert not grads.empty
    for step, pre in snap.pre.items():
        got = grads[(grads.step == step) & (grads.module != "global") & (grads.stat != "scaling")]
        want = brute_force(pre, marker)
        merged = want.merge(got, on=["module", "layer", "factor", "stat"], suffixes=("_want", "_got"), how="outer")
        assert not merged.isna().any().any(), merged[merged.isna().any(axis=1)]
        np.testing.assert_allclose(merged.value_got, merged.value_want, rtol=RTOL, atol=1e-12)
        total = float(torch.sqrt(sum((g.double() ** 2).sum() for g in pre.values())))
        glob = grads[(grads.step == step) & (grads.module == "global")].set_index("stat")["value"]
        assert glob["l2"] == pytest.approx(total, rel=RTOL)
        coef = 1.0 if max_norm is None else min(1.0, max_norm / (total + 1e-6))
        assert glob["clip_coef"] == pytest.approx(coef, rel=RTOL)


@pytest.mark.parametrize("method,marker", [("lor2c", "lor2c."), ("lora", "lora_"), ("share-lor2c", "lor2c."), ("full-rank-residual", "lor2c.")])
def test_stats_equal_brute_force_with_clipping_active(tiny_models, tiny_data, tmp_path, method, marker):
    snap = Snapshot()
    cfg = tiny_config(tiny_models["bert"], tiny_data, method=method, epochs=1, max_grad_norm=1e-3)
    run_training(cfg, tmp_path / "r", progress=False, callbacks=[snap])
    _compare(tmp_path / "r", snap, marker, 1e-3)
    # Clipping really was active, and the recorded values are the pre-clip ones.
    step = max(snap.pre)
    pre = torch.sqrt(sum((g**2).sum() for g in snap.pre[step].values()))
    post = torch.sqrt(sum((g**2).sum() for g in snap.post[step].values()))
    assert float(post) == pytest.approx(1e-3, rel=1e-3) and float(pre) > 10 * float(post)


def test_stats_equal_brute_force_with_accumulation(tiny_models, tiny_data, tmp_path):
    snap = Snapshot()
    cfg = tiny_config(tiny_models["roberta"], tiny_data, epochs=1, grad_accum=3, max_grad_norm=None)
    run_training(cfg, tmp_path / "r", progress=False, callbacks=[snap])
    _compare(tmp_path / "r", snap, "lor2c.", None)
    # What is recorded is the accumulated gradient, not the last micro-batch's.
    first_micro = snap.micro[0]["lor2c.paths.0.B"]
    assert not torch.allclose(snap.pre[1]["lor2c.paths.0.B"], first_micro)


def test_every_n_schedule_and_manifest(tiny_models, tiny_data, tmp_path):
    from lor2c_probe.config import ProbeConfig
    from dataclasses import replace

    cfg = replace(tiny_config(tiny_models["bert"], tiny_data, epochs=1), probes=ProbeConfig(every=5))
    m = run_training(cfg, tmp_path / "r", progress=False)
    assert sorted(read_table(tmp_path / "r", "grads")["step"].unique()) == [5, 10]
    assert sorted(read_table(tmp_path / "r", "activation_grads")["step"].unique()) == [5, 10]
    entries = {e["name"]: e for e in m["recording"]["callbacks"]}
    assert entries["gradients"]["schedule"] == {"kind": "every", "n": 5}
    assert entries["activation_gradients"]["schedule"] == {"kind": "every", "n": 5}


def test_fp16_grad_scaler_values_are_unscaled(tiny_models, tiny_data, tmp_path):
    """CPU fp16 autocast + GradScaler (the loop supports it; the CLI allows fp16 only on CUDA)."""
    from lor2c_probe.data.load import load_task
    from lor2c_probe.probes.gradients import GradientProbe
    from lor2c_probe.record.store import RunStore
    from lor2c_probe.train.batches import encode
    from lor2c_probe.train.loop import Trainer
    from lor2c_probe.train.build import build_model

    cfg = tiny_config(tiny_models["bert"], tiny_data, epochs=1, max_grad_norm=None, steps_per_epoch=3)
    tr, ev, spec, _ = load_task(cfg.data)
    built = build_model(cfg, spec)
    snap, probe = Snapshot(), GradientProbe(("lor2c.",), scaling=2.0)
    trainer = Trainer(
        model=built.model, cfg=cfg.train, spec=spec, train=encode(built.tokenizer, tr, 32, False),
        eval=encode(built.tokenizer, ev, 32, False), store=RunStore(tmp_path), device=torch.device("cpu"),
        precision="fp16", param_marker="lor2c.", callbacks=[probe, snap], progress=False,
    )
    trainer.fit()
    scale = trainer.scaler.get_scale()
    assert scale > 1000  # gradients in backward were scaled by this
    _compare(tmp_path, snap, "lor2c.", None)
    scaled = snap.micro[0]["lor2c.paths.0.B"].abs().mean()
    recorded = read_table(tmp_path, "grads").query("step == 1 and module == 'lor2c.0' and factor == 'B' and stat == 'mean_abs'")
    assert float(recorded.value.iloc[0]) == pytest.approx(float(scaled) / 65536.0, rel=1e-3)  # first step's scale


def test_naming_contract():
    assert classify("lor2c.paths.3.A") == classify("model.lor2c.paths.3.A")
    assert classify("lor2c.paths.3-5.B").module == "lor2c.3-5" and classify("lor2c.paths.3-5.B").layer == 3
    assert classify("lor2c.shared_A").module == "lor2c.shared"
    r = classify("base_model.model.roberta.encoder.layer.11.attention.self.value.lora_B.default.weight")
    assert (r.module, r.layer, r.factor) == ("lora.11", 11, "B")
    assert module_span("lor2c.3-5") == (3, 5) and module_span("lora.7") == (7, 7) and module_span("lor2c.shared") is None
