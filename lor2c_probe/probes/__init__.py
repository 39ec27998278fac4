"""Probes: callbacks that measure inside training and hand tidy rows to the run store.

Probes select parameters by name (``record.naming.classify``) and never import adapters. The registry below is
the list of probes: a new probe is its module (with a ``build(ctx)`` function) plus one ``ProbeSpec`` line, and
its table in ``record/schema.py``. ``--probes`` accepts exactly these names. Torch-free: built lazily.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lor2c_probe.config import RunConfig
    from lor2c_probe.models import Backbone
    from lor2c_probe.train.batches import Encoded
    from lor2c_probe.train.hooks import TrainerCallback


@dataclass(frozen=True)
class ProbeSpec:
    name: str  # as given to --probes
    build: str  # "module:function": function(ctx: ProbeContext) -> TrainerCallback
    tables: tuple[str, ...]  # what it writes (record/schema.py)
    covers: frozenset[str] | None = None  # classify kinds whose modules it must each record; None: per block, any method


@dataclass(frozen=True)
class ProbeContext:
    """What a probe's ``build`` gets: the run's configuration and what the session has built for it."""

    cfg: RunConfig
    backbone: Backbone
    train: Encoded | None  # the encoded training set (the spectral probe draws its batch from it)
    scaling: float  # s = alpha / r of the LoR2C-family modules and ResLoRA
    lora_scaling: float  # s of the LoRA modules (r/2 for an injected LoRA)
    chunk: int  # examples per forward of an extra no-grad pass (at most a training micro-batch)

    def schedule(self) -> Any:
        from lor2c_probe.probes.schedule import Every

        return Every(self.cfg.probes.every)


_ADAPTERS = frozenset({"lor2c", "lor2c-shared", "lora", "reslora", "vera", "ia3", "loha", "lokr"})
PROBES: dict[str, ProbeSpec] = {s.name: s for s in (
    ProbeSpec("grads", "lor2c_probe.probes.gradients:build", ("grads",), _ADAPTERS),
    ProbeSpec("activations", "lor2c_probe.probes.activations:build", ("activation_grads",)),
    ProbeSpec("spectra", "lor2c_probe.probes.spectral:build", ("spectra", "sfs"), _ADAPTERS),
    ProbeSpec("histograms", "lor2c_probe.probes.histograms:build", ("histograms", "updates"), _ADAPTERS),
)}


def register(spec: ProbeSpec) -> None:
    """Add a probe (a plugin's, a test's); ``--probes`` accepts its name from then on."""
    PROBES[spec.name] = spec


def build_probes(names: tuple[str, ...], ctx: ProbeContext) -> list[TrainerCallback]:
    """The callbacks of the named probes, in registry order."""
    out = []
    for spec in PROBES.values():
        if spec.name in names:
            module, fn = spec.build.split(":")
            out.append(getattr(importlib.import_module(module), fn)(ctx))
    return out
