"""The run manifest: what a run was (configuration, versions, counts, device) and how it ended (results)."""

from __future__ import annotations

import json

import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

import numpy as np
import torch

from lor2c_probe import __version__
from lor2c_probe.adapters import get_method, markers
from lor2c_probe.config import RunConfig
from lor2c_probe.data.tasks import TaskSpec
from lor2c_probe.models import EMBEDDED_DEFAULT_NAME
from lor2c_probe.record.naming import classify
from lor2c_probe.record.outputs import signature
from lor2c_probe.record.schema import SCHEMA_VERSION
from lor2c_probe.train.build import Built, arch_shape, param_counts
from lor2c_probe.train.loop import Trainer

LOWER_IS_BETTER = ("loss", "perplexity")  # headline metrics where the best epoch is the lowest


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "lor2c-probe": __version__}
    for pkg in ("torch", "transformers", "peft", "numpy", "pandas", "pyarrow", "safetensors"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_manifest(
    cfg: RunConfig, built: Built, spec: TaskSpec, source: str, n_train: int, n_eval: int,
    device: torch.device, precision: str, policy_sources: dict[str, str],
) -> dict[str, Any]:
    method = get_method(cfg.adapter.method)
    bb = built.backbone
    return {
        **signature(),
        "schema_version": SCHEMA_VERSION,
        "status": "running",
        "created": now(),
        "config": cfg.to_dict(),
        "policy": {
            "name": cfg.policy,
            "fields": {
                "dropout": {"value": cfg.adapter.dropout, "source": policy_sources.get("dropout", "user")},
                "weight_decay": {"value": cfg.train.weight_decay, "source": policy_sources.get("weight_decay", "user")},
                "head_lr_scale": {"value": cfg.train.head_lr_scale, "source": policy_sources.get("head_lr_scale", "user")},
            },
        },
        "method": {"name": method.name, "param_marker": markers(method.name)[0], "param_markers": list(markers(method.name)),
                   "scaling": cfg.adapter.scaling,
                   **({"peft_config": peft_config_dict(built.model)} if method.name == "peft" else {})},
        "model": {
            "source": cfg.model or EMBEDDED_DEFAULT_NAME,
            "model_type": bb.model_type,
            "hidden_size": bb.hidden_size,
            "num_layers": bb.num_layers,
            "layers_path": bb.layers_path,
            "targets": adapted_targets(built.model),
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
            **param_counts(built.model, markers(method.name)),
            "adapter_params_formula": None if cfg.adapter.method == "peft"  # a config file has no formula here
            else method.count_params(arch_shape(built.model, bb, cfg.adapter.target_modules), cfg.adapter),
        },
        "device": {"type": device.type, "name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu", "threads": torch.get_num_threads()},
        "precision": precision,
        "seed": cfg.train.seed,
        "versions": versions(),
    }


def adapted_targets(model: torch.nn.Module) -> list[str] | str | None:
    """The modules PEFT adapts in this run (its own defaults, or --target-modules); None when no PEFT tuner is attached."""
    configs = getattr(model, "peft_config", None)
    if not configs:
        return None
    targets = next(iter(configs.values())).target_modules
    return sorted(targets) if isinstance(targets, (set, list, tuple)) else targets


def peft_config_dict(model: torch.nn.Module) -> dict[str, Any] | None:
    """The PEFT config as PEFT serialises it (JSON-able), for --method peft's provenance."""
    configs = getattr(model, "peft_config", None)
    if not configs:
        return None
    d = next(iter(configs.values())).to_dict()
    return json.loads(json.dumps(d, default=lambda o: sorted(o) if isinstance(o, (set, frozenset)) else str(o)))


def structure_fingerprint(model: torch.nn.Module) -> dict[str, Any]:
    """{parameter name: [shape, trainable]} of every adapter or head parameter (what merges and injections change)."""
    return {n: [list(p.shape), p.requires_grad] for n, p in model.named_parameters() if p.requires_grad or classify(n).adapter}


@dataclass
class Elapsed:
    """Seconds of the work a run keeps: wall clock and process CPU time (every thread; a paused process adds wall
    time but no CPU time). A resumed run starts from what its checkpoint had counted, so work redone after an
    interruption counts once; ``session()`` is this process's share alone."""

    wall: float | None = 0.0  # None: unknown (resumed from a checkpoint that did not count), and so stays
    cpu: float | None = 0.0
    _start: tuple[float, float] = field(default_factory=lambda: (time.perf_counter(), time.process_time()), repr=False)

    @classmethod
    def resumed(cls, saved: dict[str, float | None] | None) -> Elapsed:
        """From a checkpoint's ``elapsed``; a checkpoint written before runs counted their time gives unknown totals."""
        saved = saved or {}
        return cls(saved.get("wall"), saved.get("cpu"))

    def session(self) -> dict[str, float]:
        return {"wall": round(time.perf_counter() - self._start[0], 3), "cpu": round(time.process_time() - self._start[1], 3)}

    def total(self) -> dict[str, float | None]:
        s = self.session()
        return {k: None if before is None else round(before + s[k], 3) for k, before in (("wall", self.wall), ("cpu", self.cpu))}


def results(trainer: Trainer, spec: TaskSpec, clock: Elapsed) -> dict[str, Any]:
    hist = trainer.eval_history
    headline = spec.metrics[0]
    pick = min if headline in LOWER_IS_BETTER else max
    best = pick(hist, key=lambda h: h[headline]) if hist else None
    times = trainer.step_times[1:] or trainer.step_times  # the first step includes warm-up costs
    total, session = clock.total(), clock.session()
    return {
        "final_eval": hist[-1] if hist else None,
        "best_eval": best,  # the paper reports the best per-epoch value
        "headline_metric": headline,
        "wall_seconds": total["wall"],  # training + evals, every session's kept work; None when a session's is unknown
        "cpu_seconds": total["cpu"],
        "wall_seconds_this_session": session["wall"],
        "cpu_seconds_this_session": session["cpu"],
        "median_step_seconds_this_session": float(np.median(times)) if times else None,
    }
