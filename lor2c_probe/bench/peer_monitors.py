"""The gradient monitors a user would otherwise reach for, as callbacks on the same built-in loop, for ``bench --peers``.

Each peer reads the same pre-clip gradients our probe reads (the ``before_clip`` point) or hooks them its own way:
- ``wandb.watch``: ``run.watch(model, log="gradients", log_freq=N)`` in offline mode (W&B's own backward hooks build a
  64-bin histogram of every trainable parameter's gradient every N-th backward, sent with the next ``run.log``); the
  loop logs its loss with ``run.log`` every step, as a watched run does. ``wandb (loss only)`` is the same run without
  ``watch``, so the cost of watching is told apart from the cost of W&B itself.
- TensorBoard: ``SummaryWriter.add_histogram`` of every trainable parameter's gradient every N-th step (the usual
  hand-written gradient monitor).
- BackPACK: its cheapest first-order quantity where it can attach (see ``backpack_status``).
A peer whose package is missing is skipped with the reason, never a failure.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from lor2c_probe.train.hooks import TrainerCallback


def missing(module: str) -> str | None:
    """None when ``module`` imports, else the one-line reason."""
    import importlib

    try:
        importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - any import failure makes the peer unavailable
        return f"{module} is not importable ({type(e).__name__}: {e}); install the bench extra: pip install 'lor2c-probe[bench]'"
    return None


class WandbMonitor(TrainerCallback):
    """An offline W&B run logging the loss every step, optionally watching the model's gradients."""

    def __init__(self, folder: Path, *, watch_every: int | None) -> None:
        self.folder, self.watch_every, self.run = folder, watch_every, None
        self.step = 0

    def on_train_start(self, state: Any) -> None:
        import wandb

        self.folder.mkdir(parents=True, exist_ok=True)
        saved = {k: os.environ.get(k) for k in ("WANDB_MODE", "WANDB_SILENT")}
        os.environ.update({"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
        try:
            self.run = wandb.init(dir=str(self.folder), project="lor2c-probe-bench", mode="offline", reinit="create_new",
                                  settings=wandb.Settings(console="off", x_disable_stats=True))
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        if self.watch_every is not None:
            self.run.watch(state.model, log="gradients", log_freq=self.watch_every)

    def on_step_begin(self, state: Any) -> None:
        import wandb

        # W&B's watch hooks log into the global ``wandb.run``; several runs are interleaved here, so each step makes
        # its own run the global one, as it is for a user with one run.
        wandb.run = self.run

    def on_step_end(self, state: Any) -> None:
        import wandb

        self.step += 1
        self.run.log({"train/loss": float(state.loss)}, step=self.step)
        wandb.run = None

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


class TensorBoardHistograms(TrainerCallback):
    """``add_histogram`` of every trainable parameter's pre-clip gradient every ``every`` steps."""

    def __init__(self, folder: Path, *, every: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(folder))
        self.every, self.step = every, 0

    def before_clip(self, state: Any) -> None:
        self.step += 1
        if self.step % self.every:
            return
        for name, p in state.model.named_parameters():
            if p.requires_grad and p.grad is not None:
                self.writer.add_histogram(f"grad/{name}", p.grad, self.step)

    def close(self) -> None:
        self.writer.close()


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def scratch() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="lor2c-peers-")
