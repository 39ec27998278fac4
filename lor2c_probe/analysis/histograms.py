"""Gradient and weight histograms, update-to-weight ratios and the size of each learned update over time.

Pure pandas over the ``histograms`` and ``updates`` tables (probes/histograms.py) and the ``spectra`` table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# The fixed bins of the histograms probe, the same for every run: |x| in [1e-10, 100), 4 per decade (48 bins), plus
# bin 0 for |x| < 1e-10 (zeros) and bin 49 for |x| >= 100.
DECADES = (-10, 2)
PER_DECADE = 4
EDGES = np.logspace(DECADES[0], DECADES[1], (DECADES[1] - DECADES[0]) * PER_DECADE + 1)  # 49 edges -> 48 bins
N_BINS = len(EDGES) + 1


def bin_bounds() -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of every bin index 0..N_BINS-1: [0, 1e-10), the log-spaced bins, [100, inf)."""
    return np.concatenate([[0.0], EDGES]), np.concatenate([EDGES, [np.inf]])


def last_histograms(histograms: pd.DataFrame) -> pd.DataFrame:
    """At the last step with histograms: per (source, layer, bin) the count summed over a layer's modules and its
    share of that layer's entries (``fraction``). Columns source, layer, bin, lo, hi, count, fraction, step."""
    if histograms.empty:
        return pd.DataFrame(columns=["source", "layer", "bin", "lo", "hi", "count", "fraction", "step"])
    h = histograms[histograms["step"] == histograms["step"].max()]
    out = h.groupby(["source", "layer", "bin", "lo", "hi"], as_index=False)["count"].sum()
    out["fraction"] = out["count"] / out.groupby(["source", "layer"])["count"].transform("sum")
    return out.assign(step=int(h["step"].iloc[0])).sort_values(["source", "layer", "bin"], ignore_index=True)


def update_ratio_table(updates: pd.DataFrame) -> pd.DataFrame:
    """Per (epoch, layer): the median over steps of ||Δθ|| / ||θ|| (a layer's modules together: their mean)."""
    u = updates[(updates["stat"] == "update_ratio") & (updates["layer"] >= 0)]
    per_step = u.groupby(["epoch", "layer", "step"], as_index=False)["value"].mean()
    return per_step.groupby(["epoch", "layer"], as_index=False)["value"].median().rename(columns={"value": "update_ratio_median"})


def update_norms(spectra: pd.DataFrame) -> pd.DataFrame:
    """||ΔW||_F = sqrt(sum sigma^2) of every module's update at each weight-spectrum reading. Columns step, epoch,
    module, norm."""
    w = spectra[spectra["source"] == "weights"]
    if w.empty:
        return pd.DataFrame(columns=["step", "epoch", "module", "norm"])
    g = w.assign(sq=w["sigma"] ** 2).groupby(["step", "epoch", "module"], as_index=False)["sq"].sum()
    return g.assign(norm=np.sqrt(g["sq"])).drop(columns="sq").sort_values(["module", "step"], ignore_index=True)


def reading(ratios: dict[str, pd.DataFrame]) -> str:
    """One line per run: how large a step's update is against the adapter's weights, first and last epoch."""
    lines = []
    for run, t in ratios.items():
        if t.empty:
            lines.append(f"{run}: no update ratios recorded.")
            continue
        first, last = t[t.epoch == t.epoch.min()], t[t.epoch == t.epoch.max()]
        lines.append(f"{run}: a step moves the adapter weights by {first.update_ratio_median.median():.2e} of their norm in epoch "
                     f"{int(first.epoch.iloc[0])} (median over layers) and {last.update_ratio_median.median():.2e} in epoch "
                     f"{int(last.epoch.iloc[0])}; across layers {last.update_ratio_median.min():.2e} to {last.update_ratio_median.max():.2e}.")
    return "\n".join(lines)
