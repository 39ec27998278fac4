"""``lor2c-probe run analyses/<study>.toml``: train every run of a study, then write its report.

Output folder (default ``runs/<study name>``): ``runs/<label>[-s<seed>]/`` (recorded runs), ``report/``
(report.html, figures/, data/) and ``study.json``: the resolved study, overrides, each run's state and wall
time. The marker is written before the first run and updated after each, so an interrupted study can be
``--resume``d: completed runs are kept, interrupted ones continue from their checkpoints, and a run whose
configuration changed is refused (or, with ``--overwrite``, moved aside and retrained). ``--only lora,lor2c`` trains
just those labels (every seed) and leaves the others for a later sitting; the report then covers the study's runs
that have finished, and the marker's status says the study is partial.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import typer

from lor2c_probe.errors import RunDiverged, RunStopped, UserError
from lor2c_probe.study import Study, load_study, resolve_path

MARKER = "study.json"


@dataclass(frozen=True)
class Planned:
    label: str
    seed: int
    cfg: Any  # RunConfig
    sources: dict[str, str]
    run_dir: Path


def run_study(path: Path, overrides: dict[str, Any], *, out: Path | None, overwrite: bool, resume: bool, quiet: bool,
              interactive: bool, seeds: str | None = None, only: str | None = None) -> Path:
    from lor2c_probe.record.outputs import check_output, only_transient, writing

    study, out, planned = plan(path, overrides, out=out, seeds=seeds)
    chosen = parse_only(only, study)
    rep = check_study_out(out, study) if resume else check_output(out, "study", overwrite, resume_hint=" or --resume to continue it")
    # a changed configuration is refused up front; a run left out by --only is only looked at to see whether it finished
    fates = {p.run_dir: (_state(p, overwrite) if p.label in chosen else _finished(p)) if resume else "train" if p.label in chosen else "skip"
             for p in planned}
    missing = [p.run_dir.name for p in planned if p.label == study.baseline and fates[p.run_dir] == "skip"]
    if missing:
        raise UserError(f"--only leaves out the baseline {study.baseline!r}, and its run {missing[0]} has not finished: the report's ratios "
                        f"would have no denominator; add {study.baseline} to --only")
    preflight([p for p in planned if fates[p.run_dir] not in ("keep", "keep-diverged", "skip")], quiet=quiet)
    created = not out.exists() or only_transient(out)
    with writing(out, rep, "study output", fresh=not resume):
        try:
            return _run(study, planned, out, {}, resume=resume, overwrite=overwrite, quiet=quiet, interactive=interactive, only=chosen)
        except UserError:
            # e.g. a model or data set that is not available: the first run failed before writing anything. Under the
            # lock, the marker goes, and `writing` removes the folder it created once nothing else is left in it.
            if created and not any((out / "runs").glob("*/manifest.json")):
                (out / MARKER).unlink(missing_ok=True)
                shutil.rmtree(out / "runs", ignore_errors=True)
            raise


def plan(path: Path, overrides: dict[str, Any], *, out: Path | None, seeds: str | None) -> tuple[Study, Path, list[Planned]]:
    """The study with its overrides and seeds, its output folder, and every planned run (seed-major)."""
    from lor2c_probe.commands.common import parse_seeds
    from lor2c_probe.options import config_from_options

    study = load_study(resolve_path(path), overrides, seeds=parse_seeds(seeds))
    out = out or Path("runs") / study.name
    planned = []
    for label, seed, opts in study.planned():
        cfg, sources = config_from_options(opts)
        planned.append(Planned(label, seed, cfg, sources, out / "runs" / study.run_dir_name(label, seed)))
    return study, out, planned


def parse_only(text: str | None, study: Study) -> set[str]:
    """``--only lora,lor2c`` -> the run labels to train (all of the study's when not given)."""
    labels = [r.label for r in study.runs]
    if text is None:
        return set(labels)
    chosen = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in chosen if x not in labels]
    if not chosen or unknown:
        got = f"no run labelled {unknown[0]!r}" if unknown else f"no label in {text!r}"
        raise UserError(f"--only: {got}; study {study.name} has: {', '.join(labels)}")
    return set(chosen)


