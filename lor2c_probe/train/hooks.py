"""Named points inside one optimizer step, where probes read the live training state.

Order within a step: ``on_step_begin`` (before the first micro-batch's forward) -> ``after_backward``
(each micro-batch) -> ``before_clip`` (gradients accumulated and, under fp16, unscaled) ->
``before_optimizer_step`` (after clipping) -> ``after_optimizer_step`` (the optimizer stepped, gradients still
there: AdaLoRA's rank allocation) -> ``on_step_end`` (after the optimizer and scheduler
stepped and gradients were zeroed). A callback never writes files: it keeps what it measured (on the
device, to avoid a host sync per step) and hands rows to ``state.record(table, rows)`` in ``on_flush``,
which the loop calls right before each write of the run store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch


@dataclass
class TrainState:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    record: Callable[[str, list[dict[str, Any]]], None]
    device: torch.device
    param_marker: str  # adapter parameter names contain this (probes select by it)
    max_grad_norm: float | None = None
    step: int = 0  # optimizer steps completed
    epoch: int = 0
    micro_step: int = 0
    loss: torch.Tensor | None = None  # mean loss of the current optimizer step (on device)
    grad_norm: torch.Tensor | None = None  # global pre-clip L2 norm of trainable gradients
    # How much larger this rank's backward gradients are than the global batch's: the world size under
    # DDP (each rank's loss is scaled so that DDP's average of parameter gradients is the global one).
    grad_scale: float = 1.0
    # AMP: what the backward's loss was multiplied by (GradScaler's scale, a tensor on the device). Block-input
    # gradients always carry it; parameter gradients carry it until the scaler unscales them (grads_unscaled).
    loss_scale: torch.Tensor | float = 1.0
    grads_unscaled: bool = True
    extras: dict[str, Any] = field(default_factory=dict)


def param_grad_scale(state: Any) -> torch.Tensor | float | None:
    """The factor the parameters' ``.grad`` still carries at ``before_clip`` (None: they are the true gradients)."""
    if getattr(state, "grads_unscaled", True):
        return None
    return getattr(state, "loss_scale", 1.0)


class TrainerCallback:
    """Override what you need; each method receives the live ``TrainState``."""

    def on_train_start(self, state: TrainState) -> None: ...
    def on_step_begin(self, state: TrainState) -> None: ...
    def after_backward(self, state: TrainState) -> None: ...
    def before_clip(self, state: TrainState) -> None: ...
    def before_optimizer_step(self, state: TrainState) -> None: ...
    def after_optimizer_step(self, state: TrainState) -> None: ...
    def on_step_end(self, state: TrainState) -> None: ...
    def on_epoch_end(self, state: TrainState) -> None: ...
    def on_train_end(self, state: TrainState) -> None: ...
    def on_flush(self, state: TrainState) -> None: ...

    def manifest_entry(self) -> dict[str, Any] | None:
        """What to record about this callback (name, schedule) in manifest.json; None for nothing."""
        return None
