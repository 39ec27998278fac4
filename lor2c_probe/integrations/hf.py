"""Every lor2c-probe probe inside your own Hugging Face ``Trainer``:

    trainer = Trainer(..., callbacks=[ProbeCallback("runs/mine", method="lora")])

A thin layer over ``lor2c_probe.Recorder``; it writes the run directory ``lor2c-probe train`` writes, with the built-in
loop's metric names (train ``loss``, ``grad_norm``, ``lr`` per optimizer step; eval metrics under split ``eval``
without the ``eval_`` prefix; the Trainer's totals such as ``train_runtime`` in the manifest's ``results.trainer``).

Gradients are read at the end of the step's last backward (``integrations.backward.BackwardEnd``): accumulated,
averaged across DDP ranks, divided by the fp16 loss scale, and before the Trainer clips them (its
``on_pre_optimizer_step`` already sees clipped gradients). Which backward is the last of a step is accelerate's
``GradientState.sync_gradients``, which the Trainer sets before every micro-batch. Only rank 0 writes.
``trainer.train(resume_from_checkpoint=...)`` continues the run directory from the checkpoint's step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from lor2c_probe.recorder import DEFAULT_PROBES, Recorder

_PER_STEP = {"loss", "grad_norm", "learning_rate", "epoch"}  # recorded per optimizer step by the Recorder itself
_TOTALS = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss"}


class ProbeCallback(TrainerCallback):
    """lor2c-probe's probes for ``transformers.Trainer``, recorded into ``out_dir``."""

    def __init__(
        self,
        out_dir: str | Path,
        *,
        probes: tuple[str, ...] | str = DEFAULT_PROBES,
        activations: bool = True,
        overwrite: bool = False,
        spectra_batch: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        self.out_dir = Path(out_dir)
        if not activations:  # the earlier keyword, kept
            probes = tuple(p for p in (probes.split(",") if isinstance(probes, str) else probes) if p != "activations")
        self.options = {"probes": probes, **options}
        from lor2c_probe.recorder import RecorderConfig

        RecorderConfig(**self.options)  # a bad option fails here, before training starts
        self.overwrite, self.spectra_batch = overwrite, spectra_batch
        self.rec: Recorder | None = None
        self._end = None
        self._totals: dict[str, float] = {}

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        from accelerate.state import GradientState

        from lor2c_probe.integrations.backward import BackwardEnd

        if self.rec is not None:  # a train() that raised before: its recorder still holds the lock and its hooks
            self.rec.close(status="failed", reason="a later Trainer.train() started")
        opts = dict(self.options)
        opts.setdefault("max_grad_norm", args.max_grad_norm if args.max_grad_norm and args.max_grad_norm > 0 else None)
        opts.setdefault("grad_accum", args.gradient_accumulation_steps)
        self.rec = Recorder(
            self.out_dir, model, optimizer, scaler=getattr(optimizer, "scaler", None), spectra_batch=self.spectra_batch,
            resume_step=state.global_step or None, resume_epoch=int(state.epoch or 0) if state.global_step else None,
            overwrite=self.overwrite, source="transformers.Trainer + lor2c_probe.integrations.hf.ProbeCallback", config=_args(args), **opts,
        )
        gradient_state = GradientState()
        self._end = BackwardEnd(lambda: self.rec.after_backward(sync=bool(gradient_state.sync_gradients)))
        self.rec._output_listeners.append(self._end.watch)

    def on_step_begin(self, args, state, control, **kwargs):
        if self.rec is not None:
            self.rec.begin_step()

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.rec is not None:
            self.rec.epoch_end()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.rec is None or not logs:
            return
        evals = {k[5:]: v for k, v in logs.items() if k.startswith("eval_") and not k.endswith(("_runtime", "_per_second"))}
        if evals:  # the eval after an epoch end belongs to the epoch that ended
            epoch = max(self.rec.state.epoch - 1, 0) if self.rec._since_epoch == 0 else self.rec.state.epoch
            self.rec.log(evals, split="eval", epoch=epoch)
            self.rec.eval_history.append({"epoch": epoch, "step": self.rec.state.step, **{k: float(v) for k, v in evals.items()}})
        self._totals.update({k: float(v) for k, v in logs.items() if k in _TOTALS})
        extra = {k: v for k, v in logs.items() if not k.startswith("eval_") and k not in _PER_STEP | _TOTALS}
        if extra:
            self.rec.log(extra, split="train")

    def on_save(self, args, state, control, **kwargs):
        """A Trainer checkpoint: write every row up to it, so resuming from it loses none (every rank calls this)."""
        if self.rec is not None:
            self.rec.flush()

    def on_train_end(self, args, state, control, **kwargs):
        if self.rec is None:
            return
        self.rec.manifest.setdefault("results", {})["trainer"] = dict(self._totals)
        self.rec.close()
        self.rec = None


def _args(args: Any) -> dict[str, Any]:
    """The TrainingArguments that shape the recorded numbers (for the manifest's ``config``)."""
    keep = ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "max_steps",
            "warmup_steps", "warmup_ratio", "lr_scheduler_type", "weight_decay", "max_grad_norm", "seed", "fp16", "bf16")
    return {k: getattr(args, k) for k in keep if hasattr(args, k) and isinstance(getattr(args, k), (int, float, str, bool, type(None)))}
