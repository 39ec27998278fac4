"""Attach lor2c-probe's probes to your own Hugging Face ``Trainer`` run.

    trainer = Trainer(..., callbacks=[ProbeCallback("runs/my-run", method="lor2c")])

Writes the same run store (``grads``, ``activation_grads``, and the Trainer's logged scalars into
``metrics``) that ``lor2c-probe train`` writes, so ``lor2c-probe gradients --from-runs`` reads it.

Gradients are read before the Trainer clips them: ``on_pre_optimizer_step`` already sees clipped
gradients, so the callback snapshots each parameter's gradient statistics in a post-accumulate-grad
tensor hook (the last snapshot of a step is the accumulated, pre-clip gradient) and divides by the
fp16 GradScaler's scale when the optimizer carries one.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from transformers import TrainerCallback

from lor2c_probe.probes.activations import ActivationGradProbe
from lor2c_probe.probes.gradients import GradientProbe, select_parameters
from lor2c_probe.probes.schedule import Every
from lor2c_probe.record.schema import SCHEMA_VERSION
from lor2c_probe.record.store import RunStore


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.base_model.model if hasattr(model, "peft_config") else model


def _all_markers() -> tuple[str, ...]:
    """Every registered method's adapter-name markers (LoR2C, ResLoRA and PEFT's tuners)."""
    from lor2c_probe.adapters import METHODS

    return tuple(dict.fromkeys(m for spec in METHODS.values() for m in spec.markers if m))


class ProbeCallback(TrainerCallback):
    """Gradient + activation-gradient probes for ``transformers.Trainer``, recorded into ``out_dir``."""

    def __init__(
        self,
        out_dir: str | Path,
        *,
        method: str = "custom",
        markers: tuple[str, ...] | None = None,
        scaling: float = 1.0,
        layers_path: str | None = None,
        every: int = 1,
        activations: bool = True,
        bottom_every: int = 10,
        flush_every: int = 50,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.method, self.every, self.flush_every = method, every, flush_every
        self.markers = tuple(markers) if markers is not None else _all_markers()
        self.layers_path = layers_path  # None: found generically (blocks.find_blocks)
        self.grad_probe = GradientProbe(self.markers, scaling=scaling, schedule=Every(every))
        self.act_probe: ActivationGradProbe | None = None
        self.want_activations, self.bottom_every = activations, bottom_every
        self._handles: list[Any] = []
        self._epoch = -1

    # -- setup -------------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from lor2c_probe.models import find_layers

        from lor2c_probe.notices import notice
        from lor2c_probe.record.lock import DirLock

        if self.out_dir.exists() and any(e.name != ".lock" for e in self.out_dir.iterdir()):
            raise ValueError(f"ProbeCallback: {self.out_dir} is not empty; give each run its own directory")
        self._lock = DirLock(self.out_dir, "run directory", notice).acquire()  # one writer per run directory
        self.store = RunStore(self.out_dir)
        layers_path, blocks = find_layers(_unwrap(model), self.layers_path)
        self.grad_probe.layers_path = layers_path  # tensors placed by PEFT's tuner layers in these blocks
        self.grad_probe.bind(model)
        selected = {id(p) for _, p in select_parameters(model, self.markers)}
        trainable = [p for p in model.parameters() if p.requires_grad]
        self._order = {id(p): i for i, p in enumerate(p for p in trainable if id(p) in selected)}
        self._snap = torch.zeros(3, len(trainable), device=trainable[0].device)  # L1, L2, max |g| per tensor
        self._sel_idx = torch.tensor([i for i, p in enumerate(trainable) if id(p) in selected], device=trainable[0].device)
        for i, p in enumerate(trainable):
            self._handles.append(p.register_post_accumulate_grad_hook(self._snapshot_hook(i)))
        if self.want_activations:
            self.act_probe = ActivationGradProbe(layers_path, schedule=Every(self.every), bottom_every=self.bottom_every)
            self.act_probe.attach(model)
        self.max_grad_norm = args.max_grad_norm if args.max_grad_norm and args.max_grad_norm > 0 else None
        self.store.write_manifest(self._manifest(model, len(blocks)))

    def _snapshot_hook(self, i: int):
        def hook(p: torch.Tensor) -> None:  # fires after each backward's accumulation into p.grad
            g = p.grad.detach()
            self._snap[:, i] = torch.stack([g.abs().sum(), torch.linalg.vector_norm(g), g.abs().max()]).float()

        return hook

    def _manifest(self, model: torch.nn.Module, num_layers: int) -> dict[str, Any]:
        from lor2c_probe.record.outputs import signature

        return {
            **signature(),
            "schema_version": SCHEMA_VERSION,
            "status": "running",
            "source": "transformers.Trainer + lor2c_probe.probes.hf.ProbeCallback",
            "method": {"name": self.method, "param_marker": ",".join(self.markers)},
            "model": {"model_type": getattr(model.config, "model_type", None), "num_layers": num_layers},
            "recording": {"flush_every": self.flush_every, "callbacks": [e for e in (self.grad_probe.manifest_entry(), self.act_probe and self.act_probe.manifest_entry()) if e]},
        }

    def _shim(self, state, model=None) -> SimpleNamespace:
        return SimpleNamespace(step=state.global_step, epoch=self._epoch, model=model, record=self.store.append,
                               grad_norm=None, max_grad_norm=self.max_grad_norm)

    # -- the step ----------------------------------------------------------------------------------------
    def on_epoch_begin(self, args, state, control, **kwargs):
        self._epoch += 1

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if self.act_probe is not None:
            self.act_probe.on_step_begin(self._shim(state, model))

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        step = state.global_step + 1
        shim = self._shim(state, model)
        if self.act_probe is not None:
            self.act_probe.before_clip(shim)  # activation gradients are untouched by clipping
        if not self.grad_probe.schedule(step):
            return
        snap = self._snap.clone()
        scaler = getattr(optimizer, "scaler", None)
        if scaler is not None and scaler.is_enabled():
            snap = snap / scaler.get_scale()  # the hooks saw scaled gradients
        norm = torch.linalg.vector_norm(snap[1])
        coef = torch.clamp(self.max_grad_norm / (norm + 1e-6), max=1.0) if self.max_grad_norm else torch.ones_like(norm)
        self.grad_probe._pending.append((step, self._epoch, snap.index_select(1, self._sel_idx)))
        self.grad_probe._global.append((step, self._epoch, torch.stack([norm, coef])))

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.flush_every == 0:
            self._flush(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        rows = []
        for k, v in (logs or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                split, name = ("eval", k[5:]) if k.startswith("eval_") else ("train", k)
                rows.append({"step": state.global_step, "epoch": max(self._epoch, 0), "split": split, "name": name, "value": float(v)})
        self.store.append("metrics", rows)

    def on_train_end(self, args, state, control, **kwargs):
        self._flush(state)
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if self.act_probe is not None:
            self.act_probe.detach()
        from lor2c_probe.record.store import read_manifest

        manifest = read_manifest(self.out_dir)
        manifest["status"] = "completed"
        self.store.write_manifest(manifest)
        self._lock.release()

    def _flush(self, state) -> None:
        shim = self._shim(state)
        self.grad_probe.on_flush(shim)
        if self.act_probe is not None:
            self.act_probe.on_flush(shim)
        self.store.flush()
