"""What the analysis commands (gradients, spectrum, sfs) share: output folders, quick defaults, training runs."""

from __future__ import annotations

from dataclasses import dataclass
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


def parse_seeds(text: str | None) -> list[int] | None:
    """``--seeds 17,18,19`` -> [17, 18, 19] (distinct, non-negative); None when not given."""
    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds must be a comma list of integers; got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds must be distinct non-negative integers; got {text!r}")
    return seeds


@dataclass(frozen=True)
class PlannedRun:
    label: str  # folder name under runs/: the method, or <method>-s<seed> with several seeds
    group: str  # the method: runs of one group differ only by seed
    cfg: Any  # RunConfig
    sources: dict[str, str]


def plan_methods(methods: list[str], options: dict[str, Any], seeds: list[int] | None = None) -> list[PlannedRun]:
    """Every method (x every seed of ``seeds``, which replaces --seed) with the same options, validated before anything
    is written. Seed-major, so an interrupted command holds complete seeds."""
    from lor2c_probe.options import QUICK_DEFAULTS, config_from_options

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r} in --methods; choose from: {', '.join(METHODS)}")
    if not methods or len(set(methods)) != len(methods):
        raise UserError("--methods needs distinct method names")
    if seeds is not None and options.get("seed") is not None:
        raise UserError("give --seed or --seeds, not both")
    opts = {**QUICK_DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    plan = []
    for seed in seeds or [None]:
        for m in methods:
            cfg, sources = config_from_options({**opts, "method": m, **({"seed": seed} if seed is not None else {})})
            plan.append(PlannedRun(m if seeds is None or len(seeds) == 1 else f"{m}-s{seed}", m, cfg, sources))
    return plan


def train_planned(planned: list[PlannedRun], out: Path, *, quiet: bool) -> list[RecordedRun]:
    """Train each planned run into ``out/runs/<label>`` (same data order and schedule; seeds as planned)."""
    from lor2c_probe.train.session import run_training

    refs = []
    for p in planned:
        if not quiet:
            typer.echo(f"training {p.label} (seed {p.cfg.train.seed}, {p.cfg.train.epochs} epochs) ...")
        path = out / "runs" / p.label
        refs.append(RecordedRun(p.label, path, run_training(p.cfg, path, policy_sources=p.sources, progress=not quiet), p.group))
    return refs
