"""``lor2c-probe params``: adapter parameter counts from bundled shapes."""

from __future__ import annotations

import typer

from lor2c_probe.adapters import METHODS, get_method
from lor2c_probe.adapters.base import ARCH_SHAPES
from lor2c_probe.config import AdapterConfig
from lor2c_probe.errors import UserError


def count_table(arch: str, methods: list[str], rank: int) -> dict[str, int]:
    if arch not in ARCH_SHAPES:
        raise UserError(f"unknown --arch {arch!r}; choose one of: {', '.join(ARCH_SHAPES)}")
    shape = ARCH_SHAPES[arch]
    out = {}
    for m in methods:
        cfg = AdapterConfig(method=m, rank=rank)
        out[m] = get_method(m).count_params(shape, cfg)
    return out


def run_params(arch: str, method: str | None, rank: int) -> None:
    methods = [method] if method else list(METHODS)
    for m in methods:
        if m not in METHODS:
            raise UserError(f"unknown --method {m!r}; choose one of: {', '.join(METHODS)}")
    shape = ARCH_SHAPES.get(arch)
    counts = count_table(arch, methods, rank)
    assert shape is not None
    typer.echo(f"{arch}: d={shape.hidden_size}, layers={shape.num_layers}, rank={rank}")
    for m, n in counts.items():
        typer.echo(f"  {m:<20} {n:>14,}")
