"""``lor2c-probe bench``: the performance goals measured on this machine, written to one JSON file."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from lor2c_probe.errors import UserError


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _ints(name: str, text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in _csv(text))
    except ValueError:
        raise UserError(f"--{name} must be a comma list of integers; got {text!r}") from None


def bench_config(options: dict[str, Any]):
    """A validated BenchConfig: the smoke preset or the defaults, with every given option applied."""
    from lor2c_probe.bench.config import BenchConfig

    given: dict[str, Any] = {}
    for key in ("shapes", "methods", "peer_parts"):
        if options.get(key) is not None:
            given[key] = _csv(options[key])
    for key in ("svd_dims", "epoch_steps"):
        if options.get(key) is not None:
            given[key] = _ints(key.replace("_", "-"), options[key])
    for key in ("device", "precision", "rank", "batch_size", "seq_len", "reps", "steps", "warmup", "memory_reps"):
        if options.get(key) is not None:
            given[key] = options[key]
    for flag in ("memory_only", "durability", "update_spectra", "probe_sets", "peers"):
        if options.get(flag):
            given[flag] = True
    base = BenchConfig.smoke_preset() if options.get("smoke") else BenchConfig()
    return replace(base, **given)


def _ours(path: Path) -> bool:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("benchmark") == "lor2c-probe bench"


def run_bench(options: dict[str, Any]) -> Path:
    from lor2c_probe.bench.suite import format_goals, resolve, run_suite
    from lor2c_probe.record.store import write_json_atomic

    out: Path = options["out"]
    cfg = bench_config(options)
    if out.suffix != ".json":
        raise UserError(f"--out must name a .json file; got {out}")
    if out.exists() and not options.get("overwrite"):
        raise UserError(f"{out} already exists; pass --overwrite to replace it")
    if out.exists() and out.is_dir():
        raise UserError(f"--out {out} is a folder; name a .json file")
    if out.exists() and not _ours(out):
        raise UserError(f"refusing to --overwrite {out}: it is not a benchmark file that lor2c-probe wrote")
    resolve(cfg)  # no CUDA, or mixed precision on the CPU: fail before minutes of measuring
    result = run_suite(cfg, log=typer.echo)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, json.loads(json.dumps(result)))
    typer.echo(format_goals(result["goals"]))
    if cfg.smoke:
        typer.echo("smoke mode: the suite ran; timings on the tiny shape are not judged against the goals")
    typer.echo(f"{result['seconds']:.0f} s; wrote {out}")
    return out
