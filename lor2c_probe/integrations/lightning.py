"""Every lor2c-probe probe inside PyTorch Lightning: one callback.

    trainer = lightning.Trainer(..., callbacks=[LightningProbe("runs/mine", method="lora")])

A thin layer over ``lor2c_probe.Recorder``, at Lightning's own points (lightning 2.x):

- a step begins at ``on_train_batch_start`` of the first micro-batch of an accumulation window;
- after each backward (``on_after_backward``) the micro-batch's loss is kept: the model's own output ``loss`` when it
  returns one (terms your ``training_step`` adds are not in it), else the loss Lightning back-propagated, times
  ``accumulate_grad_batches`` and divided by the AMP loss scale (Lightning divides and scales it);
- gradients are read at ``on_before_optimizer_step``: accumulated, unscaled under 16-bit AMP, before Lightning clips;
- the optimizer's step post-hook ends the step; ``on_train_epoch_end`` takes the spectra; the metrics you ``self.log``
  in validation are recorded under split ``eval`` (a ``val_``/``val/`` prefix dropped) at ``on_validation_end``.

The model probed is the transformers/PEFT model inside your LightningModule (the first submodule that is one).
Under DDP only rank 0 writes. ``trainer.fit(ckpt_path=...)`` continues the run directory from the checkpoint's step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from lor2c_probe.recorder import DEFAULT_PROBES, Recorder, RecorderConfig


class LightningProbe(Callback):
    """lor2c-probe's probes for ``lightning.Trainer``, recorded into ``out_dir``."""

    def __init__(self, out_dir: str | Path, *, probes: tuple[str, ...] | str = DEFAULT_PROBES, overwrite: bool = False,
                 spectra_batch: dict[str, Any] | None = None, **options: Any) -> None:
        self.out_dir = Path(out_dir)
        self.options = {"probes": probes, **options}
        RecorderConfig(**self.options)  # a bad option fails here, before training starts
        self.overwrite, self.spectra_batch = overwrite, spectra_batch
        self.rec: Recorder | None = None
        self._loss: torch.Tensor | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        opts = dict(self.options)
        accum = int(trainer.accumulate_grad_batches)
        opts.setdefault("grad_accum", accum)
        if trainer.gradient_clip_val and trainer.gradient_clip_algorithm in (None, "norm"):
            opts.setdefault("max_grad_norm", float(trainer.gradient_clip_val))
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        self.scaler = scaler if scaler is not None and scaler.is_enabled() else None
        resume = int(trainer.global_step) or None
        self.rec = Recorder(self.out_dir, pl_module, trainer.optimizers[0], scaler=scaler, spectra_batch=self.spectra_batch,
                            resume_step=resume, resume_epoch=int(trainer.current_epoch) if resume else None, overwrite=self.overwrite,
                            source="lightning.Trainer + lor2c_probe.integrations.lightning.LightningProbe",
                            config={"accumulate_grad_batches": accum, "gradient_clip_val": trainer.gradient_clip_val,
                                    "max_epochs": trainer.max_epochs, "precision": str(trainer.precision)}, **opts)
        self.rec.read_on_step = False  # read at on_before_optimizer_step: the step pre-hook fires before the closure's backward

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.rec is not None and batch_idx % int(trainer.accumulate_grad_batches) == 0:
            self.rec.begin_step()

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        # Lightning divided it for accumulation and, under 16-bit AMP, already multiplied it by the loss scale
        loss = loss.detach() * int(trainer.accumulate_grad_batches)
        self._loss = loss / self.scaler._scale if self.scaler is not None else loss

    def on_after_backward(self, trainer, pl_module) -> None:
        if self.rec is None:
            return
        own = self.rec._forward_loss  # the model's output loss, when the LightningModule returned it unchanged
        self.rec.after_backward(own if own is not None else self._loss, sync=False)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.rec is not None:
            self.rec.gradients_ready()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.rec is None or trainer.sanity_checking:
            return
        metrics = {}
        for k, v in trainer.callback_metrics.items():
            name = k[4:] if k.startswith(("val_", "val/")) else k
            if k.startswith(("val_", "val/")) and (torch.is_tensor(v) and v.numel() == 1 or isinstance(v, (int, float))):
                metrics[name] = float(v)
        if metrics:
            self.rec.log(metrics, split="eval")
            self.rec.eval_history.append({"epoch": self.rec.state.epoch, "step": self.rec.state.step, **metrics})

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.rec is not None:
            self.rec.epoch_end()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        """A checkpoint: write every row up to it, so resuming from it loses none."""
        if self.rec is not None:
            self.rec.flush()

    def on_train_end(self, trainer, pl_module) -> None:
        if self.rec is not None:
            self.rec.close()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.rec is not None:
            status = "interrupted" if isinstance(exception, KeyboardInterrupt) else "failed"
            self.rec.close(status=status, reason=f"{type(exception).__name__}: {str(exception).splitlines()[0] if str(exception) else ''}")
