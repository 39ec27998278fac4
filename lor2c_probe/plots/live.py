"""Small figures the live sinks send at each epoch end: the layer x epoch gradient heat map and the current spectra."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def layer_epoch_heatmap(values: pd.DataFrame, *, title: str, label: str) -> Figure:
    """``values``: columns epoch, layer, value. Layers bottom to top on y, epochs on x, log colour, each cell printed."""
    grid = values.pivot_table(index="layer", columns="epoch", values="value")
    fig = Figure(figsize=(1.6 + 0.9 * max(grid.shape[1], 2), 1.2 + 0.35 * grid.shape[0]), dpi=100)
    ax = fig.subplots()
    data = grid.to_numpy(dtype=float)
    pos = data[np.isfinite(data) & (data > 0)]
    norm = LogNorm(pos.min(), pos.max()) if len(pos) and pos.max() > pos.min() else None
    im = ax.imshow(np.where(data > 0, data, np.nan), origin="lower", aspect="auto", cmap="viridis", norm=norm)
    for (i, j), v in np.ndenumerate(data):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7, color="w")
    ax.set_xticks(range(grid.shape[1]), [str(e) for e in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [str(layer) for layer in grid.index])
    ax.set(xlabel="epoch", ylabel="layer", title=title)
    fig.colorbar(im, ax=ax, label=label)
    fig.tight_layout()
    return fig


def spectra_snapshot(spectra: pd.DataFrame, *, title: str) -> Figure:
    """``spectra`` rows of one step (source ``weights``): sigma_i / sigma_1 per module, log y."""
    fig = Figure(figsize=(6, 3.6), dpi=100)
    ax = fig.subplots()
    for i, (module, g) in enumerate(spectra.groupby("module")):
        s = g.sort_values("index")["sigma"].to_numpy(dtype=float)
        if len(s) and s[0] > 0:
            ax.plot(np.arange(1, len(s) + 1), s / s[0], color=f"C{i % 10}", lw=0.9, marker=".", ms=3, label=module)
    ax.set_yscale("log")
    ax.set(xlabel="index i", ylabel="σ_i / σ_1", title=title)
    if spectra["module"].nunique() <= 12:
        ax.legend(fontsize=6, ncols=2)
    fig.tight_layout()
    return fig
