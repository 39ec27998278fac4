"""The explicit training loop: AdamW, linear warmup/decay, clipping, accumulation, AMP, per-epoch eval."""

from __future__ import annotations

import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lor2c_probe.config import TrainConfig
from lor2c_probe.data.tasks import TaskSpec
from lor2c_probe.errors import Diverged, UserError
from lor2c_probe.metrics import task_metrics
from lor2c_probe.record.naming import classify, is_head
from lor2c_probe.record.store import RunStore
from lor2c_probe.train import distributed
from lor2c_probe.train.batches import Encoded, batches, collate, epoch_order
from lor2c_probe.train.driver import ProbeDriver
from lor2c_probe.train.hooks import TrainerCallback, TrainState

def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over trainable parameters: adapters at lr, the head at lr * head_lr_scale."""
    adapters, head = [], []
    for name, p in model.named_parameters():
        # A frozen LoRA is a dormant one (the LoRA an injection may switch on): registered now, so the LR schedule
        # covers it later; AdamW skips parameters without a gradient.
        if p.requires_grad or classify(name).kind == "lora":
            (head if is_head(name) else adapters).append(p)
    groups = [
        {"params": adapters, "lr": cfg.lr, "name": "adapters"},
        {"params": head, "lr": cfg.lr * cfg.head_lr_scale, "name": "head"},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=cfg.weight_decay)


def linear_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup from 0 over ``warmup`` steps, then linear decay to 0 at ``total``: the factor of
    ``transformers.get_linear_schedule_with_warmup``, so a Trainer run with the same settings gets the same lr at every
    step (a test compares them)."""

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass(frozen=True)
class Plan:
    """How many optimizer steps an epoch and the run take."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int

    @classmethod
    def make(cls, n_train: int, cfg: TrainConfig, world: int = 1) -> Plan:
        batches_per_epoch = math.ceil(n_train / cfg.batch_size)
        if 0 < n_train % cfg.batch_size < world:  # a last batch too small to give every rank an example is dropped
            batches_per_epoch -= 1
        per_epoch = max(1, batches_per_epoch // cfg.grad_accum)
        if cfg.steps_per_epoch is not None:
            per_epoch = min(per_epoch, cfg.steps_per_epoch)
        total = per_epoch * cfg.epochs
        return cls(per_epoch, total, math.ceil(cfg.warmup_ratio * total))


class Trainer:
    """Runs epochs ``start_epoch..epochs-1``; records metrics rows; calls callbacks at named points."""

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        cfg: TrainConfig,
        spec: TaskSpec,
        train: Encoded,
        eval: Encoded,
        store: RunStore,
        device: torch.device,
        precision: str,
        param_marker: str,
        callbacks: list[TrainerCallback] | None = None,
        progress: bool = True,
    ) -> None:
        self.model, self.cfg, self.spec = model, cfg, spec
        self.train_data, self.eval_data, self.store = train, eval, store
        self.device, self.precision = device, precision
        self.callbacks = list(callbacks or [])
        self.progress = progress
        self.world, self.rank = distributed.world(), distributed.rank()
        if cfg.batch_size < self.world:
            raise UserError(f"--batch-size is the global batch; {cfg.batch_size} cannot be split across {self.world} ranks")
        self.plan = Plan.make(len(train), cfg, self.world)
        self.optimizer = build_optimizer(model, cfg)
        self.scheduler = linear_schedule(self.optimizer, self.plan.warmup_steps, self.plan.total_steps)
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        self.state = TrainState(
            model, self.optimizer, self.scheduler, self._record, device, param_marker, max_grad_norm=cfg.max_grad_norm
        )
        self.state.grad_scale = float(self.world)
        self.driver = ProbeDriver(self.state, self.callbacks, store)
        self._ddp: Any = None  # the DDP wrapper of a distributed launch, rebuilt when merges/injections change the parameters
        self._ddp_version = -1
        self.step_times: list[float] = []
        self.eval_history: list[dict[str, float]] = []
        self._last_predictions: tuple[np.ndarray, np.ndarray] | None = None  # (prediction, gold) of the latest evaluate()
        self.last_loss: float | None = None  # host copy of the latest flushed training loss (progress bar)
        # [first optimizer step whose loss or gradient norm was not finite (-1: none), which: 1 loss, 2 grad norm, 3 both],
        # kept on the device and read once per flush, so watching for divergence adds no sync to a step.
        self._nonfinite = torch.tensor([-1, 0], dtype=torch.long, device=device)
        self.skipped_steps = 0  # --on-nonfinite skip-step: updates skipped

    # -- recording ---------------------------------------------------------------------------------
    def _record(self, table: str, rows: list[dict[str, Any]]) -> None:
        self.store.append(table, rows)

    def _scalar(self, split: str, name: str, value: Any) -> None:
        self.driver.scalar(split, name, value)  # deferred so the step never syncs

    def record_eval(self, split: str, results: dict[str, float]) -> None:
        """Queue an evaluation's metrics under ``split`` (written at the next flush), e.g. a folded-model eval, and the
        per-example predictions of the evaluation that produced them (classification and regression tasks)."""
        for name, value in results.items():
            self._scalar(split, name, value)
        if self._last_predictions is not None:
            pred, gold = self._last_predictions
            st = self.state
            self._record("predictions", [{"step": st.step, "epoch": st.epoch, "split": split, "example": i, "label": float(y),
                                          "prediction": float(p)} for i, (y, p) in enumerate(zip(gold, pred))])
            self._last_predictions = None

    def flush(self) -> None:
        """Let callbacks hand over their rows, move deferred scalars to host in one transfer, write every table.
        A non-finite loss or gradient norm since the last flush ends here: rows up to that step are written, the
        later ones dropped, and Diverged is raised."""
        for row in self.driver.hand_over():
            if (row["split"], row["name"]) == ("train", "loss"):
                self.last_loss = row["value"]
        self._stop_if_diverged()
        if self.world == 1:
            self.store.flush()
            return
        err = None
        try:  # rank 0 writes: its failure (a full disk) stops every rank, not just rank 0
            self.store.flush()
        except UserError as e:
            err = str(e)
        distributed.raise_from_main(err)

    def diverged_step(self) -> int | None:
        """The first step whose loss or gradient norm was not finite, if any (one host read)."""
        step = int(self._nonfinite[0])
        return step if step >= 0 else None

    def _stop_if_diverged(self) -> None:
        bad_step, what = (int(v) for v in self._nonfinite.tolist())
        if bad_step >= 0:
            self.store.discard_after(bad_step)
            self.store.flush()
            raise Diverged(bad_step, self.state.epoch, {1: "loss", 2: "gradient norm", 3: "loss"}[what])

    def check_finite(self) -> None:
        """Before a checkpoint: every trainable parameter and optimizer moment finite (one sync), else Diverged.
        Catches what the step flags cannot: an update that overflowed the weights, or skip-step with NaN weights."""
        tensors = [p for g in self.optimizer.param_groups for p in g["params"]]
        tensors += [v for st in self.optimizer.state.values() for v in st.values() if torch.is_tensor(v) and v.is_floating_point()]
        if tensors and not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
            raise Diverged(self.state.step, self.state.epoch, "value of a trainable parameter or optimizer moment")

    def close(self) -> None:
        """Drop the DDP wrapper (its reducer must go before the process group does)."""
        self._ddp = None

    # -- the loop ------------------------------------------------------------------------------------
    def _autocast(self):
        if self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(self.device.type, dtype=dtype)
        return nullcontext()

    def _emit(self, point: str) -> None:
        self.driver.emit(point)

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _forward_model(self) -> torch.nn.Module:
        """The model to run forward and backward: a DDP wrapper in a distributed launch (re-made after a
        structural change, so that its reducer covers exactly the parameters that train now)."""
        if self.world == 1:
            return self.model
        version = self.state.extras.get("structure_version", 0)
        if self._ddp is None or version != self._ddp_version:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            with warnings.catch_warnings():  # torch 2.13 renames broadcast_buffers; older torch only knows this name
                warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
                # No buffer changes during training (frozen backbone), so none is re-broadcast at each forward.
                self._ddp = DistributedDataParallel(self.model, device_ids=ids, broadcast_buffers=False)
            self._ddp_version = version
        return self._ddp

    def train_step(self, micro_batches: list[dict[str, torch.Tensor]], shares: list[float] | None = None) -> None:
        """One optimizer step. ``shares[i]``: this rank's part of micro-batch i's global loss weight (1 alone)."""
        st, accum = self.state, len(micro_batches)
        shares = shares or [1.0] * accum
        self._emit("on_step_begin")
        fwd = self._forward_model()
        total = torch.zeros((), device=self.device)
        for i, batch in enumerate(micro_batches):
            st.micro_step = i
            sync = nullcontext() if self.world == 1 or i == accum - 1 else fwd.no_sync()  # reduce once per step
            with sync:
                with self._autocast():
                    loss = fwd(**self._to_device(batch)).loss / accum
                if shares[i] != 1.0:
                    loss = loss * shares[i]  # this rank's part of the global batch's mean
                # DDP averages gradients over ranks, so each rank's part is scaled by the world size.
                scaled = loss * self.world if self.world > 1 else loss
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            total += loss.detach()
            self._emit("after_backward")
        st.loss = distributed.all_reduce_sum_(total)  # the global batch's mean loss on every rank
        if self.scaler:
            scale = getattr(self.scaler, "_scale", None)  # a device tensor: reading it does not sync
            st.loss_scale = scale if scale is not None else self.scaler.get_scale()
            self.scaler.unscale_(self.optimizer)
        self._emit("before_clip")
        max_norm = self.cfg.max_grad_norm if self.cfg.max_grad_norm is not None else float("inf")
        # The optimizer's trainable parameters, read now: merges remove some, an injection adds its LoRA.
        trainable = [p for g in self.optimizer.param_groups for p in g["params"] if p.requires_grad]
        st.grad_norm = torch.nn.utils.clip_grad_norm_(trainable, max_norm)  # pre-clip norm
        self._emit("before_optimizer_step")
        lr = self.optimizer.param_groups[0]["lr"]
        # Under fp16 a non-finite gradient is the loss scaler's business (it skips the step and lowers the scale).
        bad = (~torch.isfinite(st.loss)).long() + (0 if self.scaler else 2 * (~torch.isfinite(st.grad_norm)).long())
        skip = self.cfg.on_nonfinite == "skip-step" and bool(bad)  # one sync per step, as AMP's GradScaler makes
        if skip:
            self.skipped_steps += 1
        elif self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        st.extras["skipped_update"] = skip
        self._emit("after_optimizer_step")
        self.optimizer.zero_grad(set_to_none=True)
        st.step += 1
        if self.cfg.on_nonfinite == "stop":
            first = (self._nonfinite[0] < 0) & (bad > 0)
            self._nonfinite.copy_(torch.where(first, torch.stack([torch.full_like(bad, st.step), bad]), self._nonfinite))
        else:
            self._scalar("train", "skipped_step", float(skip))
        self._scalar("train", "loss", total)
        self._scalar("train", "grad_norm", st.grad_norm)
        self._scalar("train", "lr", lr)
        self._emit("on_step_end")

    def fit(self, start_epoch: int = 0, on_epoch_done: Any = None) -> None:
        """Train to the end. ``on_epoch_done(epoch)`` runs after each epoch's eval and flush (checkpoints)."""
        st = self.state
        st.step = start_epoch * self.plan.steps_per_epoch
        if start_epoch == 0:
            self._emit("on_train_start")
        accum, per_epoch = self.cfg.grad_accum, self.plan.steps_per_epoch
        with _progress(self.progress) as bar:
            task = bar.add_task("train", total=self.plan.total_steps, completed=st.step, loss="–") if bar else None
            for epoch in range(start_epoch, self.cfg.epochs):
                st.epoch = epoch
                self.model.train()
                order = epoch_order(len(self.train_data), self.cfg.seed, epoch)
                it = self._local_batches(order)
                for _ in range(per_epoch):
                    t0 = time.perf_counter()
                    micro = [next(it) for _ in range(accum)]
                    self.train_step([b for b, _ in micro], [w for _, w in micro])
                    self.step_times.append(time.perf_counter() - t0)
                    if st.step % self.cfg.flush_every == 0:
                        self.flush()
                    if bar is not None:  # the loss of the last flush: reading st.loss would sync the device every step
                        fields = {"loss": f"{self.last_loss:.4f}"} if self.last_loss is not None else {}
                        bar.update(task, advance=1, description=f"epoch {epoch}", **fields)
                if self.diverged_step() is not None:  # no eval of a broken model: the flush raises Diverged
                    self.flush()
                results = self.evaluate()
                self.record_eval("eval", results)
                self.eval_history.append({"epoch": epoch, "step": st.step, **results})
                self._emit("on_epoch_end")
                self.flush()
                if on_epoch_done is not None:
                    self.check_finite()
                    on_epoch_done(epoch)
                    if bar is not None and self.last_loss is not None:
                        bar.update(task, loss=f"{self.last_loss:.4f}")
        self.finish()

    def finish(self) -> None:
        """End of training: callbacks write what they still hold (e.g. open event windows), then a flush. Also run
        when a resume starts from the final checkpoint, so rows written after it are recomputed, not lost."""
        self._emit("on_train_end")
        self.flush()

    def _local_batches(self, order: np.ndarray):
        """(this rank's part of each global batch, its share of the global loss weight). Alone: the whole batch,
        share 1. The share counts examples, or predicted tokens for a causal LM, so that the ranks' parts
        add up to the global batch's mean loss exactly, whatever the split."""
        bs = self.cfg.batch_size
        for start in range(0, len(order), bs):
            idx = order[start : start + bs]
            if self.world == 1:
                yield collate(self.train_data, idx), 1.0
                continue
            if len(idx) < self.world:
                return  # Plan.make dropped this batch
            part = np.array_split(idx, self.world)[self.rank]
            weight = self._loss_weights(idx)
            yield collate(self.train_data, part), float(weight[np.isin(idx, part)].sum() / weight.sum())

    def _loss_weights(self, idx: np.ndarray) -> np.ndarray:
        """Each example's weight in the batch's mean loss: 1, or its number of predicted tokens (causal LM)."""
        labels = self.train_data.features.get("labels")
        if labels is None:
            return np.ones(len(idx))
        return np.array([max(1, sum(1 for t in labels[i][1:] if t != -100)) for i in idx], dtype=np.float64)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss and the task's metrics on the eval split (dropout off); the task loss alone (no AdaLoRA penalty)."""
        from lor2c_probe.adapters.adalora_schedule import without_orth_penalty

        with without_orth_penalty(self.model):
            return self._evaluate_causal() if self.spec.causal else self._evaluate_classes()

    def _evaluate_classes(self) -> dict[str, float]:
        was_training = self.model.training
        self.model.eval()
        logits, losses = [], []
        order = np.arange(len(self.eval_data))
        for batch in batches(self.eval_data, order, self.cfg.eval_batch_size):
            with self._autocast():
                out = self.model(**self._to_device(batch))
            logits.append(out.logits.float().cpu())
            losses.append(out.loss.float().cpu() * len(batch["labels"]))
        self.model.train(was_training)
        all_logits = torch.cat(logits).numpy()
        gold = self.eval_data.labels.numpy()
        results = {"loss": float(torch.stack(losses).sum()) / len(gold)}
        results.update(task_metrics(self.spec.metrics, all_logits, gold, self.spec.regression))
        self._last_predictions = (all_logits[:, 0] if self.spec.regression else all_logits.argmax(axis=1), gold)
        return results


    @torch.no_grad()
    def _evaluate_causal(self) -> dict[str, float]:
        """Mean next-token loss over every predicted (non-ignored) eval token, and its exp (perplexity)."""
        was_training = self.model.training
        self.model.eval()
        total, count = torch.zeros((), device=self.device, dtype=torch.float64), 0
        for batch in batches(self.eval_data, np.arange(len(self.eval_data)), self.cfg.eval_batch_size):
            n = int((batch["labels"][:, 1:] != -100).sum())  # the model shifts labels by one
            if n == 0:
                continue
            with self._autocast():
                out = self.model(**self._to_device(batch))
            total += out.loss.double() * n  # the model's loss is the mean over this batch's predicted tokens
            count += n
        self.model.train(was_training)
        loss = float(total) / max(count, 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}


class _NoBar:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress(enabled: bool, console: Any = None):
    if not enabled:
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        transient=False,
        console=console,
    )
