"""What the analysis commands (gradients, spectrum, sfs) share: output folders, quick defaults, training runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from lor2c_probe.adapters import METHODS
from lor2c_probe.errors import UserError
from lor2c_probe.record.runs import RecordedRun

def default_out(name: str) -> Path:
    """``runs/<name>-<local time>``: where a command writes when no --out is given."""
    from datetime import datetime

    return Path("runs") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def reject_training_options(options: dict[str, Any]) -> None:
    """Analysing recorded runs trains nothing: any training option given is a mistake worth saying."""
    from lor2c_probe.options import given

    named = sorted(given(options))
    if named:
        raise UserError(f"analysing recorded runs trains nothing; drop {', '.join('--' + k.replace('_', '-') for k in named)}")


def plan_methods(methods: list[str], options: dict[str, Any]) -> list[tuple[str, Any, dict[str, str]]]:
    """(method, RunConfig, policy sources) for each method with the same options: validated before anything is written."""
    from lor2c_probe.options import QUICK_DEFAULTS, config_from_options

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r} in --methods; choose from: {', '.join(METHODS)}")
    if not methods or len(set(methods)) != len(methods):
        raise UserError("--methods needs distinct method names")
    opts = {**QUICK_DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    return [(m, *config_from_options({**opts, "method": m})) for m in methods]


def train_planned(planned: list[tuple[str, Any, dict[str, str]]], out: Path, *, quiet: bool) -> list[RecordedRun]:
    """Train each planned method into ``out/runs/<method>`` (same seed, data order and schedule)."""
    from lor2c_probe.train.session import run_training

    refs = []
    for m, cfg, sources in planned:
        if not quiet:
            typer.echo(f"training {m} (seed {cfg.train.seed}, {cfg.train.epochs} epochs) ...")
        refs.append(RecordedRun(m, out / "runs" / m, run_training(cfg, out / "runs" / m, policy_sources=sources, progress=not quiet)))
    return refs
