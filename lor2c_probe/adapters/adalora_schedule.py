"""AdaLoRA's rank allocation inside lor2c-probe's loop: PEFT's ``update_and_allocate`` after every optimizer step.

PEFT asks for it after ``optimizer.step()`` and before ``zero_grad()`` (it reads the gradients for its importance
scores and masks E); that is the loop's ``after_optimizer_step`` point. ``total_step`` comes from the run's plan,
with PEFT's documented phases: rank reduction between 10% (tinit) and 80% (total - tfinal) of the steps.
A resumed run restarts the importance averages (PEFT keeps them in memory only); masked entries of E stay zero.
"""

from __future__ import annotations

from typing import Any

from lor2c_probe.train.hooks import TrainerCallback, TrainState


def _tuner(model: Any) -> Any:
    base = getattr(model, "base_model", None)
    if base is None or not hasattr(base, "update_and_allocate"):
        raise TypeError(f"{type(model).__name__} is not an AdaLoRA PeftModel")
    return base


class AdaLoraSchedule(TrainerCallback):
    def __init__(self, total_steps: int) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be a positive integer; got {total_steps}")
        self.total_steps = total_steps
        self.tinit, self.tfinal = total_steps // 10, total_steps // 5

    def on_train_start(self, state: TrainState) -> None:
        tuner = _tuner(state.model)
        config = tuner.peft_config[tuner.trainable_adapter_name]
        config.total_step, config.tinit, config.tfinal = self.total_steps, self.tinit, self.tfinal

    def after_optimizer_step(self, state: TrainState) -> None:
        tuner = _tuner(state.model)
        config = tuner.peft_config[tuner.trainable_adapter_name]
        step = state.step  # optimizer steps completed before this one (PEFT counts from 0)
        if step > self.total_steps - self.tfinal and config.rank_pattern is None:
            return  # resumed after the final allocation: the masks live on in E's zeros
        tuner.update_and_allocate(step)

    def manifest_entry(self) -> dict[str, Any]:
        return {"name": "adalora-schedule", "total_step": self.total_steps, "tinit": self.tinit, "tfinal": self.tfinal,
                "reads_at": "after_optimizer_step (before zero_grad)"}
