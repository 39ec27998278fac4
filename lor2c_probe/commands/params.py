"""``lor2c-probe params``: adapter parameter counts from bundled shapes."""

from __future__ import annotations

import typer

from lor2c_probe.adapters import METHODS, get_method
from lor2c_probe.adapters.base import ARCH_SHAPES
from lor2c_probe.config import AdapterConfig
from lor2c_probe.errors import UserError


def count_table(arch: str, methods: list[str], rank: int, merges: int = 0) -> dict[str, int]:
    """Adapter parameters per method; with ``merges`` M, merge-capable methods lose 2rd per merge
    (an injection is parameter-neutral, so J does not change the count)."""
    if arch not in ARCH_SHAPES:
        raise UserError(f"unknown --arch {arch!r}; choose one of: {', '.join(ARCH_SHAPES)}")
    shape = ARCH_SHAPES[arch]
    if merges < 0 or merges > shape.num_layers - 1:
        raise UserError(f"--merges must be between 0 and {shape.num_layers - 1} for {arch}; got {merges}")
    out = {}
    for m in methods:
        cfg = AdapterConfig(method=m, rank=rank)
        method = get_method(m)
        n = method.count_params(shape, cfg)
        if merges and getattr(method, "can_merge", False):
            per_module = n // shape.num_layers if m != "im-share-lor2c" else rank * shape.hidden_size  # share: one B per module
            n -= merges * per_module
        out[m] = n
    return out


def run_params(arch: str, method: str | None, rank: int, merges: int = 0) -> None:
    methods = [method] if method else list(METHODS)
    for m in methods:
        if m not in METHODS:
            raise UserError(f"unknown --method {m!r}; choose one of: {', '.join(METHODS)}")
    shape = ARCH_SHAPES.get(arch)
    counts = count_table(arch, methods, rank, merges)
    assert shape is not None
    typer.echo(f"{arch}: d={shape.hidden_size}, layers={shape.num_layers}, rank={rank}" + (f", merges={merges}" if merges else ""))
    for m, n in counts.items():
        typer.echo(f"  {m:<20} {n:>14,}")
