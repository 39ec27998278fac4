"""Per-module gradient statistics of the adapter parameters.

Read at ``before_clip``: after gradient accumulation, after AMP unscaling, before clipping. For each
module and factor (A, B, W and ``all`` = every tensor of the module, element-weighted) it records
``mean_abs`` (sum |g| / elements), ``l2`` and ``max_abs``, plus ``numel`` and the module's
``scaling`` s so analyses can normalise; and per step the global pre-clip norm (``global``/``l2``) and
the clip coefficient (``global``/``clip_coef``, 1 when no clipping happened).

Cost: three foreach norms over the selected gradients, kept on the device as one (3, n_tensors)
tensor per step; one transfer to the host per flush.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from lor2c_probe.record.naming import ParamRole, classify, is_head
from lor2c_probe.probes.schedule import Every
from lor2c_probe.train.hooks import TrainerCallback, TrainState, param_grad_scale

STATS = ("mean_abs", "l2", "max_abs")


def select_parameters(model: torch.nn.Module, markers: tuple[str, ...]) -> list[tuple[str, torch.nn.Parameter]]:
    """Trainable parameters whose name contains one of ``markers`` (head excluded)."""
    out = []
    for name, p in model.named_parameters():
        if p.requires_grad and any(m in name for m in markers) and not is_head(name):
            out.append((name, p))
    return out


class ModuleIndex:
    """Groups selected tensors by (module, factor); aggregates per-tensor stats into module rows."""

    def __init__(self, names: list[str], numels: list[int], roles: list[ParamRole] | None = None) -> None:
        self.roles = roles if roles is not None else [classify(n) for n in names]
        self.numel = np.asarray(numels, dtype=np.float64)
        groups: dict[tuple[str, int, str], list[int]] = defaultdict(list)
        for i, r in enumerate(self.roles):
            groups[(r.module, r.layer, r.factor)].append(i)
            if r.factor != "all":
                groups[(r.module, r.layer, "all")].append(i)
        self.groups = {k: np.asarray(v) for k, v in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2]))}

    def rows(self, step: int, epoch: int, l1: np.ndarray, l2: np.ndarray, linf: np.ndarray, scaling: Callable[[str], float]) -> list[dict[str, Any]]:
        out = []
        for (module, layer, factor), idx in self.groups.items():
            n = float(self.numel[idx].sum())
            values = {
                "mean_abs": float(l1[idx].sum() / n),
                "l2": float(np.sqrt(np.square(l2[idx]).sum())),
                "max_abs": float(linf[idx].max()),
                "numel": n,
            }
            if factor == "all":
                values["scaling"] = scaling(module)
            for stat, value in values.items():
                out.append({"step": step, "epoch": epoch, "module": module, "layer": layer, "factor": factor, "stat": stat, "value": value})
        return out


if TYPE_CHECKING:
    from lor2c_probe.probes import ProbeContext


class GradientProbe(TrainerCallback):
    """Per-module |g| statistics at ``before_clip`` (accumulated, unscaled, not yet clipped)."""

    def __init__(self, markers: tuple[str, ...], *, scaling: Callable[[str], float] | float, schedule: Every = Every(1),
                 layers_path: str | None = None) -> None:
        self.markers = tuple(markers)
        self.layers_path = layers_path  # where the blocks are: PEFT tuner layers are placed by it (None: by names only)
        self.unplaced: dict[str, str] = {}
        self.scaling = scaling if callable(scaling) else (lambda module, s=float(scaling): s)
        self.schedule = schedule
        self._params: list[torch.nn.Parameter] | None = None
        self._version = 0
        self._pending: list[tuple[int, int, torch.Tensor]] = []  # (step, epoch, (3, n_tensors) on device)
        self._global: list[tuple[int, int, torch.Tensor]] = []  # (step, epoch, [pre-clip norm, clip coef])

    def bind(self, model: torch.nn.Module, *, allow_empty: bool = False) -> None:
        """Select the adapter tensors. Empty is an error at the start; after structural changes it can be the
        truth (e.g. every module frozen by --emulate-reference-bugs), and then nothing is recorded."""
        selected = select_parameters(model, self.markers)
        if not selected and not allow_empty:
            raise ValueError(f"gradient probe: no trainable parameter name contains any of {self.markers}")
        self._params = [p for _, p in selected]
        names = [n for n, _ in selected]
        from lor2c_probe.probes.placement import roles_of

        placement = roles_of(model, names, self.layers_path)
        roles = [placement.roles[n] for n in names]
        if placement.unplaced and placement.unplaced != self.unplaced and (line := placement.warning()):
            from lor2c_probe.notices import notice

            notice(f"gradient probe: {line}")
        self.unplaced = dict(placement.unplaced)
        self.index = ModuleIndex(names, [p.numel() for _, p in selected], roles)

    def stats(self) -> torch.Tensor:
        """(3, n_tensors): L1, L2 and max |g| of each selected gradient (0 where a gradient is None)."""
        assert self._params is not None
        zero = None
        grads = []
        for p in self._params:
            if p.grad is None:
                zero = zero if zero is not None else torch.zeros(1, device=p.device)
                grads.append(zero)
            else:
                grads.append(p.grad)
        return torch.stack([torch.stack(torch._foreach_norm(grads, o)).float() for o in (1, 2, float("inf"))])

    def before_clip(self, state: TrainState) -> None:
        version = state.extras.get("structure_version", 0)
        if self._params is None or version != self._version:
            if self._params is not None:
                self.on_flush(state)  # rows of the old structure first: the tensor layout changes
            self.bind(state.model, allow_empty=version > 0)
            self._version = version
        if not self._params:
            return
        step = state.step + 1  # the optimizer step these gradients are for
        if self.schedule(step):
            stats, scale = self.stats(), param_grad_scale(state)
            self._pending.append((step, state.epoch, stats if scale is None else stats / scale))

    def before_optimizer_step(self, state: TrainState) -> None:
        """The global pre-clip norm (computed by the loop's clip) and the clip coefficient it implies."""
        if not self._pending or self._pending[-1][0] != state.step + 1 or state.grad_norm is None:
            return
        norm = state.grad_norm.detach().float().reshape(())
        if state.max_grad_norm is None:
            coef = torch.ones_like(norm)
        else:  # torch.nn.utils.clip_grad_norm_'s own formula
            coef = torch.clamp(state.max_grad_norm / (norm + 1e-6), max=1.0)
        self._global.append((state.step + 1, state.epoch, torch.stack([norm, coef])))

    def on_flush(self, state: TrainState) -> None:
        if not self._pending:
            return
        per_tensor = torch.stack([t for *_, t in self._pending])  # (steps, 3, n)
        glob = torch.stack([t for *_, t in self._global]) if self._global else per_tensor.new_zeros((0, 2))
        host = torch.cat([per_tensor.flatten(), glob.to(per_tensor.device).flatten()]).cpu().numpy()  # one transfer
        split = per_tensor.numel()
        stats, glob_host = host[:split].reshape(per_tensor.shape), host[split:].reshape(-1, 2)
        rows = []
        for (step, epoch, _), h in zip(self._pending, stats):
            rows += self.index.rows(step, epoch, h[0], h[1], h[2], self.scaling)
        for (step, epoch, _), (norm, coef) in zip(self._global, glob_host):
            for stat, value in (("l2", norm), ("clip_coef", coef)):
                rows.append({"step": step, "epoch": epoch, "module": "global", "layer": -1, "factor": "all", "stat": stat, "value": float(value)})
        self._pending.clear()
        self._global.clear()
        state.record("grads", rows)

    def manifest_entry(self) -> dict[str, Any]:
        return {
            "name": "gradients",
            "table": "grads",
            "reads_at": "before_clip (after accumulation and AMP unscaling, before clipping)",
            "select": list(self.markers),
            "schedule": self.schedule.to_dict(),
            "stats": list(STATS) + ["numel", "scaling"],
            "unplaced": dict(self.unplaced),
        }


def build(ctx: ProbeContext) -> GradientProbe:
    """The registry's factory: every adapter module of the run's method, placed by PEFT's tuner layers and the block
    stack; each module's ``scaling`` is its method's (LoRA's alpha/r, r/2 when injected; 1 for VeRA and IA3)."""
    s, s_lora = ctx.scaling, ctx.lora_scaling
    unscaled = ("vera.", "ia3.")

    def scaling(module: str) -> float:
        return s_lora if module.startswith("lora.") else 1.0 if module.startswith(unscaled) else s

    return GradientProbe(ctx.markers, scaling=scaling, schedule=ctx.schedule(), layers_path=ctx.layers_path)
