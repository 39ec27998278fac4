"""Histograms of each adapter module's gradients and weights, and its update-to-weight ratio ||Δθ|| / ||θ|| per step.

Bins are fixed and log-spaced in magnitude, the same for every run so histograms compare across runs and steps:
``EDGES`` = 10^-10 ... 10^2, 4 bins per decade (48 bins), plus bin 0 for |x| < 1e-10 (zeros) and bin 49 for
|x| >= 100. Counts are computed on the device (``torch.bucketize`` + ``bincount`` per tensor, summed per module)
and move to the host once per flush; only non-empty bins are written.

When (every ``every``-th optimizer step, and histograms only every ``HIST_EVERY``-th of those):
- gradients at ``before_clip`` (accumulated, AMP-unscaled, before clipping: what the gradient probe reads);
- θ copied at ``before_optimizer_step``; Δθ = θ_after - θ_before and the weight histogram at ``on_step_end``.

Tables: ``histograms`` (step, epoch, module, layer, source grad|weight, bin, lo, hi, count) and ``updates`` (step,
epoch, module, layer, stat update_l2|weight_l2|update_ratio, value). Modules are placed as the gradient probe places
them (PEFT's tuner layers, or ``classify`` for lor2c-probe's own modules).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lor2c_probe.analysis.histograms import DECADES, EDGES, N_BINS, PER_DECADE, bin_bounds
from lor2c_probe.probes.gradients import select_parameters
from lor2c_probe.probes.schedule import Every
from lor2c_probe.train.hooks import TrainerCallback, TrainState, param_grad_scale

if TYPE_CHECKING:
    from lor2c_probe.probes import ProbeContext

HIST_EVERY = 10  # histograms on every 10th recorded step: enough to see the distribution move, small on disk


class HistogramProbe(TrainerCallback):
    def __init__(self, markers: tuple[str, ...], *, layers_path: str | None, schedule: Every = Every(1), hist_every: int = HIST_EVERY) -> None:
        if hist_every <= 0:
            raise ValueError(f"hist_every must be a positive integer; got {hist_every}")
        self.markers, self.layers_path, self.schedule, self.hist_every = tuple(markers), layers_path, schedule, hist_every
        self._params: list[torch.nn.Parameter] | None = None
        self._version = 0
        self._before: list[torch.Tensor] | None = None
        self._grad_hist: torch.Tensor | None = None
        self._pending: list[tuple[int, int, str, torch.Tensor]] = []  # (step, epoch, what, tensor on device)

    def bind(self, model: torch.nn.Module) -> None:
        from lor2c_probe.probes.placement import roles_of

        selected = select_parameters(model, self.markers)
        roles = roles_of(model, [n for n, _ in selected], self.layers_path).roles
        modules = [(roles[n].module, roles[n].layer) for n, _ in selected]
        self.modules = sorted(set(modules), key=lambda ml: (ml[1], ml[0]))
        index = {m: i for i, m in enumerate(self.modules)}
        self._params = [p for _, p in selected]
        device = self._params[0].device if self._params else torch.device("cpu")
        self._module_of = torch.tensor([index[m] for m in modules], dtype=torch.long, device=device)
        self._edges = torch.tensor(EDGES, dtype=torch.float32, device=device)

    def _counts(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """(modules, N_BINS) counts of |x| over each module's tensors."""
        per = torch.stack([torch.bincount(torch.bucketize(t.detach().abs().flatten().float(), self._edges, right=True), minlength=N_BINS)
                           for t in tensors])
        out = torch.zeros(len(self.modules), N_BINS, dtype=per.dtype, device=per.device)
        return out.index_add_(0, self._module_of, per)

    def _due(self, step: int) -> tuple[bool, bool]:
        """(this step is recorded, it also gets histograms)."""
        if not self.schedule(step):
            return False, False
        return True, (step // self.schedule.n - 1) % self.hist_every == 0  # from the step alone: a resume keeps the cadence

    # -- loop points ------------------------------------------------------------------------------------
    def before_clip(self, state: TrainState) -> None:
        version = state.extras.get("structure_version", 0)
        if self._params is None or version != self._version:
            if self._params is not None:
                self.on_flush(state)  # rows of the old structure first: pending counts are indexed by its modules
            self.bind(state.model)
            self._version = version
        recorded, hist = self._due(state.step + 1)
        self._grad_hist = None
        if recorded and hist and self._params:
            grads = [torch.zeros(1, device=p.device) if p.grad is None else p.grad for p in self._params]
            scale = param_grad_scale(state)
            self._grad_hist = self._counts(grads if scale is None else [g / scale for g in grads])

    def before_optimizer_step(self, state: TrainState) -> None:
        recorded, _ = self._due(state.step + 1)
        self._before = [p.detach().clone() for p in self._params] if recorded and self._params else None

    def on_step_end(self, state: TrainState) -> None:
        if self._before is None or not self._params:
            return
        step = state.step  # the step just completed
        _, hist = self._due(step)
        after = [p.detach() for p in self._params]
        delta = torch._foreach_sub(after, self._before)
        sq = lambda ts: torch.stack(torch._foreach_norm(ts)).float() ** 2  # noqa: E731
        per_module = torch.zeros(2, len(self.modules), device=self._module_of.device)
        per_module[0].index_add_(0, self._module_of, sq(delta))
        per_module[1].index_add_(0, self._module_of, sq(after))
        self._pending.append((step, state.epoch, "updates", per_module.sqrt()))
        if hist:
            if self._grad_hist is not None:
                self._pending.append((step, state.epoch, "grad", self._grad_hist))
            self._pending.append((step, state.epoch, "weight", self._counts(after)))
        self._before, self._grad_hist = None, None

    def on_flush(self, state: TrainState) -> None:
        if not self._pending:
            return
        flat = torch.cat([t.flatten().double() for *_, t in self._pending]).cpu().numpy()  # one transfer
        lo, hi = bin_bounds()
        hist_rows, update_rows, at = [], [], 0
        for step, epoch, what, t in self._pending:
            values = flat[at: at + t.numel()].reshape(t.shape)
            at += t.numel()
            if what == "updates":
                for (module, layer), u, w in zip(self.modules, values[0], values[1]):
                    base = {"step": step, "epoch": epoch, "module": module, "layer": layer}
                    update_rows += [{**base, "stat": "update_l2", "value": float(u)}, {**base, "stat": "weight_l2", "value": float(w)},
                                    {**base, "stat": "update_ratio", "value": float(u / w) if w > 0 else float("nan")}]
                continue
            for (module, layer), counts in zip(self.modules, values):
                for b in np.flatnonzero(counts):
                    hist_rows.append({"step": step, "epoch": epoch, "module": module, "layer": layer, "source": what, "bin": int(b),
                                      "lo": float(lo[b]), "hi": float(hi[b]), "count": int(counts[b])})
        self._pending.clear()
        state.record("updates", update_rows)
        if hist_rows:
            state.record("histograms", hist_rows)

    def manifest_entry(self) -> dict[str, Any]:
        return {
            "name": "histograms",
            "tables": ["histograms", "updates"],
            "reads_at": "before_clip (gradients), before_optimizer_step / on_step_end (weights and the update)",
            "select": list(self.markers),
            "schedule": self.schedule.to_dict(),
            "histograms_every": f"every {self.hist_every}th recorded step",
            "bins": {"log10_range": list(DECADES), "per_decade": PER_DECADE, "zero_bin": "|x| < 1e-10", "overflow_bin": "|x| >= 100"},
        }


def build(ctx: ProbeContext) -> HistogramProbe:
    """The registry's factory: the run method's adapter modules, placed in the backbone's blocks."""
    return HistogramProbe(ctx.markers, layers_path=ctx.layers_path, schedule=ctx.schedule())
