"""``lor2c-probe run <study> --status``: where a study built up over several sittings stands, without touching it.

One line per planned run (in the order ``--resume`` trains them): its state, the training time it keeps (wall and
process CPU, from its manifest), its final headline metric; then what is done and an estimate of what is left (the
median completed run's wall time per run still to train; a run part-way counts whole, so the estimate errs long).
Reads only: nothing is written and no lock is held (a shared lock is tried for an instant to see whether a run is
being trained).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lor2c_probe.commands.run import Planned, check_study_out, config_diff, plan


@dataclass(frozen=True)
class RunState:
    name: str
    method: str
    seed: int
    state: str
    wall: float | None = None
    cpu: float | None = None
    final: str = ""


def run_state(p: Planned) -> RunState:
    """A planned run's state, read from its folder: not started, completed, training now, interrupted (with the
    checkpoint it resumes from), diverged, or trained with another configuration."""
    from lor2c_probe.config import RunConfig
    from lor2c_probe.record.lock import holder
    from lor2c_probe.record.store import read_manifest
    from lor2c_probe.train.checkpoint import newest_intact

    base = dict(name=p.run_dir.name, method=p.cfg.adapter.method, seed=p.seed)
    if not (p.run_dir / "manifest.json").is_file():
        left = p.run_dir.exists() and any(p.run_dir.iterdir())
        return RunState(**base, state="not started" + (" (a folder without a manifest is there: it will be moved aside)" if left else ""))
    m = read_manifest(p.run_dir)
    try:
        same = RunConfig.from_dict(m.get("config", {})) == p.cfg
    except (TypeError, ValueError, KeyError):
        same = False
    if not same:
        return RunState(**base, state=f"trained with another configuration ({config_diff(m.get('config', {}), p.cfg.to_dict())})")
    res = m.get("results") or {}
    wall, cpu = res.get("wall_seconds", res.get("wall_seconds_this_session")), res.get("cpu_seconds")
    status = m.get("status")
    busy = holder(p.run_dir)
    ckpt = newest_intact(p.run_dir).path
    epochs = (m.get("schedule") or {}).get("epochs")
    done = f"{int(ckpt.name.split('-')[1]) + 1} of {epochs} epochs checkpointed" if ckpt is not None else "no checkpoint yet"
    if status != "completed":
        done = f"{_last_step(p.run_dir, m)}; {done}"
    if busy:
        return RunState(**base, state=f"training now (pid {busy.get('pid')}; {done})")
    if status == "completed":
        head = res.get("headline_metric")
        final = (res.get("final_eval") or {}).get(head)
        shown = f"{head} {final:.4f}" if isinstance(final, float) else ""
        return RunState(**base, state="completed", wall=wall, cpu=cpu, final=shown + _chance(p.run_dir) if head == "accuracy" else shown)
    if status == "diverged":
        return RunState(**base, state=f"diverged at step {(m.get('diverged') or {}).get('step', '?')} (kept as it is)")
    # "running" with no process holding the run: it was killed (kill -9, a lost machine) before it could say so. The
    # manifest is read again first: a run that finished between the two reads is not called killed.
    if status == "running" and read_manifest(p.run_dir).get("status") == "completed":
        return run_state(p)
    said = "killed while training (no process on this host holds it)" if status == "running" else (status or "stopped")
    return RunState(**base, state=f"{said}; " + (f"resumes from {ckpt.name} ({done})" if ckpt is not None
                                                 else "no checkpoint: retrains from the start"))


def _chance(run_dir: Path) -> str:
    """" (did not learn: ...)" when the run is shown to be no better than always predicting the majority class."""
    from lor2c_probe.compare.chance import chance_of
    from lor2c_probe.errors import StorageError

    try:
        t = chance_of(run_dir)
    except StorageError:
        return ""
    if t is None or not t.at_chance:
        return ""
    return f" (did not learn: the majority class alone scores {t.majority_share:.4f}; difference {100 * t.difference:+.2f} points, upper 95% end {100 * t.high:+.2f})"


def _last_step(run_dir: Path, manifest: dict[str, Any]) -> str:
    """"step S of T" from the newest shard of the metrics table (flushed every ``flush_every`` steps)."""
    from lor2c_probe.errors import StorageError
    from lor2c_probe.record.store import read_table_shard, shard_paths

    total = (manifest.get("schedule") or {}).get("total_steps", "?")
    shards = shard_paths(run_dir, "metrics")
    try:
        step = int(read_table_shard(shards[-1][1], "metrics")["step"].max()) if shards else 0
    except (StorageError, ValueError):
        return f"step ? of {total}"
    return f"step {step} of {total} recorded"


def _hours(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def study_status(path: Path, overrides: dict[str, Any], *, out: Path | None, seeds: str | None) -> str:
    study, out, planned = plan(path, overrides, out=out, seeds=seeds)
    check_study_out(out, study, "--status")  # --out holding another study (or something else) is refused, as --resume refuses it
    states = [run_state(p) for p in planned]
    width = max(len(s.name) for s in states)
    lines = [f"study {study.name} in {out}: {len(planned)} planned run(s)"]
    for s in states:
        t = f"{_hours(s.wall)} wall, {_hours(s.cpu)} CPU" if s.wall is not None and s.cpu is not None else (
            f"{_hours(s.wall)} wall" if s.wall is not None else "")
        lines.append("  " + "  ".join(x for x in (s.name.ljust(width), s.state, t, s.final) if x))
    done = [s for s in states if s.state == "completed"]
    walls, cpus = [s.wall for s in done if s.wall is not None], [s.cpu for s in done if s.cpu is not None]
    changed = sum(s.state.startswith("trained with another") for s in states)
    busy = any(s.state.startswith("training now") for s in states)
    left = len(planned) - len(done) - sum(s.state.startswith("diverged") for s in states)
    total = f"{len(done)} of {len(planned)} completed"
    if walls:
        total += f", {_hours(sum(walls))} of training" + (f" ({_hours(sum(cpus))} CPU, {len(cpus)} run(s) that count it)" if cpus else "")
    if left and walls:
        total += f"; {left} to train: about {_hours(left * statistics.median(walls))} at the median completed run's {_hours(statistics.median(walls))}"
    elif left:
        total += f"; {left} to train"
    lines.append(total)
    again = f"lor2c-probe run {study.source} --out {out} --resume" + (" --overwrite" if changed else "")
    if changed:
        lines.append(f"{changed} run(s) were trained with another configuration: --resume refuses them; with --overwrite they are "
                     "moved aside and retrained")
    if busy:
        lines.append(f"a run is being trained now; once that process stops, continue with: {again}")
    elif left:
        lines.append(f"continue with: {again}")
    return "\n".join(lines)
