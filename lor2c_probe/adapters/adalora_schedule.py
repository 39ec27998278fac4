"""AdaLoRA inside lor2c-probe's loop: PEFT's ``update_and_allocate`` after every optimizer step, and evaluation
without its orthogonality penalty.

PEFT asks for ``update_and_allocate`` after ``optimizer.step()`` and before ``zero_grad()`` (it reads the gradients
for its importance scores and masks E); that is the loop's ``after_optimizer_step`` point. ``total_step`` comes from
the run's plan, with PEFT's documented phases: rank reduction between 10% (tinit) and 80% (total - tfinal) of the
steps. The final rank pattern is checkpointed, so a resumed run re-applies the same masks every step, as PEFT does
(AdamW would otherwise revive masked entries of E). The importance averages live in PEFT's memory only: a run
resumed before the final allocation restarts them. A skipped update (``--on-nonfinite skip-step``) allocates nothing.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch

from lor2c_probe.train.hooks import TrainerCallback, TrainState


def _tuner(model: Any) -> Any:
    base = getattr(model, "base_model", None)
    if base is None or not hasattr(base, "update_and_allocate"):
        raise TypeError(f"{type(model).__name__} is not an AdaLoRA PeftModel")
    return base


def _config(model: Any) -> Any:
    tuner = _tuner(model)
    return tuner.peft_config[tuner.trainable_adapter_name]


class AdaLoraSchedule(TrainerCallback):
    def __init__(self, model: Any, total_steps: int) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be a positive integer; got {total_steps}")
        self.total_steps = total_steps
        self.tinit, self.tfinal = total_steps // 10, total_steps // 5
        self._config = _config(model)  # set now: a resumed run never sees on_train_start
        self._config.total_step, self._config.tinit, self._config.tfinal = self.total_steps, self.tinit, self.tfinal

    def after_optimizer_step(self, state: TrainState) -> None:
        if state.extras.get("skipped_update"):
            return  # the loop skipped this update (non-finite): nothing moved, nothing to allocate
        _tuner(state.model).update_and_allocate(state.step)  # optimizer steps completed before this one (PEFT counts from 0)

    def state_dict(self) -> dict[str, Any]:
        """PEFT's rank pattern once allocated: per adapted layer, which of its ranks are kept (JSON-able booleans)."""
        return {"rank_pattern": self._config.rank_pattern}

    def load_state_dict(self, d: dict[str, Any], device: torch.device) -> None:
        self._config.rank_pattern = d.get("rank_pattern")

    def manifest_entry(self) -> dict[str, Any]:
        return {"name": "adalora-schedule", "total_step": self.total_steps, "tinit": self.tinit, "tfinal": self.tfinal,
                "reads_at": "after_optimizer_step (before zero_grad)"}


@contextmanager
def without_orth_penalty(model: Any) -> Iterator[None]:
    """AdaLoRA adds orth_reg_weight x ||P^T P - I|| to ``out.loss`` whenever labels are passed; an eval loss comparable
    with other methods' leaves it out. No-op for any other model."""
    try:
        config = _config(model)
    except TypeError:
        yield
        return
    weight = config.orth_reg_weight
    config.orth_reg_weight = 0.0
    try:
        yield
    finally:
        config.orth_reg_weight = weight
