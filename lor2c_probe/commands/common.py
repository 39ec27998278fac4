"""What the analysis commands (gradients, spectrum, sfs) share: output folders, quick defaults, training runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from lor2c_probe.adapters import METHODS
from lor2c_probe.errors import UserError

# Defaults that make a comparison on the embedded default take minutes on 2 CPU cores (3 x 100 steps per method).
QUICK_DEFAULTS = {"epochs": 3, "steps_per_epoch": 100, "batch_size": 16, "lr": 1e-3, "max_eval_examples": 500}


@dataclass(frozen=True)
class RunRef:
    label: str
    path: Path
    manifest: dict[str, Any]


def recorded_runs(paths: list[Path], table: str, probe: str) -> list[RunRef]:
    """Run directories to analyse, each checked for a manifest and a non-empty ``table``; labelled by method
    name when those are unique, else by folder name."""
    from lor2c_probe.record.store import read_manifest, shard_paths

    refs = []
    for p in paths:
        if not (p / "manifest.json").is_file():
            raise UserError(f"{p}: not a lor2c-probe run directory (no manifest.json)")
        if not shard_paths(p, table):
            raise UserError(f"run {p} has no `{table}` table; record it with `lor2c-probe train --probes {probe}`")
        refs.append(RunRef(p.name, p, read_manifest(p)))
    names = [r.manifest.get("method", {}).get("name", r.label) for r in refs]
    if len(set(names)) == len(names):
        refs = [RunRef(n, r.path, r.manifest) for n, r in zip(names, refs)]
    return refs


def reject_training_options(options: dict[str, Any]) -> None:
    """Analysing recorded runs trains nothing: any training option given is a mistake worth saying."""
    given = sorted(k for k, v in options.items() if v is not None)
    if given:
        raise UserError(f"analysing recorded runs trains nothing; drop {', '.join('--' + k.replace('_', '-') for k in given)}")


def plan_methods(methods: list[str], options: dict[str, Any]) -> list[tuple[str, Any, dict[str, str]]]:
    """(method, RunConfig, policy sources) for each method with the same options: validated before anything is written."""
    from lor2c_probe.commands.train import config_from_options

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r} in --methods; choose from: {', '.join(METHODS)}")
    if not methods or len(set(methods)) != len(methods):
        raise UserError("--methods needs distinct method names")
    opts = {**QUICK_DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    return [(m, *config_from_options({**opts, "method": m})) for m in methods]


def train_planned(planned: list[tuple[str, Any, dict[str, str]]], out: Path, *, quiet: bool) -> list[RunRef]:
    """Train each planned method into ``out/runs/<method>`` (same seed, data order and schedule)."""
    from lor2c_probe.train.session import run_training

    refs = []
    for m, cfg, sources in planned:
        if not quiet:
            typer.echo(f"training {m} (seed {cfg.train.seed}, {cfg.train.epochs} epochs) ...")
        refs.append(RunRef(m, out / "runs" / m, run_training(cfg, out / "runs" / m, policy_sources=sources, progress=not quiet)))
    return refs
