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
