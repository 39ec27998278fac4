"""``lor2c-probe run analyses/<study>.toml``: train every run of a study, then write its report.

Output folder (default ``runs/<study name>``): ``runs/<label>[-s<seed>]/`` (recorded runs), ``report/``
(report.html, figures/, data/) and ``study.json`` (the resolved study, overrides, per-run wall times).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer

from lor2c_probe.commands.common import prepare_out
from lor2c_probe.errors import UserError
from lor2c_probe.study import load_study, resolve_path

MARKER = "study.json"


def run_study(path: Path, overrides: dict[str, Any], *, out: Path | None, overwrite: bool, resume: bool, quiet: bool,
              interactive: bool, seeds: str | None = None) -> Path:
    from lor2c_probe.commands.train import config_from_options
    from lor2c_probe.record.store import read_manifest, write_json_atomic
    from lor2c_probe.report.build import build_report
    from lor2c_probe.report.sections import Options
    from lor2c_probe.train.session import run_training

    seed_list = None
    if seeds is not None:
        try:
            seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise UserError(f"--seeds must be a comma list of integers; got {seeds!r}") from None
    study = load_study(resolve_path(path), overrides, seeds=seed_list)
    out = out or Path("runs") / study.name
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    if resume:
        if out.exists() and not (out / MARKER).is_file() and any(out.iterdir()):
            raise UserError(f"cannot --resume in {out}: it does not hold a study's outputs")
    else:
        prepare_out(out, overwrite, MARKER)
    planned = []
    for label, seed, opts in study.planned():
        cfg, sources = config_from_options(opts)
        planned.append((label, seed, cfg, sources, out / "runs" / study.run_dir_name(label, seed)))
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    walls: dict[str, float] = {}
    kept: list[str] = []
    start = time.perf_counter()
    try:
        _train_all(planned, study.name, resume, quiet, walls, kept, read_manifest, run_training)
    except UserError:
        # e.g. a model or data set that is not available: fails before the first run writes anything
        if created and not any((out / "runs").glob("*/manifest.json")):
            shutil.rmtree(out, ignore_errors=True)
        raise
    train_wall = time.perf_counter() - start
    t0 = time.perf_counter()
    groups = {run_dir: label for label, _, _, _, run_dir in planned}
    intro = " ".join(x for x in (f"Reproduces: {study.paper}." if study.paper else "", f"Claim under test: {study.claim}" if study.claim else "") if x)
    res = build_report([p for *_, p in planned], out / "report", title=study.title, intro=intro or None,
                       options=Options(baseline=study.baseline), interactive=interactive, groups=groups, overwrite=True)
    report_wall = time.perf_counter() - t0
    results, seconds = {}, {}
    for *_, run_dir in planned:
        r = read_manifest(run_dir).get("results") or {}
        results[run_dir.name] = {"final_eval": r.get("final_eval"), "headline_metric": r.get("headline_metric"),
                                 "folded_eval": r.get("folded_eval")}
        seconds[run_dir.name] = r.get("wall_seconds_this_session")
    meta = {"study": {k: v for k, v in asdict(study).items() if k != "overrides"}, "overrides": study.overrides,
            "run_train_seconds": seconds,  # per run, from its manifest: training + per-epoch evals, kept runs included
            "run_wall_seconds_this_invocation": walls, "runs_kept": kept, "train_wall_seconds_this_invocation": round(train_wall, 1),
            "report_wall_seconds": round(report_wall, 1),
            "results": results, "report": str(res.html), "sections": {k: v or "drawn" for k, v in res.sections.items()}}
    write_json_atomic(out / MARKER, meta)
    for a in study.analyses:
        if res.sections.get(a):
            typer.echo(f"warning: analysis {a!r} of this study was not drawn: {res.sections[a]}", err=True)
    typer.echo(f"study {study.name}: {len(planned)} run(s), training {train_wall:.0f} s, report {report_wall:.1f} s")
    typer.echo(f"report: {res.html}")
    return res.html


def _completed_same(run_dir: Path, cfg: Any, read_manifest: Any) -> bool:
    if not (run_dir / "manifest.json").is_file():
        return False
    from lor2c_probe.config import RunConfig

    m = read_manifest(run_dir)
    try:  # through the dataclass, so a field added since (with its default) does not count as a change
        recorded = RunConfig.from_dict(m.get("config", {}))
    except (TypeError, ValueError, KeyError):
        return False
    return m.get("status") == "completed" and recorded == cfg


def _train_all(planned: list[Any], name: str, resume: bool, quiet: bool, walls: dict[str, float], kept: list[str],
               read_manifest: Any, run_training: Any) -> None:
    for _, seed, cfg, sources, run_dir in planned:
        if resume and _completed_same(run_dir, cfg, read_manifest):
            kept.append(run_dir.name)
            if not quiet:
                typer.echo(f"{run_dir.name}: completed earlier with the same configuration; kept")
            continue
        if not quiet:
            typer.echo(f"[{name}] training {run_dir.name} ({cfg.adapter.method}, seed {seed}) ...")
        t0 = time.perf_counter()
        run_training(cfg, run_dir, overwrite=True, policy_sources=sources, progress=not quiet)
        walls[run_dir.name] = round(time.perf_counter() - t0, 1)  # loading + training + eval
