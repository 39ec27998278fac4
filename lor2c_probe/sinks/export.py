"""``lor2c-probe export``: a finished (or stopped) run's tables into a sink, after the fact: the same tags as live."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lor2c_probe.record.store import read_manifest, read_table
from lor2c_probe.sinks.base import SCALAR_TABLES, open_sink, scalar_rows


def export_run(run: Path, to: str, out: Path) -> dict[str, int]:
    """Write ``run``'s tables with the sink ``to`` under ``out``; returns how many scalars, histograms, images."""
    manifest = read_manifest(run)
    cfg = manifest.get("config") or {}
    from lor2c_probe.sinks.live import _flat

    sink = open_sink(to, out, run_name=f"{manifest.get('method', {}).get('name', 'run')}:{Path(run).name}", config=_flat(cfg))
    counts = {"scalars": 0, "histograms": 0, "images": 0}
    try:
        scalars = pd.concat([scalar_rows(t, read_table(run, t)) for t in SCALAR_TABLES], ignore_index=True)
        scalars = scalars.sort_values("step", kind="stable", ignore_index=True)
        sink.scalars(scalars)
        counts["scalars"] = len(scalars)
        hist = read_table(run, "histograms")
        if len(hist):
            sink.histograms(hist)
            counts["histograms"] = int(hist.groupby(["source", "module", "step"]).ngroups)
        from lor2c_probe.sinks.live import LiveSinks

        live = LiveSinks([])
        grads = read_table(run, "grads")
        if len(grads):
            live._add_grads(grads)
        for tag, png, step in live._images(read_table(run, "spectra")):
            sink.image(tag, png, step)
            counts["images"] += 1
    finally:
        sink.close()
    return counts
