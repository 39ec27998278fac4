"""A run from start to end: validate, build data/model/adapters, write the manifest, train, checkpoint.

Everything that can fail on user input is checked before the run directory is touched.
"""

from __future__ import annotations

import platform
import random
import signal
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from lor2c_probe import __version__
from lor2c_probe.adapters import get_method, markers
from lor2c_probe.adapters.base import ArchShape
from lor2c_probe.config import ConfigError, RunConfig, TrainConfig
from lor2c_probe.data.load import load_task
from lor2c_probe.data.tasks import TaskSpec
from lor2c_probe.errors import Diverged, RunDiverged, RunStopped, StorageError, Terminated, UserError
from lor2c_probe.models import EMBEDDED_DEFAULT_NAME, Backbone, find_layers, load_model
from lor2c_probe.record.schema import SCHEMA_VERSION
from lor2c_probe.notices import notice
from lor2c_probe.record.lock import DirLock
from lor2c_probe.record.outputs import check_output, signature, writing
from lor2c_probe.record.store import MANIFEST, NullStore, RunStore, read_manifest
from lor2c_probe.train.batches import Encoded, encode, encode_causal, take
from lor2c_probe.train.checkpoint import load_checkpoint, newest_intact, save_checkpoint
from lor2c_probe.train import distributed
from lor2c_probe.train.hooks import TrainerCallback
from lor2c_probe.record.naming import is_head
from lor2c_probe.train.loop import Trainer


