"""A run from start to end: validate, build data/model/adapters, write the manifest, train, checkpoint.

Everything that can fail on user input is checked before the run directory is touched.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch

from lor2c_probe.adapters import get_method, spec
from lor2c_probe.config import RunConfig
from lor2c_probe.data.load import load_task
from lor2c_probe.errors import UserError
from lor2c_probe.notices import notice
from lor2c_probe.record.lock import DirLock
from lor2c_probe.record.outputs import check_output, writing
from lor2c_probe.record.store import MANIFEST, NullStore, RunStore, read_manifest
from lor2c_probe.train import distributed
from lor2c_probe.train.batches import encode, encode_causal
from lor2c_probe.train.build import Built, build_model, make_probes, make_structure, method_callbacks, resolve_device
from lor2c_probe.train.checkpoint import load_checkpoint, newest_intact, save_checkpoint
from lor2c_probe.train.hooks import TrainerCallback
from lor2c_probe.train.loop import Trainer
from lor2c_probe.train.manifest import Elapsed, new_manifest, now, results, structure_fingerprint
from lor2c_probe.train.stopping import no_checkpoint, signals_held, sigterm_as_interrupt, stopped


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
        manifest = new_manifest(cfg, built, spec, source, len(train_ex), len(eval_ex), device, precision, policy_sources or {})
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
            raise UserError(f"cannot --resume {out}: {no_checkpoint(manifest, out)}")
        ckpt = choice.path
        cfg = RunConfig.from_dict(manifest["config"])
        device, precision = resolve_device(cfg.train.device, cfg.train.precision, cfg.train.base_dtype)
        device = _join_launch(device, {"config": cfg.to_dict(), "out": str(out.resolve()), "resume": ckpt.name})
        if distributed.launched_world_size() > 1:
            distributed.raise_from_main(_check(lambda: stack.enter_context(DirLock(out, "run directory", notice)))
                                        if distributed.is_main() else None)
        train_ex, eval_ex, spec, _ = load_task(cfg.data)
        built = build_model(cfg, spec)
        manifest.setdefault("resumes", []).append({"from": ckpt.name, "at": now(), "skipped_checkpoints": dict(choice.skipped)})
        return _train(cfg, out, built, train_ex, eval_ex, manifest, device, precision, callbacks, progress, resume_from=ckpt)


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
    trainer.callbacks += method_callbacks(cfg, model, trainer.plan.total_steps)  # e.g. AdaLoRA's rank allocation
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
    from lor2c_probe.sinks.live import attach_sinks

    start_step = state["step"] if resume_from is not None else 0
    live = attach_sinks(store, cfg.probes.log_to, out, manifest, start_step=start_step) if distributed.is_main() else None
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
                       "skipped_steps": trainer.skipped_steps, "elapsed": clock.total(),
                       "callbacks": {cb.manifest_entry()["name"]: cb.state_dict() for cb in trainer.callbacks
                                     if hasattr(cb, "state_dict") and cb.manifest_entry()}},
            )

        if not distributed.enabled():
            return save()
        # rank 0 writes; a failure there (a full disk) stops every rank rather than leaving them in the next all-reduce
        distributed.raise_from_main(_check(save) if distributed.is_main() else None)

    clock = Elapsed.resumed(state.get("elapsed")) if resume_from is not None else Elapsed()
    with sigterm_as_interrupt(), _closing(live):
        try:
            if start_epoch < cfg.train.epochs:
                trainer.fit(start_epoch, on_epoch_done)
            else:  # resumed from the final checkpoint: what callbacks write at the end comes after it
                trainer.finish()
            folded = _folded_evals(trainer, model, cfg.adapter.method)
            if distributed.enabled():  # every replica must end with the same structure (merges/injections broadcast from rank 0)
                distributed.check_agreement("model structure at the end", structure_fingerprint(model))
                manifest["distributed"] = {"world_size": distributed.world(), "backend": "nccl" if device.type == "cuda" else "gloo",
                                           "global_batch_size": cfg.train.batch_size, "structure_agrees": True}
            manifest["status"] = "completed"
            manifest["finished"] = now()
            manifest["results"] = results(trainer, built.spec, clock)
            # re-read: probes bind at their first step (e.g. which tensors the gradient probe could not place)
            manifest["recording"]["callbacks"] = [e for cb in trainer.callbacks if (e := cb.manifest_entry()) is not None]
            if cfg.train.on_nonfinite == "skip-step":
                manifest["results"]["skipped_steps"] = trainer.skipped_steps
            if folded:
                manifest["results"]["folded_eval"] = folded
            store.write_manifest(manifest)
        except BaseException as e:
            with signals_held():  # a second Ctrl-C or SIGTERM must not leave the manifest `running`
                stop = stopped(e, trainer, store, manifest, out)
            if stop is e:
                raise
            raise stop from None
    trainer.close()
    distributed.finish()
    return manifest


@contextmanager
def _closing(live: Any):
    """Close the live sinks however the run ends (their files are complete up to the last flush), telling them how."""
    from lor2c_probe.errors import RunDiverged, RunStopped

    try:
        yield
    except BaseException as e:
        if live is not None:
            interrupted = isinstance(e, KeyboardInterrupt) or (isinstance(e, RunStopped) and getattr(e, "exit_code", 0) in (130, 143))
            live.status = "diverged" if isinstance(e, RunDiverged) else "interrupted" if interrupted else "failed"
        raise
    finally:
        if live is not None:
            live.close()


def _folded_evals(trainer: Trainer, model: torch.nn.Module, method: str) -> dict[str, dict[str, float]]:
    """For a foldable method (ResLoRA): evaluate once more per way of folding its extra paths for inference (metrics
    split ``eval_folded:<variant>``), so the cost of folding sits next to the training-time eval. Others: nothing."""
    if not spec(method).foldable or not trainer.eval_history:
        return {}
    out = {}
    for variant, folded in get_method(method).inference_variants(model):
        with folded:
            res = trainer.evaluate()
        trainer.record_eval(f"eval_folded:{variant}", res)
        out[variant] = res
    trainer.flush()
    return out


