"""SFS traces of structured runs across their merges and injections (paper Eq. 5), with a per-event summary."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lor2c_probe.errors import CannotCompare
from lor2c_probe.record.store import read_manifest, read_table


@dataclass(frozen=True)
class SfsTrace:
    label: str
    traces: pd.DataFrame  # SFS_k of each LoR2C module over steps, from the run's score source (run column)
    all_traces: pd.DataFrame  # the same from both sources (source column)
    events: pd.DataFrame | None  # each event's effect: SFS before and after, loss windows, parameter counts
    raw_events: pd.DataFrame  # the recorded events table
    summary: str
    k: int


def sfs_trace(label: str, path: Path, k: int, source: str) -> SfsTrace:
    """SFS traces of one structured run, cut at its merges and injections, and the effect of each event."""
    from lor2c_probe.analysis.sfs_traces import event_effects, sfs_traces

    sfs, events = read_table(path, "sfs"), read_table(path, "events")
    try:
        traces = sfs_traces(sfs, events, k=k, source=source)
        effects = event_effects(sfs, events, k=k, source=source) if not events.empty else None
        both = pd.concat([sfs_traces(sfs, events, k=k, source=s).assign(source=s) for s in sorted(sfs.source.unique())], ignore_index=True)
    except ValueError as e:
        raise CannotCompare(f"run {path}: {e}") from None
    m = read_manifest(path)
    lines = [f"{label}: SFS_{k} ({source}) across {len(events)} structural events"]
    if effects is not None:
        for e in effects.itertuples(index=False):
            before = ", ".join(f"{mod} {v:.3f}" if v is not None else f"{mod} -" for mod, v in e.sfs_before.items())
            after = f"{e.result} {e.sfs_after:.3f} at step {int(e.sfs_after_step)}" if e.sfs_after == e.sfs_after and e.sfs_after is not None else f"{e.result} (no LoR2C trace after)"
            loss = f"loss {e.loss_before_mean:.4f} -> {e.loss_after_mean:.4f}" if e.loss_after_mean is not None else "loss window open"
            kept = f" (kept {e.kept_factors_of}'s factors)" if isinstance(e.kept_factors_of, str) else ""
            lines.append(f"  step {e.step}: {e.kind} {e.parents} -> {e.result}{kept}; SFS before {before}; after {after}; {loss}; "
                         f"params {e.params_before:,} -> {e.params_after:,}")
    for r in events[events.kind.str.endswith("_skipped")].itertuples(index=False):
        lines.append(f"  step {r.step}: {r.kind.replace('_skipped', '')} skipped: {json.loads(r.detail_json).get('reason')}")
    res = m.get("results") or {}
    if res.get("final_eval"):
        head = res["headline_metric"]
        lines.append(f"  final eval {head}: {res['final_eval'][head]:.4f}; adapter params at start {m['params']['adapter_params']:,}")
    return SfsTrace(label, traces.assign(run=label), both.assign(run=label), effects.assign(run=label) if effects is not None else None,
                    events, "\n".join(lines), k)


def across_seeds(frames: list[SfsTrace]) -> str:
    """With runs of several seeds: per event (the j-th of its kind) the training-loss change across it and the result's
    SFS after it, each as a mean with a 95% Student-t interval across the runs ("" with fewer than two runs)."""
    import numpy as np

    from lor2c_probe.analysis import stats

    effects = [f.events.assign(ordinal=f.events.groupby("kind").cumcount() + 1) for f in frames if f.events is not None and not f.events.empty]
    if len(frames) < 2 or len(effects) < 2:
        return ""
    e = pd.concat(effects, ignore_index=True)
    lines = [f"Across {len(effects)} runs (seeds), per event: mean [95% t interval]."]
    for (kind, j), g in e.groupby(["kind", "ordinal"]):
        loss = (g.loss_after_mean.astype(float) - g.loss_before_mean.astype(float)).to_numpy()
        t = stats.t_test(loss)
        sfs = stats.t_test(g.sfs_after.astype(float).to_numpy())
        fmt = lambda x: f"{x:+.4f}" if np.isfinite(x) else "undefined"  # noqa: E731
        p = f"{t.p:.2g}" if np.isfinite(t.p) else "undefined"
        lines.append(f"  {kind} #{j} (n = {t.n}): loss change {fmt(t.estimate)} [{fmt(t.low)}, {fmt(t.high)}], t-test p = {p}; "
                     f"result SFS after {fmt(sfs.estimate)} [{fmt(sfs.low)}, {fmt(sfs.high)}]")
    return "\n".join(lines)
