"""A run from start to end: validate, build data/model/adapters, write the manifest, train, checkpoint.

Everything that can fail on user input is checked before the run directory is touched.
"""

from __future__ import annotations

import os
import platform
import random
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lor2c_probe import __version__
from lor2c_probe.adapters import get_method, markers
from lor2c_probe.adapters.base import ArchShape
from lor2c_probe.config import ConfigError, RunConfig, TrainConfig
from lor2c_probe.data.load import load_task
from lor2c_probe.data.tasks import TaskSpec
from lor2c_probe.errors import UserError
from lor2c_probe.models import EMBEDDED_DEFAULT_NAME, Backbone, find_layers, load_model
from lor2c_probe.record.schema import SCHEMA_VERSION
from lor2c_probe.record.store import MANIFEST, NullStore, RunStore, read_manifest
from lor2c_probe.train.batches import Encoded, encode, encode_causal, take
from lor2c_probe.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
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


def prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Fail before any work if ``out`` cannot be used; clear it only with ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise UserError(f"output path {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"output directory {out} already exists; pass --overwrite to replace it or --resume to continue it")
        if not (out / MANIFEST).is_file():
            raise UserError(f"refusing to --overwrite {out}: it is not a lor2c-probe run directory (no manifest.json)")
    parent = out if out.exists() else out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"output directory {out} cannot be created: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"output directory {out} is not writable (no write permission on {parent})")


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
    distributed.raise_from_main(_check(lambda: prepare_out_dir(out, overwrite)) if distributed.is_main() else None)
    train_ex, eval_ex, spec, source = load_task(cfg.data)  # data errors surface before any write
    built = build_model(cfg, spec)
    make_structure(cfg, built.backbone, len(train_ex))  # merge/inject schedule errors too
    if distributed.is_main():
        if overwrite and out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
    manifest = _manifest(cfg, built, spec, source, len(train_ex), len(eval_ex), device, precision, policy_sources or {})
    return _train(cfg, out, built, train_ex, eval_ex, manifest, device, precision, callbacks, progress, start_epoch=0)


def _check(fn: Any) -> str | None:
    try:
        fn()
    except UserError as e:
        return str(e)
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
        raise UserError(f"cannot --resume {out}: no manifest.json there (not a lor2c-probe run directory)")
    ckpt = latest_checkpoint(out)
    if ckpt is None:
        raise UserError(f"cannot --resume {out}: it has no checkpoint yet (one is written at the end of each epoch)")
    manifest = read_manifest(out)
    cfg = RunConfig.from_dict(manifest["config"])
    device, precision = resolve_device(cfg.train.device, cfg.train.precision, cfg.train.base_dtype)
    device = _join_launch(device, {"config": cfg.to_dict(), "out": str(out.resolve()), "resume": ckpt.name})
    train_ex, eval_ex, spec, _ = load_task(cfg.data)
    built = build_model(cfg, spec)
    manifest.setdefault("resumes", []).append({"from": ckpt.name, "at": _now()})
    return _train(cfg, out, built, train_ex, eval_ex, manifest, device, precision, callbacks, progress, resume_from=ckpt)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _manifest(
    cfg: RunConfig, built: Built, spec: TaskSpec, source: str, n_train: int, n_eval: int,
    device: torch.device, precision: str, policy_sources: dict[str, str],
) -> dict[str, Any]:
    method = get_method(cfg.adapter.method)
    bb = built.backbone
    return {
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
        if not distributed.is_main():
            return
        save_checkpoint(
            out, epoch, model=model, optimizer=trainer.optimizer, scheduler=trainer.scheduler,
            extra={"step": trainer.state.step, "store_next_seq": store.next_seq, "eval_history": trainer.eval_history,
                   "callbacks": {cb.manifest_entry()["name"]: cb.state_dict() for cb in trainer.callbacks
                                 if hasattr(cb, "state_dict") and cb.manifest_entry()}},
        )

    t0 = time.perf_counter()
    try:
        if start_epoch < cfg.train.epochs:
            trainer.fit(start_epoch, on_epoch_done)
    except BaseException:
        trainer.flush()  # keep every row recorded so far
        manifest["status"] = "interrupted"
        store.write_manifest(manifest)
        raise
    folded = _folded_evals(trainer, model)
    if distributed.enabled():  # every replica must end with the same structure (merges/injections broadcast from rank 0)
        distributed.check_agreement("model structure at the end", structure_fingerprint(model))
        manifest["distributed"] = {"world_size": distributed.world(), "backend": "nccl" if device.type == "cuda" else "gloo",
                                   "global_batch_size": cfg.train.batch_size, "structure_agrees": True}
    manifest["status"] = "completed"
    manifest["finished"] = _now()
    manifest["results"] = _results(trainer, built.spec, time.perf_counter() - t0)
    if folded:
        manifest["results"]["folded_eval"] = folded
    store.write_manifest(manifest)
    trainer.close()
    distributed.finish()
    return manifest


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
