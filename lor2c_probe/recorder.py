"""Record lor2c-probe's probes from any training loop: the public API.

    rec = Recorder("runs/mine", model, optimizer)        # attach every probe
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        rec.after_backward(loss)                         # after every backward (each micro-batch)
        optimizer.step(); optimizer.zero_grad()
    rec.close()                                          # flush, mark the run completed

The run directory is the one ``lor2c-probe train`` writes (tables + manifest), so ``report``, ``gradients
--from-runs`` and ``export`` read it. The Recorder drives the probes at the loop points of
``train.hooks.TrainerCallback``:

- ``on_step_begin``: the first training forward after a step (a forward pre-hook on the model), or ``begin_step()``;
- ``after_backward``: each ``after_backward`` call; on the last micro-batch of a step (every ``grad_accum``-th call,
  or ``accelerator.sync_gradients``) also ``before_clip`` and ``before_optimizer_step``: gradients are read there,
  accumulated and, with a GradScaler, divided by its scale when the loop has not unscaled them yet;
- ``after_optimizer_step`` / ``on_step_end``: a step post-hook on the optimizer. A step the scaler skipped (no
  optimizer step) ends at the next step's start, flagged ``skipped_update``.

Under DDP (torchrun, accelerate launch) every rank calls the same methods; the probes' reductions run on every rank
and only rank 0 writes. ``resume_step=S`` appends to an existing run from a checkpoint at optimizer step S: rows of
later steps move to ``superseded/`` (kept) and the run continues at S.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from lor2c_probe.errors import UserError
from lor2c_probe.train import distributed
from lor2c_probe.train.driver import ProbeDriver
from lor2c_probe.train.hooks import TrainerCallback, TrainState

DEFAULT_PROBES = ("grads", "activations", "spectra", "histograms")


@dataclass(frozen=True)
class RecorderConfig:
    """What to record and how often; validated on construction (a bad value raises ``ConfigError``)."""

    probes: tuple[str, ...] = DEFAULT_PROBES
    method: str = "custom"  # the run's name in comparisons
    every: int = 1  # record the step probes every N optimizer steps
    flush_every: int = 50  # optimizer steps between writes (and live-sink updates)
    bottom_every: int = 10  # activations: dL/dh_0 on every N-th recorded step
    spectra_every: int = 0  # spectra: also every N steps (0: at epoch ends and at close only)
    grad_accum: int = 1  # micro-batches (after_backward calls) per optimizer step, without an accelerator
    scaling: float = 1.0  # recorded as the modules' scaling s (PEFT tuner layers' spectra use their own)
    max_grad_norm: float | None = None  # what your loop clips to: the recorded clip coefficient
    log_to: tuple[str, ...] = ()  # live sinks: tensorboard, wandb, mlflow
    markers: tuple[str, ...] | None = None  # adapter parameter names contain one of these (None: every method's)
    layers_path: str | None = None  # the block stack (None: found generically)

    def __post_init__(self) -> None:
        from lor2c_probe.config import ConfigError
        from lor2c_probe.probes import PROBES
        from lor2c_probe.sinks import SINKS

        object.__setattr__(self, "probes", _names(self.probes))
        object.__setattr__(self, "log_to", _names(self.log_to))
        unknown = [p for p in self.probes if p not in PROBES]
        if unknown:
            raise ConfigError(f"unknown probe {unknown[0]!r}; choose from: {', '.join(PROBES)}")
        bad_sink = [s for s in self.log_to if s not in SINKS]
        if bad_sink:
            raise ConfigError(f"unknown sink {bad_sink[0]!r}; choose from: {', '.join(SINKS)}")
        for name in ("every", "flush_every", "bottom_every", "grad_accum"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"{name} must be a positive integer; got {v!r}")
        if isinstance(self.spectra_every, bool) or not isinstance(self.spectra_every, int) or self.spectra_every < 0:
            raise ConfigError(f"spectra_every must be a non-negative integer; got {self.spectra_every!r}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ConfigError(f"max_grad_norm must be positive or None; got {self.max_grad_norm!r}")
        if self.markers is not None:
            object.__setattr__(self, "markers", _names(self.markers))
            if not self.markers:
                raise ConfigError("markers must name at least one substring of the adapter parameters' names")


def _names(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = v.split(",")
    return tuple(dict.fromkeys(s.strip() for s in v if s and s.strip()))


def all_markers() -> tuple[str, ...]:
    """Every registered method's adapter-name markers (LoR2C, ResLoRA and PEFT's tuners)."""
    from lor2c_probe.adapters import METHODS

    return tuple(dict.fromkeys(m for spec in METHODS.values() for m in spec.markers if m))


def _model_in(module: torch.nn.Module) -> torch.nn.Module:
    """The transformers/PEFT model a probe reads: ``module`` itself (a DDP wrapper's ``.module``), or the first
    submodule that is one (a LightningModule holding ``self.model``)."""
    while isinstance(module, torch.nn.parallel.DistributedDataParallel) or type(module).__name__ == "OptimizedModule":
        module = getattr(module, "module", None) or module._orig_mod
    if hasattr(module, "peft_config") or hasattr(module, "config"):
        return module
    for m in module.modules():
        if hasattr(m, "peft_config") or (hasattr(m, "config") and hasattr(m, "get_input_embeddings")):
            return m
    return module


def _torch_optimizer(opt: Any) -> torch.optim.Optimizer | None:
    """The torch optimizer inside accelerate's / Lightning's wrapper."""
    while opt is not None:
        inner = getattr(opt, "optimizer", None) or getattr(opt, "_optimizer", None)  # accelerate's is an Optimizer subclass
        if not isinstance(inner, torch.optim.Optimizer):
            break
        opt = inner
    return opt if isinstance(opt, torch.optim.Optimizer) else None


def batch_encoded(batch: Mapping[str, torch.Tensor]) -> Any:
    """A fixed probe batch (``input_ids``, ``attention_mask``[, ``token_type_ids``] tensors) as the spectral probe's
    ``Encoded``: each row's non-pad tokens."""
    from lor2c_probe.train.batches import Encoded

    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else mask
    keep = [m.bool() for m in mask.cpu()]
    feats = {k: [row[m].tolist() for row, m in zip(batch[k].cpu(), keep)]
             for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
    feats.setdefault("attention_mask", [[1] * int(m.sum()) for m in keep])
    return Encoded(feats, torch.zeros(len(ids), dtype=torch.long), 0)


@dataclass
class _Step:
    """The open optimizer step: its micro-batch losses, and whether its gradients were read."""

    losses: list[torch.Tensor] = field(default_factory=list)
    micro: int = 0
    carried: int = 0  # micro-batches from before an epoch end (the loop's window count restarts there)
    read: bool = False
    lr: float | None = None


class Recorder:
    """Attach registered probes to ``model`` (and ``optimizer``) and record them into the run directory ``out``."""

    def __init__(
        self,
        out: str | Path,
        model: torch.nn.Module,
        optimizer: Any = None,
        *,
        scaler: Any = None,
        accelerator: Any = None,
        spectra_batch: Mapping[str, torch.Tensor] | None = None,
        resume_step: int | None = None,
        resume_epoch: int | None = None,
        overwrite: bool = False,
        callbacks: list[TrainerCallback] | tuple[TrainerCallback, ...] = (),
        config: Mapping[str, Any] | None = None,
        source: str = "lor2c_probe.Recorder",
        **options: Any,
    ) -> None:
        self.cfg = RecorderConfig(**options)
        self.out = Path(out)
        self.accelerator = accelerator
        self.scaler = scaler if scaler is not None else getattr(accelerator, "scaler", None)
        self.model = _model_in(model)
        self.optimizer = _torch_optimizer(optimizer)
        self._stack = ExitStack()
        self._closed = False
        # An optimizer step with backwards still unread reads them (a plain loop's short window). Off for an integration
        # that reads at the framework's own point: Lightning calls optimizer.step(closure) before the window's last
        # backward runs inside the closure.
        self.read_on_step = True
        if resume_step is not None and (isinstance(resume_step, bool) or not isinstance(resume_step, int) or resume_step < 0):
            raise UserError(f"resume_step must be a non-negative integer; got {resume_step!r}")
        self.resuming = bool(resume_step)
        self._claim(overwrite)
        try:
            self._setup(spectra_batch, resume_step or 0, resume_epoch, callbacks, config, source)
        except BaseException:
            self._stack.close()
            raise

    # -- setup -----------------------------------------------------------------------------------------------
    def _claim(self, overwrite: bool) -> None:
        """Rank 0 checks and locks the run directory; its error stops every rank."""
        from lor2c_probe.notices import notice
        from lor2c_probe.record.lock import DirLock
        from lor2c_probe.record.outputs import KINDS, check_output, is_ours, writing
        from lor2c_probe.record.store import MANIFEST

        err = None
        if distributed.is_main():
            try:
                if self.resuming:
                    marker = self.out / MANIFEST
                    if not marker.is_file() or not is_ours(marker, KINDS["run"]):
                        raise UserError(f"cannot resume into {self.out}: it has no manifest.json written by lor2c-probe; "
                                        "pass resume_step=None to start a new run")
                    self._stack.enter_context(DirLock(self.out, "run directory", notice))
                else:
                    rep = check_output(self.out, "run", overwrite, resume_hint=" or resume_step=STEP to continue it")
                    self._stack.enter_context(writing(self.out, rep, "run directory"))
            except UserError as e:
                err = str(e)
            except OSError as e:
                err = f"{self.out}: {e.strerror or e}"
        distributed.raise_from_main(err)

    def _setup(self, spectra_batch: Any, start: int, start_epoch: int | None, callbacks: Any, config: Any, source: str) -> None:
        from lor2c_probe.probes import ProbeContext, build_probes
        from lor2c_probe.record.store import NullStore, RunStore, read_manifest

        cfg = self.cfg
        self.markers = cfg.markers or all_markers()
        needs_blocks = {"activations", "spectra"} & set(cfg.probes)
        layers_path = cfg.layers_path
        if layers_path is None:
            from lor2c_probe.blocks import BlockStackError, find_blocks, unwrap

            try:
                layers_path = find_blocks(unwrap(self.model))[0]
            except BlockStackError:
                if needs_blocks:
                    raise
        self.layers_path = layers_path
        self.store = RunStore(self.out) if distributed.is_main() else NullStore(self.out)
        self.device = next(self.model.parameters()).device
        ctx = ProbeContext(self.markers, layers_path, cfg.scaling, cfg.scaling, every=cfg.every, bottom_every=cfg.bottom_every,
                           spectra_every=cfg.spectra_every, probe_data=batch_encoded(spectra_batch) if spectra_batch is not None else None,
                           ks=_sfs_ks(self.model), chunk=16)
        self.callbacks: list[TrainerCallback] = build_probes(cfg.probes, ctx) + list(callbacks)
        self.state = TrainState(self.model, self.optimizer, None, self.store.append, self.device, ",".join(self.markers),
                                max_grad_norm=cfg.max_grad_norm)
        self.state.step = start
        self.state.grad_scale = float(distributed.world())
        self.driver = ProbeDriver(self.state, self.callbacks, self.store)
        self._open: _Step | None = None  # a step between its first forward and its gradients being read
        self._ended: _Step | None = None  # gradients read, waiting for the optimizer step
        self._forward_loss: torch.Tensor | None = None
        self._since_epoch = 0
        self.eval_history: list[dict[str, Any]] = []
        self.skipped_steps = 0
        self.manifest: dict[str, Any] = {}
        self.sinks = None
        self._output_listeners: list[Any] = []  # called with each training forward's output (integrations.backward)

        def prepare() -> None:  # rank 0's files: its error (a damaged shard, a full disk) stops every rank
            if self.resuming:
                self.manifest = read_manifest(self.out)
                self.state.epoch = start_epoch if start_epoch is not None else _epoch_at(self.out, start)
                moved = self.store.truncate_after(start, label=f"resume-{len(self.manifest.get('resumes', [])) + 1}")
                self.manifest.setdefault("resumes", []).append({"from_step": start, "from_epoch": self.state.epoch, "at": _now(),
                                                                "superseded_shards": moved})
            else:
                self.manifest = self._new_manifest(source, dict(config or {}))
            from lor2c_probe.sinks.live import attach_sinks

            self.sinks = attach_sinks(self.store, cfg.log_to, self.out, self.manifest, start_step=start)
            if self.sinks is not None:
                self._stack.callback(self.sinks.close)
            self._write_manifest("running")

        self._on_main(prepare)
        self.state.epoch = int(distributed.broadcast_object(self.state.epoch))
        hooks = [self.model.register_forward_pre_hook(self._forward_pre), self.model.register_forward_hook(self._forward_post)]
        if self.optimizer is not None:
            hooks += [self.optimizer.register_step_pre_hook(self._optimizer_stepping),
                      self.optimizer.register_step_post_hook(self._optimizer_stepped)]
        for h in hooks:  # removed however the recorder ends, also when setup fails below
            self._stack.callback(h.remove)
        self._emit("on_train_start")

    def _on_main(self, fn: Any) -> None:
        """Run ``fn`` on rank 0; its error, as one line, is raised on every rank (none waits in a collective)."""
        err = None
        if distributed.is_main():
            try:
                fn()
            except UserError as e:
                err = str(e)
            except OSError as e:
                err = f"{self.out}: {e.strerror or e}"
        distributed.raise_from_main(err)

    def _new_manifest(self, source: str, config: dict[str, Any]) -> dict[str, Any]:
        from lor2c_probe.record.outputs import signature
        from lor2c_probe.record.schema import SCHEMA_VERSION
        from lor2c_probe.train.manifest import adapted_targets, versions

        conf = getattr(self.model, "config", None) or getattr(getattr(self.model, "base_model", None), "config", None)
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        adapter = sum(p.numel() for n, p in self.model.named_parameters() if p.requires_grad and any(m in n for m in self.markers))
        blocks = None
        if self.layers_path is not None:
            from lor2c_probe.probes.activations import find_block_stack

            blocks = len(find_block_stack(self.model, self.layers_path))
        return {
            **signature(),
            "schema_version": SCHEMA_VERSION,
            "status": "running",
            "created": _now(),
            "source": source,
            "config": config,
            "method": {"name": self.cfg.method, "param_marker": ",".join(self.markers), "param_markers": list(self.markers),
                       "scaling": self.cfg.scaling},
            "model": {"model_type": getattr(conf, "model_type", None), "hidden_size": getattr(conf, "hidden_size", None),
                      "num_layers": blocks, "layers_path": self.layers_path, "targets": adapted_targets(self.model)},
            "params": {"trainable": trainable, "adapter": adapter, "total": sum(p.numel() for p in self.model.parameters())},
            "device": {"type": self.device.type, "threads": torch.get_num_threads()},
            "distributed": {"world_size": distributed.world()},
            "recorder": {"probes": list(self.cfg.probes), "grad_accum": self.cfg.grad_accum, "every": self.cfg.every,
                         "log_to": list(self.cfg.log_to), "scaler": self.scaler is not None, "accelerator": self.accelerator is not None},
            "versions": versions(),
        }

    # -- the loop points --------------------------------------------------------------------------------------
    def _emit(self, point: str) -> None:
        self.driver.emit(point)

    def _forward_pre(self, module: torch.nn.Module, args: tuple) -> None:
        if module.training and torch.is_grad_enabled() and self._open is None and not self._closed:
            self.begin_step()

    def _forward_post(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        if self._open is None or not module.training or not torch.is_grad_enabled():
            return
        loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
        self._forward_loss = loss.detach() if torch.is_tensor(loss) else None
        for listener in self._output_listeners:
            listener(output)

    def begin_step(self) -> None:
        """Start an optimizer step (before its first forward). Called for you by the model's first training forward."""
        if self._open is not None:
            return
        if self._ended is not None:  # the last step's optimizer never stepped (AMP's scaler skipped it)
            self._end_step(skipped=True)
        self._open = _Step()
        self._emit("on_step_begin")

    def after_backward(self, loss: torch.Tensor | float | None = None, *, sync: bool | None = None) -> None:
        """After each backward. ``loss``: the micro-batch's loss as the model returned it, not divided for
        accumulation (default: the ``loss`` of the model's last training output). ``sync``: whether this was the
        step's last micro-batch (default: ``accelerator.sync_gradients``, else every ``grad_accum``-th call)."""
        if self._closed:
            raise UserError("Recorder.after_backward called after close()")
        if self._open is None:
            self.begin_step()
        st = self._open
        value = loss if loss is not None else self._forward_loss
        if value is not None:
            st.losses.append(value.detach().float().reshape(()) if torch.is_tensor(value) else torch.tensor(float(value)))
        self._forward_loss = None
        st.micro += 1
        self.state.micro_step = st.micro - 1
        self._emit("after_backward")
        if sync is None:
            # Counted from the step's first micro-batch, or from the epoch's start when a window runs across an epoch end
            # (a loop that counts its windows per epoch and steps only full ones).
            counted = st.micro - st.carried
            sync = bool(self.accelerator.sync_gradients) if self.accelerator is not None else counted % self.cfg.grad_accum == 0
        if sync:
            self.gradients_ready()

    def gradients_ready(self) -> None:
        """The step's gradients are complete (accumulated; not yet clipped): read them. ``after_backward`` calls this on
        the last micro-batch; integrations whose framework gives that point directly call it themselves."""
        if self._open is None:
            self.begin_step()
        st, state = self._open, self.state
        state.loss = _mean_loss(st.losses, self.device)
        self._set_scale()
        state.grad_norm = self._grad_norm()
        self._emit("before_clip")
        self._emit("before_optimizer_step")
        st.read = True
        st.lr = float(self.optimizer.param_groups[0]["lr"]) if self.optimizer is not None else None
        self._open, self._ended = None, st
        if self.optimizer is None:
            self._end_step(skipped=False)

    def _set_scale(self) -> None:
        scaler, state = self.scaler, self.state
        if scaler is None or not getattr(scaler, "is_enabled", lambda: False)():
            state.loss_scale, state.grads_unscaled = 1.0, True
            return
        scale = getattr(scaler, "_scale", None)
        state.loss_scale = scale if scale is not None else scaler.get_scale()
        from torch.amp.grad_scaler import OptState

        per_opt = getattr(scaler, "_per_optimizer_states", {}).get(id(self.optimizer), {})
        state.grads_unscaled = per_opt.get("stage") is OptState.UNSCALED

    def _grad_norm(self) -> torch.Tensor:
        """Global L2 norm of every trainable gradient, pre-clip (the same on every rank under DDP)."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]] if self.optimizer is not None else list(self.model.parameters())
        grads = [p.grad for p in params if p.requires_grad and p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.device)
        norm = torch.linalg.vector_norm(torch.stack([n.to(self.device) for n in torch._foreach_norm(grads)]).float())
        return norm if self.state.grads_unscaled else norm / self.state.loss_scale

    def _optimizer_stepping(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """The optimizer steps with backwards the counter did not close (a short last window): read them now. They
        are read after any clipping your loop did; pass ``sync=True`` to the window's last ``after_backward`` to read
        them before."""
        if self.read_on_step and self._open is not None and self._open.micro > 0 and self._ended is None:
            self.gradients_ready()

    def _optimizer_stepped(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._ended is not None:
            self._end_step(skipped=False)

    def _end_step(self, *, skipped: bool) -> None:
        st, state = self._ended, self.state
        self._ended = None
        state.extras["skipped_update"] = skipped
        self._emit("after_optimizer_step")
        state.step += 1
        self.skipped_steps += skipped
        if state.loss is not None and st.losses:
            self._scalar("train", "loss", state.loss)
        self._scalar("train", "grad_norm", state.grad_norm)
        if st.lr is not None:
            self._scalar("train", "lr", st.lr)
        if skipped:
            self._scalar("train", "skipped_step", 1.0)
        self._emit("on_step_end")
        self._since_epoch += 1
        if state.step % self.cfg.flush_every == 0:
            self.flush()

    def _finish_step(self) -> None:
        if self._ended is not None:
            self._end_step(skipped=True)

    # -- epochs, metrics, writes ---------------------------------------------------------------------------
    def _scalar(self, split: str, name: str, value: Any, step: int | None = None, epoch: int | None = None) -> None:
        self.driver.scalar(split, name, value, step, epoch)

    def log(self, metrics: Mapping[str, float], *, split: str = "eval", step: int | None = None, epoch: int | None = None) -> None:
        """Record your own scalars (an evaluation's accuracy, ...) at the current step, in table ``metrics`` under ``split``."""
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) and not torch.is_tensor(value):
                continue
            self._scalar(split, str(name), value, step, epoch)

    def epoch_end(self, metrics: Mapping[str, float] | None = None) -> None:
        """End of an epoch: records ``metrics`` (split ``eval``), takes the spectra, writes everything so far."""
        self._finish_step()
        if self._open is not None:  # backwards not yet stepped: the loop carries them into the next epoch's first step
            self._open.carried = self._open.micro
        if metrics:
            self.log(metrics)
            self.eval_history.append({"epoch": self.state.epoch, "step": self.state.step,
                                      **{k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}})
        self._emit("on_epoch_end")
        self.flush()
        self.state.epoch += 1
        self._since_epoch = 0

    def flush(self, *, collective: bool = True) -> None:
        """Hand every probe's rows to the run store and write them (rank 0); live sinks get them too. Rank 0's write
        error stops every rank; ``collective=False`` (a run ending on an error, where another rank may never arrive)
        writes without telling the others."""
        self.driver.hand_over()
        err = None
        try:
            self.store.flush()
        except UserError as e:
            err = str(e)
        if distributed.enabled() and collective:
            distributed.raise_from_main(err)
        elif err:
            raise UserError(err)

    def close(self, *, status: str = "completed", reason: str | None = None) -> dict[str, Any]:
        """Finish: the last step, spectra if no epoch ended since, every row written, the manifest marked ``status``."""
        if self._closed:
            return self.manifest
        try:
            ok = status == "completed"
            if ok:
                self._finish_step()
                if self._since_epoch and any(hasattr(cb, "spectra_now") for cb in self.callbacks):
                    self._emit("on_epoch_end")
                self._emit("on_train_end")
            self.flush(collective=ok)  # after an error, no collective: another rank may be stuck in the failed step
            if self.sinks is not None:
                self.sinks.status = status
            self.manifest["recording"] = {"flush_every": self.cfg.flush_every, "callbacks": self.driver.manifest_entries()}
            self.manifest["results"] = {**self.manifest.get("results", {}), "steps": self.state.step, "skipped_steps": self.skipped_steps,
                                        "final_eval": self.eval_history[-1] if self.eval_history else None}
            if reason:
                self.manifest["stopped"] = {"reason": reason, "step": self.state.step}
            self._write_manifest(status)
        finally:
            self._closed = True
            for cb in self.callbacks:
                detach = getattr(cb, "detach", None)
                if callable(detach):
                    detach()
            self._stack.close()  # hooks removed, sinks closed, the lock released
        return self.manifest

    def _write_manifest(self, status: str) -> None:
        self.manifest["status"] = status
        if status != "running":
            self.manifest["finished"] = _now()
        self.store.write_manifest(self.manifest)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.close()
            return
        line = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
        try:
            self.close(status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", reason=line)
        except Exception:  # the original error is the one to see
            pass


def _mean_loss(losses: list[torch.Tensor], device: torch.device) -> torch.Tensor | None:
    """Mean of the micro-batch losses; under DDP the mean over ranks too (every rank brings one, so none waits)."""
    if not losses and not distributed.enabled():
        return None
    total = torch.stack([v.to(device) for v in losses]).mean() if losses else torch.zeros((), device=device)
    if distributed.enabled():
        total = distributed.all_reduce_sum_(total.clone()) / distributed.world()
    return total


def _sfs_ks(model: torch.nn.Module) -> tuple[int, ...]:
    ks = {1, 2, 4}
    for conf in (getattr(model, "peft_config", None) or {}).values():
        r = getattr(conf, "r", None)
        if isinstance(r, int) and r > 0:
            ks.add(r)
    return tuple(sorted(ks))


def _epoch_at(out: Path, step: int) -> int:
    """The epoch a resumed run continues in: that of the last recorded row at or before ``step`` (0 if none)."""
    from lor2c_probe.record.store import read_table

    m = read_table(out, "metrics")
    m = m[m["step"] <= step]
    if m.empty:
        return 0
    last = m[m["step"] == m["step"].max()]
    ended = not last[last["split"] == "eval"].empty  # an epoch's eval is recorded at its last step
    return int(last["epoch"].max()) + int(ended)


def _now() -> str:
    from lor2c_probe.train.manifest import now

    return now()


__all__ = ["DEFAULT_PROBES", "Recorder", "RecorderConfig", "all_markers", "batch_encoded"]
