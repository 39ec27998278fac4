"""Adapter parameter counts of several methods on one architecture shape, by formula (no weights needed)."""

from __future__ import annotations

from lor2c_probe.adapters import get_method, spec
from lor2c_probe.adapters.base import ARCH_SHAPES
from lor2c_probe.config import AdapterConfig
from lor2c_probe.errors import ConfigError


def count_table(arch: str, methods: list[str], rank: int, merges: int = 0) -> dict[str, int]:
    """Adapter parameters per method; with ``merges`` M, merge-capable methods lose 2rd per merge
    (an injection is parameter-neutral, so J does not change the count)."""
    if arch not in ARCH_SHAPES:
        raise ConfigError(f"unknown --arch {arch!r}; choose one of: {', '.join(ARCH_SHAPES)}")
    shape = ARCH_SHAPES[arch]
    if merges < 0 or merges > shape.num_layers - 1:
        raise ConfigError(f"--merges must be between 0 and {shape.num_layers - 1} for {arch}; got {merges}")
    out = {}
    for m in methods:
        cfg = AdapterConfig(method=m, rank=rank)
        method = get_method(m)
        n = method.count_params(shape, cfg)
        if merges and spec(m).can_merge:
            n -= merges * method.merge_saving(shape, cfg)
        out[m] = n
    return out
