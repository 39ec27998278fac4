"""Adapter parameter counts of several methods on one architecture, by formula over its shapes (no weights needed).

The shapes come from the architecture's config.json (a bundled name, a path or a cached hub id), instantiated on
PyTorch's meta device: no memory, no download. Formulas are checked against instantiated models in the tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lor2c_probe.adapters import get_method, spec
from lor2c_probe.config import AdapterConfig
from lor2c_probe.errors import ConfigError

if TYPE_CHECKING:
    from lor2c_probe.adapters.base import ArchShape


def shape_for(arch: str, target_modules: tuple[str, ...] | None = None, layers_path: str | None = None) -> ArchShape:
    """The ArchShape of ``arch`` (a bundled name, a config.json, a model folder or a cached hub id)."""
    from lor2c_probe.adapters.shapes import shape_of
    from lor2c_probe.models import backbone_of
    from lor2c_probe.planning import arch_config, meta_model

    config = arch_config(arch)
    model, _ = meta_model(config, layers_path)
    bb = backbone_of(model, targets=target_modules, layers_path=layers_path)
    return shape_of(model, bb, arch, target_modules)


def count_table(arch: str, methods: list[str], rank: int, merges: int = 0, target_modules: tuple[str, ...] | None = None,
                layers_path: str | None = None) -> dict[str, int]:
    """Adapter parameters per method; with ``merges`` M, merge-capable methods lose 2rd per merge
    (an injection is parameter-neutral, so J does not change the count)."""
    shape = shape_for(arch, target_modules, layers_path)
    if merges < 0 or merges > shape.num_layers - 1:
        raise ConfigError(f"--merges must be between 0 and {shape.num_layers - 1} for {arch}; got {merges}")
    out = {}
    for m in methods:
        if m == "peft" or (target_modules and not (spec(m).peft or spec(m).dormant_lora)):
            continue  # a --peft-config file has no formula here; --target-modules does not apply to the LoR2C family
        cfg = AdapterConfig(method=m, rank=rank, target_modules=target_modules)
        method = get_method(m)
        n = method.count_params(shape, cfg)
        if merges and spec(m).can_merge:
            n -= merges * method.merge_saving(shape, cfg)
        out[m] = n
    return out
