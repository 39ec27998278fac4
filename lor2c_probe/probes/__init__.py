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
    """What a probe's ``build`` gets: where the adapters are and how often to read them. Built from a run's
    configuration by ``train.build.make_probes`` and from its arguments by ``lor2c_probe.Recorder``."""

    markers: tuple[str, ...]  # adapter parameters' names contain one of these
    layers_path: str | None  # the block stack (None: the probe finds it, or places by names only)
    scaling: float = 1.0  # s = alpha / r of the LoR2C-family modules and ResLoRA
    lora_scaling: float = 1.0  # s of lor2c-probe's injected LoRA modules (r/2 when injected)
    every: int = 1  # optimizer steps between recorded steps
    bottom_every: int = 10  # activations: dL/dh_0 on every N-th recorded step
    spectra_every: int = 0  # spectra: also every N steps (0: epoch ends only)
    probe_data: Encoded | None = None  # spectra: the fixed batch whose features are measured (None: weights only)
    probe_indices: list[int] | None = None  # where probe_data came from in the training set (manifest)
    ks: tuple[int, ...] = (1, 2, 4)  # SFS_k
    chunk: int = 16  # examples per forward of an extra no-grad pass (at most a training micro-batch)

    def schedule(self) -> Any:
        from lor2c_probe.probes.schedule import Every

        return Every(self.every)


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
