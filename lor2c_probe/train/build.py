"""Building a run: the device, the seeded model with its adapters, the probes and the structural callback.

Everything here can fail on user input, so the session calls it before the run directory is touched.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lor2c_probe.adapters import get_method, spec
from lor2c_probe.adapters.base import ArchShape
from lor2c_probe.config import ConfigError, RunConfig, TrainConfig
from lor2c_probe.data.tasks import TaskSpec
from lor2c_probe.errors import UserError
from lor2c_probe.models import Backbone, load_model
from lor2c_probe.record.naming import is_head
from lor2c_probe.train.batches import Encoded
from lor2c_probe.train.hooks import TrainerCallback


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
                                            dtype=cfg.train.base_dtype, layers_path=cfg.layers_path, targets=cfg.adapter.target_modules)
    model = get_method(cfg.adapter.method).attach(model, backbone, cfg.adapter)
    return Built(model, tokenizer, backbone, spec)


def method_callbacks(cfg: RunConfig, model: torch.nn.Module, total_steps: int) -> list[TrainerCallback]:
    """Callbacks a method needs inside the loop (AdaLoRA's rank allocation); most need none."""
    method = get_method(cfg.adapter.method)
    make = getattr(method, "callbacks", None)
    return list(make(model, total_steps)) if make is not None else []


def arch_shape(model: torch.nn.Module, bb: Backbone, user_targets: tuple[str, ...] | None = None) -> ArchShape:
    """The sizes parameter counts depend on: d, the blocks, and the layers each PEFT method family adapts in a block,
    read from a model (plain or PEFT-wrapped) through PEFT's own target matching."""
    from lor2c_probe.adapters.shapes import shape_of

    return shape_of(model.base_model.model if hasattr(model, "peft_config") else model, bb, "run", user_targets)


def lora_scaling(cfg: RunConfig) -> float:
    """PEFT's alpha / r of the LoRA modules: the method's rank, or r/2 for an injected LoRA."""
    return cfg.adapter.alpha / (cfg.adapter.rank // 2 if spec(cfg.adapter.method).can_inject else cfg.adapter.rank)


def probe_chunk(train: TrainConfig) -> int:
    """Examples per forward of a spectral reading: at most a training micro-batch (so a reading's no-grad
    forward never holds more activations than a step's forward keeps for backward) and the eval batch."""
    from lor2c_probe.probes.spectral import PROBE_CHUNK

    micro = -(-train.batch_size // train.grad_accum)
    return max(1, min(PROBE_CHUNK, train.eval_batch_size, micro))


def make_probes(cfg: RunConfig, backbone: Backbone, train: Encoded | None = None) -> list[TrainerCallback]:
    """The probes ``cfg.probes`` names, built by their registry entries (lor2c_probe.probes.PROBES)."""
    from lor2c_probe.adapters import markers
    from lor2c_probe.probes import ProbeContext, build_probes
    from lor2c_probe.probes.spectral import probe_batch

    data, idx = probe_batch(cfg, train)
    p = cfg.probes
    ctx = ProbeContext(markers(cfg.adapter.method), backbone.layers_path, cfg.adapter.scaling, lora_scaling(cfg), every=p.every,
                       bottom_every=p.bottom_every, spectra_every=p.spectra_every, probe_data=data, probe_indices=idx,
                       ks=(1, 2, 4, cfg.adapter.nominal_rank()), chunk=probe_chunk(cfg.train))
    return build_probes(p.names, ctx)


def make_structure(cfg: RunConfig, backbone: Backbone, n_train: int, train: Encoded | None = None) -> list[TrainerCallback]:
    """The StructureCallback when the run merges or injects; validates M, J and the schedule (fails early)."""
    from lor2c_probe.probes.spectral import SpectralProbe, probe_batch
    from lor2c_probe.structure.callback import StructureCallback
    from lor2c_probe.structure.schedule import check_counts, plan_events
    from lor2c_probe.train.loop import Plan

    st = cfg.structure
    if not (st.merges or st.injections):
        return []
    check_counts(st.merges, st.injections, backbone.num_layers)
    plan = Plan.make(n_train, cfg.train)
    events = plan_events(st.schedule, merges=st.merges, injections=st.injections, epochs=cfg.train.epochs, total_steps=plan.total_steps)
    probe_data, _ = probe_batch(cfg, train)
    scorer = SpectralProbe(scaling=cfg.adapter.scaling, lora_scaling=lora_scaling(cfg), layers_path=backbone.layers_path,
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
