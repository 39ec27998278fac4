"""``lor2c-probe report RUN_DIR... --out DIR``: one self-contained HTML report from recorded runs."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from lor2c_probe.errors import UserError
from lor2c_probe.record.outputs import is_aside
from lor2c_probe.report.sections import Options

STATS = ("mean_abs", "l2", "max_abs")
FACTORS = ("all", "A", "B", "W")


def expand(paths: list[Path]) -> list[Path]:
    """A study output folder (runs/<label>/ inside) stands for its runs."""
    out: list[Path] = []
    for p in paths:
        if not (p / "manifest.json").is_file() and (p / "runs").is_dir():
            inner = sorted(q for q in (p / "runs").iterdir() if (q / "manifest.json").is_file() and not is_aside(q))
            if inner:
                out.extend(inner)
                continue
        out.append(p)
    return out


def run_report(runs: list[Path], out: Path | None, *, title: str | None, baseline: str | None, stat: str, factor: str, k: int,
               interactive: bool, overwrite: bool) -> Path:
    from lor2c_probe.report.build import build_report

    if stat not in STATS:
        raise UserError(f"unknown --stat {stat!r}; choose one of: {', '.join(STATS)}")
    if factor not in FACTORS:
        raise UserError(f"unknown --factor {factor!r}; choose one of: {', '.join(FACTORS)}")
    if k <= 0:
        raise UserError(f"k must be a positive integer; got {k}")
    paths = expand(runs)
    if out is None:  # next to what was given: inside a single run or study folder, else beside the runs
        out = (runs[0] if len(runs) == 1 else Path(os.path.commonpath([p.resolve() for p in runs]))) / "report"
    res = build_report(paths, out, title=title, options=Options(baseline=baseline, stat=stat, factor=factor, k=k),
                       interactive=interactive, overwrite=overwrite)
    skipped = {k: v for k, v in res.sections.items() if v is not None}
    for sid, why in skipped.items():
        typer.echo(f"  section {sid} not drawn: {why}")
    typer.echo(f"{len(res.figures)} figures (PNG + SVG) in {out / 'figures'}")
    typer.echo(f"report: {res.html}")
    return res.html