def preflight(planned: list[Planned], *, quiet: bool = True) -> None:
    """Build each distinct configuration of the runs still to train once (seeds aside) before any of them trains, so a
    run that cannot start (no LoRA targets for the model, a target that is not there, a merge schedule that does not
    fit) is refused up front rather than after hours of the runs before it. Writes nothing."""
    import json
    from dataclasses import replace

    from lor2c_probe.data.load import load_task
    from lor2c_probe.train.build import build_model, make_structure

    seen: set[str] = set()
    for p in planned:
        key = json.dumps(replace(p.cfg, train=replace(p.cfg.train, seed=0)).to_dict(), sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        if not quiet:
            typer.echo(f"checking that {p.run_dir.name} can start ...")
        try:
            train_ex, _, spec, _ = load_task(p.cfg.data)
            built = build_model(p.cfg, spec)
            make_structure(p.cfg, built.backbone, len(train_ex))
        except UserError as e:
            err = UserError(f"run {p.run_dir.name} cannot start, so nothing was trained: {e}")
            err.exit_code = e.exit_code
            raise err from None
        del built


def check_study_out(out: Path, study: Study, action: str = "--resume") -> None:
    """``out`` is empty or holds this study's outputs (its marker, written by lor2c-probe); else a UserError."""
    from lor2c_probe.record.outputs import KINDS, is_ours, only_transient

    if out.exists() and not only_transient(out):
        marker = out / MARKER
        if not marker.is_file() or not is_ours(marker, KINDS["study"]):
            raise UserError(f"cannot {action} in {out}: it does not hold a study's outputs (no {MARKER} written by lor2c-probe)")
        from lor2c_probe.record.atomic import read_json

        name = (read_json(marker, "study marker").get("study") or {}).get("name")
        if name != study.name:
            raise UserError(f"cannot {action} in {out}: it holds study {name!r}, not {study.name!r}")
    return None


def _state(p: Planned, overwrite: bool) -> str:
    """What to do with a planned run's folder: train, keep, resume, restart (moved aside) or keep-diverged."""
    from lor2c_probe.config import RunConfig
    from lor2c_probe.record.lock import holder
    from lor2c_probe.record.store import read_manifest
    from lor2c_probe.train.checkpoint import newest_intact

    if not (p.run_dir / "manifest.json").is_file():
        return "train" if not p.run_dir.exists() or not any(p.run_dir.iterdir()) else "restart"
    m = read_manifest(p.run_dir)
    try:  # through the dataclass, so a field added since (with its default) does not count as a change
        recorded = RunConfig.from_dict(m.get("config", {}))
    except (TypeError, ValueError, KeyError):
        recorded = None
    if recorded != p.cfg:
        if not overwrite:
            diff = config_diff(m.get("config", {}), p.cfg.to_dict())
            raise UserError(f"run {p.run_dir} was trained with another configuration ({diff}); pass --overwrite to move it aside "
                            "and retrain it, or use another --out")
        return "restart"
    busy = holder(p.run_dir)
    if busy:
        raise UserError(f"run {p.run_dir} is being trained by another process (pid {busy.get('pid')} on {busy.get('host')}); "
                        "wait for it to finish")
    status = m.get("status")
    if status == "completed":
        return "keep"
    if status == "diverged":
        return "keep-diverged"
    return "resume" if newest_intact(p.run_dir).path is not None else "restart"


def _finished(p: Planned) -> str:
    """"keep" / "keep-diverged" for a run that finished with this configuration, else "skip" (never raises)."""
    try:
        what = _state(p, overwrite=False)
    except UserError:
        return "skip"
    return what if what in ("keep", "keep-diverged") else "skip"


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The first field that differs (fields added since, absent from ``old``, do not count). ``old`` comes from JSON,
    so a tuple of ``new`` is compared as the list JSON made of it."""
    from lor2c_probe.config import flatten

    a, b = flatten(old), flatten(new)
    changed = [k for k in sorted(b) if k in a and _json(a[k]) != _json(b[k])]
    return f"{changed[0]}: {a[changed[0]]!r} then, {b[changed[0]]!r} now" if changed else "a field added since"


def _json(v: Any) -> Any:
    return [_json(x) for x in v] if isinstance(v, (list, tuple)) else v


def _run(study: Study, planned: list[Planned], out: Path, marker: dict[str, Any], *, resume: bool, overwrite: bool, quiet: bool,
         interactive: bool, only: set[str] | None = None) -> Path:
    from lor2c_probe.notices import notice
    from lor2c_probe.record.atomic import write_json_atomic
    from lor2c_probe.record.outputs import mark
    from lor2c_probe.record.store import read_manifest
    from lor2c_probe.report.build import build_report
    from lor2c_probe.report.sections import Options
    from lor2c_probe.train.session import resume_training, run_training

    marker.update({"study": {k: v for k, v in asdict(study).items() if k != "overrides"}, "overrides": study.overrides,
                   "status": "running", "runs": {p.run_dir.name: "planned" for p in planned}})
    save = lambda: write_json_atomic(out / MARKER, mark(marker))  # noqa: E731
    save()
    walls: dict[str, float] = {}
    kept: list[str] = []
    diverged: list[str] = []
    skipped: list[str] = []
    start = time.perf_counter()
    for p in planned:
        left_out = only is not None and p.label not in only
        what = (_finished(p) if left_out else _state(p, overwrite)) if resume else "train"
        name = p.run_dir.name
        if what in ("keep", "keep-diverged"):
            kept.append(name)
            if what == "keep-diverged":
                diverged.append(name)
            marker["runs"][name] = "kept (diverged)" if what == "keep-diverged" else "kept"
            if not quiet:
                typer.echo(f"{name}: {'diverged' if what == 'keep-diverged' else 'completed'} earlier with the same configuration; kept")
            continue
        if left_out:
            skipped.append(name)
            marker["runs"][name] = "left for later (not in --only)"
            continue
        if not quiet:
            verb = {"train": "training", "resume": "resuming", "restart": "retraining"}[what]
            typer.echo(f"[{study.name}] {verb} {name} ({p.cfg.adapter.method}, seed {p.seed}) ...")
        t0 = time.perf_counter()
        marker["runs"][name] = "running"
        save()
        try:
            if what == "resume":
                resume_training(p.run_dir, progress=not quiet)
            else:
                run_training(p.cfg, p.run_dir, overwrite=what == "restart", policy_sources=p.sources, progress=not quiet)
        except RunDiverged as e:
            diverged.append(name)
            marker["runs"][name] = "diverged"
            notice(f"{name}: {e}")
        except (RunStopped, KeyboardInterrupt) as e:
            marker["runs"][name] = "interrupted" if isinstance(e, KeyboardInterrupt) or e.exit_code in (130, 143) else "failed"
            marker["status"] = marker["runs"][name]
            save()
            if isinstance(e, RunStopped):
                raise RunStopped(f"{e} — the study continues with `lor2c-probe run {study.source} --out {out} --resume`", e.exit_code) from None
            raise
        except BaseException:
            marker["runs"][name] = marker["status"] = "failed"
            save()
            raise
        else:
            marker["runs"][name] = "completed"
        walls[name] = round(time.perf_counter() - t0, 1)  # loading + training + eval
        save()
    train_wall = time.perf_counter() - start
    t0 = time.perf_counter()
    done = [p for p in planned if p.run_dir.name not in skipped]  # a partial study reports the runs it has
    groups = {p.run_dir: p.label for p in done}
    intro = " ".join(x for x in (f"Reproduces: {study.paper}." if study.paper else "", f"Claim under test: {study.claim}" if study.claim else "") if x)
    res = build_report([p.run_dir for p in done], out / "report", title=study.title, intro=intro or None,
                       options=Options(baseline=study.baseline), interactive=interactive, groups=groups, overwrite=True)
    report_wall = time.perf_counter() - t0
    results, seconds, cpu = {}, {}, {}
    for p in done:
        r = read_manifest(p.run_dir).get("results") or {}
        results[p.run_dir.name] = {"final_eval": r.get("final_eval"), "headline_metric": r.get("headline_metric"),
                                   "folded_eval": r.get("folded_eval")}
        seconds[p.run_dir.name] = r.get("wall_seconds", r.get("wall_seconds_this_session"))  # older manifests: one session's
        cpu[p.run_dir.name] = r.get("cpu_seconds")
    status = "completed with diverged runs" if diverged else "completed"
    if skipped:
        status = f"partial: {len(done)} of {len(planned)} runs ({len(skipped)} left for a later sitting)" + (", with diverged runs" if diverged else "")
    marker.update({"status": status, "runs_left": skipped,
                   "run_train_seconds": seconds,  # per run, from its manifest: training + per-epoch evals, kept runs included
                   "run_cpu_seconds": cpu,  # None for a run trained before runs counted CPU time, or resumed from then
                   "train_cpu_seconds": round(sum(cpu.values()), 1) if all(v is not None for v in cpu.values()) else None,
                   "run_wall_seconds_this_invocation": walls, "runs_kept": kept, "runs_diverged": diverged,
                   "train_wall_seconds_this_invocation": round(train_wall, 1), "report_wall_seconds": round(report_wall, 1),
                   "results": results, "report": str(res.html), "sections": {k: v or "drawn" for k, v in res.sections.items()}})
    save()
    for a in study.analyses:
        if res.sections.get(a):
            typer.echo(f"warning: analysis {a!r} of this study was not drawn: {res.sections[a]}", err=True)
    left = f"; {len(skipped)} left for later (--resume without --only trains them)" if skipped else ""
    typer.echo(f"study {study.name}: {len(done)} run(s){left}, training {train_wall:.0f} s, report {report_wall:.1f} s")
    typer.echo(f"report: {res.html}")
    if diverged:
        raise RunDiverged(f"study {study.name}: run(s) {', '.join(diverged)} diverged; the report marks them", 3)
    return res.html