def resolve_device(cfg_device: str, precision: str, base_dtype: str = "fp32") -> tuple[torch.device, str]:
    """(device, precision). Mixed precision needs CUDA; auto picks bf16 where the GPU supports it. Frozen weights
    stored in half precision (``base_dtype``) need autocast in that dtype."""
    if cfg_device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda requested but no CUDA device is available; use --device cpu or auto")
    use_cuda = cfg_device == "cuda" or (cfg_device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    if precision == "auto":
        precision = "bf16" if use_cuda and torch.cuda.is_bf16_supported() else "fp32"
    if precision in ("bf16", "fp16") and not use_cuda:
        raise ConfigError(f"precision {precision} needs a CUDA device; use --precision fp32 on the CPU")
    if base_dtype != "fp32" and precision != base_dtype:
        raise ConfigError(f"--base-dtype {base_dtype} needs {base_dtype} autocast on a CUDA device; precision resolved to {precision} "
                          f"here: use --base-dtype fp32" + ("" if use_cuda else " on the CPU"))
    return device, precision


LOWER_IS_BETTER = ("loss", "perplexity")  # headline metrics where the best epoch is the lowest


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Built:
    model: torch.nn.Module
    tokenizer: Any
    backbone: Backbone
    spec: TaskSpec


def build_model(cfg: RunConfig, spec: TaskSpec) -> Built:
    """Seeded model + adapters: the head and adapter inits depend only on the seed and the method."""
    seed_everything(cfg.train.seed)
    problem = "regression" if spec.regression else "single_label_classification"
    model, tokenizer, backbone = load_model(cfg.model, num_labels=spec.num_labels, problem_type=problem, causal=spec.causal,
                                            dtype=cfg.train.base_dtype)
    model = get_method(cfg.adapter.method).attach(model, backbone, cfg.adapter)
    return Built(model, tokenizer, backbone, spec)


def _probe_batch(cfg: RunConfig, train: Encoded | None) -> tuple[Encoded | None, list[int] | None]:
    """The spectral probe batch: ``spectra_examples`` training examples drawn with ``spectra_seed``."""
    if train is None:
        return None, None
    n = min(cfg.probes.spectra_examples, len(train))
    idx = np.sort(np.random.default_rng(cfg.probes.spectra_seed).choice(len(train), size=n, replace=False))
    return take(train, idx), [int(i) for i in idx]


def arch_shape(model: torch.nn.Module, bb: Backbone) -> ArchShape:
    """The sizes parameter counts depend on, read from the model's q and v projections (GQA: v_out < d)."""
    _, layers = find_layers(model.base_model.model if hasattr(model, "peft_config") else model)
    q, v = (layers[0].get_submodule(n) for n in _qv_paths(layers[0], bb))
    return ArchShape("run", bb.hidden_size, bb.num_layers, q.in_features, q.out_features, v.in_features, v.out_features)


def _qv_paths(block: torch.nn.Module, bb: Backbone) -> tuple[str, str]:
    names = [n for n, _ in block.named_modules()]
    pick = lambda leaf: next(n for n in names if n.rsplit(".", 1)[-1] == leaf)  # noqa: E731
    return pick(bb.q_name), pick(bb.v_name)


def _lora_scaling(cfg: RunConfig) -> float:
    """PEFT's alpha / r of the LoRA modules: the method's rank, or r/2 for an injected LoRA."""
    method = get_method(cfg.adapter.method)
    return cfg.adapter.alpha / (cfg.adapter.rank // 2 if getattr(method, "can_inject", False) else cfg.adapter.rank)


def probe_chunk(train: TrainConfig) -> int:
    """Examples per forward of a spectral reading: at most a training micro-batch (so a reading's no-grad
    forward never holds more activations than a step's forward keeps for backward) and the eval batch."""
    from lor2c_probe.probes.spectral import PROBE_CHUNK

    micro = -(-train.batch_size // train.grad_accum)
    return max(1, min(PROBE_CHUNK, train.eval_batch_size, micro))


def make_probes(cfg: RunConfig, backbone: Backbone, train: Encoded | None = None) -> list[TrainerCallback]:
    """The probes ``cfg.probes`` asks for; they select adapter parameters by the method's name markers."""
    from lor2c_probe.adapters import markers
    from lor2c_probe.probes.activations import ActivationGradProbe
    from lor2c_probe.probes.gradients import GradientProbe
    from lor2c_probe.probes.schedule import Every
    from lor2c_probe.probes.spectral import SpectralProbe

    schedule = Every(cfg.probes.every)
    s, s_lora = cfg.adapter.scaling, _lora_scaling(cfg)
    probes: list[TrainerCallback] = []
    if cfg.probes.grads:
        probes.append(GradientProbe(markers(get_method(cfg.adapter.method)), scaling=lambda m: s_lora if m.startswith("lora.") else s, schedule=schedule))
    if cfg.probes.activations:
        probes.append(ActivationGradProbe(backbone.layers_path, schedule=schedule, bottom_every=cfg.probes.bottom_every))
    if cfg.probes.spectra:
        probe_data, idx = _probe_batch(cfg, train)
        probes.append(SpectralProbe(
            scaling=s, lora_scaling=s_lora, layers_path=backbone.layers_path, probe_data=probe_data,
            ks=(1, 2, 4, cfg.adapter.rank), every_steps=cfg.probes.spectra_every, chunk_size=probe_chunk(cfg.train),
            probe_indices=idx,
        ))
    return probes


def make_structure(cfg: RunConfig, backbone: Backbone, n_train: int, train: Encoded | None = None) -> list[TrainerCallback]:
    """The StructureCallback when the run merges or injects; validates M, J and the schedule (fails early)."""
    from lor2c_probe.probes.spectral import SpectralProbe
    from lor2c_probe.structure.callback import StructureCallback
    from lor2c_probe.structure.schedule import check_counts, plan_events
    from lor2c_probe.train.loop import Plan

    st = cfg.structure
    if not (st.merges or st.injections):
        return []
    check_counts(st.merges, st.injections, backbone.num_layers)
    plan = Plan.make(n_train, cfg.train)
    events = plan_events(st.schedule, merges=st.merges, injections=st.injections, epochs=cfg.train.epochs, total_steps=plan.total_steps)
    probe_data, _ = _probe_batch(cfg, train)
    scorer = SpectralProbe(scaling=cfg.adapter.scaling, lora_scaling=_lora_scaling(cfg), layers_path=backbone.layers_path,
                           probe_data=probe_data, ks=(1,), chunk_size=probe_chunk(cfg.train))
    return [StructureCallback(events=events, mode=st.schedule, policy=cfg.structure_policy(), policy_name=cfg.policy,
                              scorer=scorer, freeze=st.emulate_reference_bugs, loss_window=st.loss_window)]


def param_counts(model: torch.nn.Module, marker: str | tuple[str, ...]) -> dict[str, int]:
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    marks = (marker,) if isinstance(marker, str) else marker
    return {
        "trainable_params": sum(trainable.values()),
        "adapter_params": sum(v for n, v in trainable.items() if any(m in n for m in marks) and not is_head(n)),
        "head_params": sum(v for n, v in trainable.items() if is_head(n)),
        "total_params": sum(p.numel() for p in model.parameters()),
    }


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "lor2c-probe": __version__}
    for pkg in ("torch", "transformers", "peft", "numpy", "pandas", "pyarrow", "safetensors"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def run_training(
    cfg: RunConfig,
    out: Path,
    *,
    overwrite: bool = False,
    policy_sources: dict[str, str] | None = None,
    callbacks: list[TrainerCallback] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train one method and record it into ``out``. Returns the final manifest."""
    out = Path(out)
    device, precision = resolve_device(cfg.train.device, cfg.train.precision, cfg.train.base_dtype)
    device = _join_launch(device, {"config": cfg.to_dict(), "out": str(out.resolve()), "overwrite": overwrite})
    checked: dict[str, Any] = {}
    check = lambda: checked.update(rep=check_output(out, "run", overwrite, resume_hint=" or --resume to continue it"))  # noqa: E731
    distributed.raise_from_main(_check(check) if distributed.is_main() else None)  # before any work: the old run is ours
    train_ex, eval_ex, spec, source = load_task(cfg.data)  # data errors surface before any write
    built = build_model(cfg, spec)
    make_structure(cfg, built.backbone, len(train_ex))  # merge/inject schedule errors too
    with ExitStack() as stack:
        # One writer per run directory, taken before the first write (rank 0 writes; its error stops every rank).
        claim = lambda: stack.enter_context(writing(out, checked.get("rep"), "run directory"))  # noqa: E731
        distributed.raise_from_main(_check(claim) if distributed.is_main() else None)
        manifest = _manifest(cfg, built, spec, source, len(train_ex), len(eval_ex), device, precision, policy_sources or {})
        return _train(cfg, out, built, train_ex, eval_ex, manifest, device, precision, callbacks, progress, start_epoch=0)


def _check(fn: Any) -> str | None:
    """Run ``fn`` (on rank 0) and return its error as one line for every rank to raise, or None."""
    try:
        fn()
    except UserError as e:
        return str(e)
    except OSError as e:
        return f"{getattr(e, 'filename', None) or ''}: {e.strerror or e}".lstrip(": ")
    return None


def _join_launch(device: torch.device, agreed: dict[str, Any]) -> torch.device:
    """Under torchrun / accelerate launch: join the process group, check that every rank was given the same
    configuration, and use this rank's GPU. A single process gets ``device`` back unchanged."""
    distributed.setup(device.type)
    distributed.check_agreement("configuration", agreed)
    if distributed.enabled() and device.type == "cuda":
        return torch.device("cuda", distributed.local_rank())
    return device


def resume_training(out: Path, *, callbacks: list[TrainerCallback] | None = None, progress: bool = True) -> dict[str, Any]:
    """Continue the run in ``out`` from its last checkpoint, with the configuration in its manifest."""
    out = Path(out)
    if not (out / MANIFEST).is_file():
        raise UserError(f"cannot --resume {out}: no manifest.json there (not a lor2c-probe run directory, or a run killed before "
                        "it wrote one: start it again with --overwrite)")
    with ExitStack() as stack:
        if distributed.launched_world_size() <= 1:  # under a launcher the lock is taken after joining, on rank 0
            stack.enter_context(DirLock(out, "run directory", notice))
        manifest = read_manifest(out)
        status = manifest.get("status")
        if status == "completed":
            notice(f"run {out} is already complete; nothing to resume (nothing was changed)")
            return manifest
        if status == "diverged":
            d = manifest.get("diverged", {})
            raise UserError(f"cannot --resume {out}: it diverged at step {d.get('step', '?')}, and resuming would repeat that; "
                            "start a new run (e.g. with a lower --lr or --max-grad-norm 1)")
        choice = newest_intact(out)
        for name, why in choice.skipped:
            notice(f"checkpoint {name} of {out} is not usable ({why}); falling back to an older one")
        if choice.path is None:
            raise UserError(f"cannot --resume {out}: {_no_checkpoint(manifest, out)}")
        ckpt = choice.path
        cfg = RunConfig.from_dict(manifest["config"])
        device, precision = resolve_device(cfg.train.device, cfg.train.precision, cfg.train.base_dtype)
        device = _join_launch(device, {"config": cfg.to_dict(), "out": str(out.resolve()), "resume": ckpt.name})
        if distributed.launched_world_size() > 1:
            distributed.raise_from_main(_check(lambda: stack.enter_context(DirLock(out, "run directory", notice)))
                                        if distributed.is_main() else None)
        train_ex, eval_ex, spec, _ = load_task(cfg.data)
        built = build_model(cfg, spec)
        manifest.setdefault("resumes", []).append({"from": ckpt.name, "at": _now(), "skipped_checkpoints": dict(choice.skipped)})
        return _train(cfg, out, built, train_ex, eval_ex, manifest, device, precision, callbacks, progress, resume_from=ckpt)


def _no_checkpoint(manifest: dict[str, Any], out: Path) -> str:
    """Why a run cannot be resumed, and what to do instead (never "use --resume")."""
    return (f"it has no usable checkpoint (the first is written at the end of epoch 0); start it again with "
            f"`lor2c-probe train ... --out {out} --overwrite` (the old run is moved aside)")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (torchrun, SLURM, docker stop) takes SIGINT's path: flush, mark the run interrupted, say how to resume."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _manifest(
    cfg: RunConfig, built: Built, spec: TaskSpec, source: str, n_train: int, n_eval: int,
    device: torch.device, precision: str, policy_sources: dict[str, str],
) -> dict[str, Any]:
    method = get_method(cfg.adapter.method)
    bb = built.backbone
    return {
        **signature(),
        "schema_version": SCHEMA_VERSION,
        "status": "running",
        "created": _now(),
        "config": cfg.to_dict(),
        "policy": {
            "name": cfg.policy,
            "fields": {
                "dropout": {"value": cfg.adapter.dropout, "source": policy_sources.get("dropout", "user")},
                "weight_decay": {"value": cfg.train.weight_decay, "source": policy_sources.get("weight_decay", "user")},
                "head_lr_scale": {"value": cfg.train.head_lr_scale, "source": policy_sources.get("head_lr_scale", "user")},
            },
        },
        "method": {"name": method.name, "param_marker": method.param_marker, "scaling": cfg.adapter.scaling},
        "model": {
            "source": cfg.model or EMBEDDED_DEFAULT_NAME,
            "model_type": bb.model_type,
            "hidden_size": bb.hidden_size,
            "num_layers": bb.num_layers,
            "layers_path": bb.layers_path,
        },
        "task": {
            "name": spec.name,
            "source": source,
            "n_train": n_train,
            "n_eval": n_eval,
            "labels": list(spec.labels),
            "regression": spec.regression,
            "metrics": list(spec.metrics),
        },
        "params": {
            **param_counts(built.model, markers(method)),
            "adapter_params_formula": method.count_params(
                arch_shape(built.model, bb), cfg.adapter
            ),
        },
        "device": {"type": device.type, "name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu", "threads": torch.get_num_threads()},
        "precision": precision,
        "seed": cfg.train.seed,
        "versions": _versions(),
    }


def _train(
    cfg: RunConfig, out: Path, built: Built, train_ex, eval_ex, manifest: dict[str, Any], device: torch.device,
    precision: str, callbacks: list[TrainerCallback] | None, progress: bool, *, start_epoch: int = 0, resume_from: Path | None = None,
) -> dict[str, Any]:
    tok = built.tokenizer
    if resume_from is not None:  # the checkpoint's structure: replay merges/injections before building the optimizer
        import json as _json

        from lor2c_probe.structure.ops import replay

        saved = _json.loads((resume_from / "state.json").read_text()).get("callbacks", {}).get("structure")
        if saved:
            replay(built.model, saved["applied"])
    if built.spec.causal:
        train = encode_causal(tok, train_ex, cfg.train.max_length, cfg.data.loss_on)
        ev = encode_causal(tok, eval_ex, cfg.train.max_length, cfg.data.loss_on)
    else:
        train = encode(tok, train_ex, cfg.train.max_length, built.spec.regression)
        ev = encode(tok, eval_ex, cfg.train.max_length, built.spec.regression)
    model = built.model.to(device)
    store = RunStore(out) if distributed.is_main() else NullStore(out)
    trainer = Trainer(
        model=model, cfg=cfg.train, spec=built.spec, train=train, eval=ev, store=store, device=device,
        precision=precision, param_marker=manifest["method"]["param_marker"],
        callbacks=make_probes(cfg, built.backbone, train) + make_structure(cfg, built.backbone, len(train), train) + list(callbacks or []),
        progress=progress and distributed.is_main(),
    )
    if resume_from is not None:
        state = load_checkpoint(resume_from, model=model, optimizer=trainer.optimizer, scheduler=trainer.scheduler)
        for cb in trainer.callbacks:
            if hasattr(cb, "load_state_dict") and cb.manifest_entry() and cb.manifest_entry()["name"] in state.get("callbacks", {}):
                cb.load_state_dict(state["callbacks"][cb.manifest_entry()["name"]], device)
        trainer.state.extras["structure_version"] = state.get("callbacks", {}).get("structure", {}).get("structure_version", 0)
        moved = store.supersede_from(state["store_next_seq"], label=f"resume-{len(manifest['resumes'])}")
        manifest["resumes"][-1]["superseded_shards"] = moved
        trainer.eval_history = state["eval_history"]
        trainer.skipped_steps = state.get("skipped_steps", 0)
        start_epoch = state["epoch"] + 1
    manifest["schedule"] = {
        "steps_per_epoch": trainer.plan.steps_per_epoch,
        "total_steps": trainer.plan.total_steps,
        "warmup_steps": trainer.plan.warmup_steps,
        "epochs": cfg.train.epochs,
    }
    manifest["recording"] = {
        "flush_every": cfg.train.flush_every,
        "callbacks": [e for cb in trainer.callbacks if (e := cb.manifest_entry()) is not None],
    }
    manifest["status"] = "running"
    store.write_manifest(manifest)

    def on_epoch_done(epoch: int) -> None:
        def save() -> None:
            # callback state read now: the structure callback copies its loss windows to the host once per checkpoint
            save_checkpoint(
                out, epoch, model=model, optimizer=trainer.optimizer, scheduler=trainer.scheduler,
                extra={"step": trainer.state.step, "store_next_seq": store.next_seq, "eval_history": trainer.eval_history,
                       "skipped_steps": trainer.skipped_steps,
                       "callbacks": {cb.manifest_entry()["name"]: cb.state_dict() for cb in trainer.callbacks
                                     if hasattr(cb, "state_dict") and cb.manifest_entry()}},
            )

        if not distributed.enabled():
            return save()
        # rank 0 writes; a failure there (a full disk) stops every rank rather than leaving them in the next all-reduce
        distributed.raise_from_main(_check(save) if distributed.is_main() else None)

    t0 = time.perf_counter()
    with sigterm_as_interrupt():
        try:
            if start_epoch < cfg.train.epochs:
                trainer.fit(start_epoch, on_epoch_done)
            else:  # resumed from the final checkpoint: what callbacks write at the end comes after it
                trainer.finish()
            folded = _folded_evals(trainer, model)
            if distributed.enabled():  # every replica must end with the same structure (merges/injections broadcast from rank 0)
                distributed.check_agreement("model structure at the end", structure_fingerprint(model))
                manifest["distributed"] = {"world_size": distributed.world(), "backend": "nccl" if device.type == "cuda" else "gloo",
                                           "global_batch_size": cfg.train.batch_size, "structure_agrees": True}
            manifest["status"] = "completed"
            manifest["finished"] = _now()
            manifest["results"] = _results(trainer, built.spec, time.perf_counter() - t0)
            if cfg.train.on_nonfinite == "skip-step":
                manifest["results"]["skipped_steps"] = trainer.skipped_steps
            if folded:
                manifest["results"]["folded_eval"] = folded
            store.write_manifest(manifest)
        except BaseException as e:
            with signals_held():  # a second Ctrl-C or SIGTERM must not leave the manifest `running`
                stop = _stopped(e, trainer, store, manifest, out)
            if stop is e:
                raise
            raise stop from None
    trainer.close()
    distributed.finish()
    return manifest


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM ignored for the block (the main thread only can change handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stopped(e: BaseException, trainer: Trainer, store: RunStore, manifest: dict[str, Any], out: Path) -> BaseException:
    """Record why the run ended early in its manifest (after saving every row that can be saved) and return what
    to raise: a one-line RunStopped, or a bug's own exception (its traceback matters). The manifest never stays
    ``running``: even when the emergency flush fails (a full disk), it ends ``interrupted`` or ``failed`` with the reason."""
    step, epoch = trainer.state.step, trainer.state.epoch
    if not isinstance(e, Diverged) and trainer.diverged_step() is not None:
        # a NaN step before the flush that would have caught it broke something else first (e.g. an SVD of NaN weights)
        try:
            trainer.flush()  # writes the rows up to the bad step and raises Diverged
        except Diverged as d:
            e = d
        except BaseException:  # noqa: BLE001 - the divergence is still the cause to report
            e = Diverged(trainer.diverged_step() or step, epoch, "loss or gradient norm")
    if isinstance(e, Diverged):  # its flush already wrote the rows up to the bad step
        manifest["status"] = "diverged"
        manifest["diverged"] = {"step": e.step, "epoch": e.epoch, "what": e.what, "at": _now()}
        message = (f"{e}; rows up to step {e.step} are kept in {out} (status: diverged); no checkpoint after the divergence "
                   f"was written. Try a lower --lr, clipping (--max-grad-norm 1) or --on-nonfinite skip-step")
        return _finish_stop(store, manifest, RunDiverged(message, e.exit_code))
    if isinstance(e, KeyboardInterrupt):
        reason, code = ("SIGTERM", 143) if isinstance(e, Terminated) else ("SIGINT (Ctrl-C)", 130)
        manifest["status"] = "interrupted"
    else:
        reason, code = (str(e), e.exit_code) if isinstance(e, UserError) else (f"{type(e).__name__}: {e}", 1)
        manifest["status"] = "failed"
    info: dict[str, Any] = {"reason": reason, "step": step, "epoch": epoch, "at": _now()}
    try:
        trainer.flush()
    except BaseException as fe:  # noqa: BLE001 - whatever stops the emergency flush is recorded, not raised over the cause
        info["flush_error"] = f"{type(fe).__name__}: {fe}"
    manifest["interrupted" if manifest["status"] == "interrupted" else "failure"] = info
    _write_quietly(store, manifest)  # the status first: what follows reads checkpoints and may take a moment
    choice = newest_intact(out) if distributed.is_main() else None
    where = f"continue with `lor2c-probe train --resume --out {out}`" + (f" (from {choice.path.name})" if choice and choice.path else "")
    if choice is not None and choice.path is None:
        where = _no_checkpoint(manifest, out).replace("it has", "the run has", 1)
    what = "interrupted by " + reason if manifest["status"] == "interrupted" else f"failed: {reason}"
    kept = "rows recorded so far are kept" if "flush_error" not in info else f"the last rows could not be saved ({info['flush_error']})"
    err = _finish_stop(store, manifest, RunStopped(f"run {out} {what} at step {step}; {kept}; {where}", code))
    return err if isinstance(e, (KeyboardInterrupt, UserError)) else e


def _write_quietly(store: RunStore, manifest: dict[str, Any]) -> None:
    try:
        store.write_manifest(manifest)
    except StorageError:
        pass  # _finish_stop tries again and says so


def _finish_stop(store: RunStore, manifest: dict[str, Any], err: RunStopped) -> RunStopped:
    try:
        store.write_manifest(manifest)
    except StorageError as we:
        return type(err)(f"{err} (and the manifest could not be updated: {we})", err.exit_code)
    return err


def structure_fingerprint(model: torch.nn.Module) -> dict[str, Any]:
    """{parameter name: [shape, trainable]} of every adapter or head parameter (what merges and injections change)."""
    return {n: [list(p.shape), p.requires_grad] for n, p in model.named_parameters() if p.requires_grad or "lora" in n or "lor2c" in n}


def _folded_evals(trainer: Trainer, model: torch.nn.Module) -> dict[str, dict[str, float]]:
    """For ResLoRA: evaluate once more per fold of its extra paths (metrics split ``eval_folded:<estimator>``),
    so the cost of merging for inference sits next to the training-time eval. Other methods: nothing."""
    from lor2c_probe.adapters.reslora import BANK_ATTR, ESTIMATORS, fold, frozen_weights

    bank = getattr(model, BANK_ATTR, None)
    if bank is None or not trainer.eval_history:
        return {}
    out = {}
    weights = frozen_weights(model, bank)
    for est in ESTIMATORS[bank.variant]:
        bank.use(fold(bank, est, weights))
        try:
            res = trainer.evaluate()
        finally:
            bank.use(None)
        trainer.record_eval(f"eval_folded:{est}", res)
        out[est] = res
    trainer.flush()
    return out


def _results(trainer: Trainer, spec: TaskSpec, wall: float) -> dict[str, Any]:
    hist = trainer.eval_history
    headline = spec.metrics[0]
    pick = min if headline in LOWER_IS_BETTER else max
    best = pick(hist, key=lambda h: h[headline]) if hist else None
    times = trainer.step_times[1:] or trainer.step_times  # the first step includes warm-up costs
    return {
        "final_eval": hist[-1] if hist else None,
        "best_eval": best,  # the paper reports the best per-epoch value
        "headline_metric": headline,
        "wall_seconds_this_session": round(wall, 3),
        "median_step_seconds_this_session": float(np.median(times)) if times else None,
    }
