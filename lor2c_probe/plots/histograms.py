"""Figures for the histograms section: gradient/weight histograms per layer, update ratios and update norms over time."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lor2c_probe.plots.layout import title_and_tighten


def histograms_figure(last: pd.DataFrame, updates: pd.DataFrame, *, title: str) -> Figure:
    """Left, middle: |gradient| and |weight| histograms per layer at the last histogram step (log x; the zero bin drawn
    at 1e-10). Right: ||Δθ|| / ||θ|| per layer over steps (log y)."""
    fig = Figure(figsize=(15, 4.2), dpi=120)
    axes = fig.subplots(1, 3)
    from lor2c_probe.analysis.histograms import EDGES, N_BINS

    for ax, source in zip(axes[:2], ("grad", "weight")):
        s = last[last["source"] == source]
        for i, (layer, g) in enumerate(s.groupby("layer")):
            full = np.zeros(N_BINS)
            full[g["bin"].to_numpy()] = g["fraction"].to_numpy()
            ax.stairs(full[1:-1], EDGES, color=f"C{i % 10}", label=f"layer {layer}")  # the log-spaced bins, empty ones at 0
            if full[0] > 0:  # exact zeros (and |x| < 1e-10): a marker left of the axis' first bin
                ax.scatter([EDGES[0] / 3], [full[0]], marker="<", color=f"C{i % 10}")
        ax.set_xscale("log")
        ax.set_xlabel(f"|{source}| (log bins; ◀ = share of zeros)")
        ax.set_ylabel("share of the layer's entries")
        ax.set_title(f"{source} histogram, step {int(s['step'].iloc[0]) if len(s) else '-'}")
    u = updates[(updates["stat"] == "update_ratio") & (updates["layer"] >= 0)]
    per = u.groupby(["layer", "step"], as_index=False)["value"].mean()
    for i, (layer, g) in enumerate(per.groupby("layer")):
        axes[2].plot(g["step"], g["value"], color=f"C{i % 10}", lw=0.8, label=f"layer {layer}")
    axes[2].set_yscale("log")
    axes[2].set(xlabel="step", ylabel="||Δθ|| / ||θ||", title="update-to-weight ratio")
    axes[0].legend(fontsize=7)
    title_and_tighten(fig, title)
    return fig


def update_norm_figure(norms: dict[str, pd.DataFrame], *, title: str) -> Figure:
    """||ΔW||_F of every module over the spectral readings, one panel per run."""
    fig = Figure(figsize=(4.2 * len(norms) + 1, 3.8), dpi=120)
    axes = fig.subplots(1, len(norms), squeeze=False)[0]
    for ax, (run, n) in zip(axes, norms.items()):
        for i, (module, g) in enumerate(n.groupby("module")):
            ax.plot(g["step"], g["norm"], marker="o", ms=3, lw=0.8, color=f"C{i % 10}", label=module)
        ax.set(xlabel="step", ylabel="||ΔW||_F", title=run)
        if n["module"].nunique() <= 12:
            ax.legend(fontsize=6)
    title_and_tighten(fig, title)
    return fig
