"""SFS traces across structural events (pure pandas).

``sfs_traces``: SFS_k per module over steps for one source, each row tagged with its module's parents
(from the ``events`` table), so a merged module's trace continues from the modules it replaced.
``event_effects``: per event, the SFS_k of the modules involved at the last reading before the event and
of the result at the first reading after it, with the training loss windows the event log stored.
"""

from __future__ import annotations

import json

import pandas as pd


def parse_events(events: pd.DataFrame) -> pd.DataFrame:
    """One row per event with its parsed detail: step, epoch, kind, parents (list), result, and the detail dict."""
    rows = []
    for r in events.itertuples(index=False):
        d = json.loads(r.detail_json)
        rows.append({"step": int(r.step), "epoch": int(r.epoch), "kind": r.kind, "parents": [m for m in r.modules.split(",") if m],
                     "result": d.get("result"), "detail": d})
    return pd.DataFrame(rows, columns=["step", "epoch", "kind", "parents", "result", "detail"])


def sfs_traces(sfs: pd.DataFrame, events: pd.DataFrame, *, k: int = 2, source: str = "features") -> pd.DataFrame:
    """Columns step, epoch, module, parents (comma list, empty for an original module), value."""
    if sfs.empty:
        raise ValueError("the sfs table is empty (record with --probes spectra)")
    sel = sfs[(sfs["k"] == k) & (sfs["source"] == source) & sfs["module"].str.startswith("lor2c.")]
    if sel.empty:
        raise ValueError(f"no SFS_{k} from {source!r} recorded; available k: {sorted(sfs.k.unique())}, sources: {sorted(sfs.source.unique())}")
    parents = {e.result: ",".join(e.parents) for e in parse_events(events).itertuples() if e.kind == "merge"} if not events.empty else {}
    out = sel[["step", "epoch", "module", "value"]].copy()
    out["parents"] = out["module"].map(parents).fillna("")
    return out.sort_values(["module", "step"], ignore_index=True)


def event_effects(sfs: pd.DataFrame, events: pd.DataFrame, *, k: int = 2, source: str = "features") -> pd.DataFrame:
    """Per event: SFS_k of each involved module just before, of the result just after, and the loss windows."""
    traces = sfs_traces(sfs, events, k=k, source=source)
    rows = []
    for e in parse_events(events).itertuples():
        if e.kind.endswith("_skipped"):
            continue
        before = {}
        for m in e.parents:
            t = traces[(traces.module == m) & (traces.step <= e.step)]
            before[m] = float(t.value.iloc[-1]) if len(t) else None
        after_t = traces[(traces.module == e.result) & (traces.step > e.step)] if e.result else traces.iloc[:0]
        rows.append({
            "step": e.step, "epoch": e.epoch, "kind": e.kind, "parents": ",".join(e.parents), "result": e.result,
            "sfs_before": before, "sfs_after": float(after_t.value.iloc[0]) if len(after_t) else None,
            "sfs_after_step": int(after_t.step.iloc[0]) if len(after_t) else None,
            "kept_factors_of": e.detail.get("kept_factors_of"),
            "loss_before_mean": e.detail.get("loss_before_mean"), "loss_after_mean": e.detail.get("loss_after_mean"),
            "params_before": e.detail.get("params_before"), "params_after": e.detail.get("params_after"),
        })
    return pd.DataFrame(rows)
