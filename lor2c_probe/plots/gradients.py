"""Figures for the gradient-flow analyses: the ratio surface (Fig. 7 style) and activation-gradient heat maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

REQUIRED = {"method", "epoch", "layer", "ratio"}


def _require(df: pd.DataFrame, cols: set[str]) -> None:
    missing = sorted(cols - set(df.columns))
    if missing:
        raise ValueError(f"figure input lacks column(s): {', '.join(missing)}")


def _grid(surface: pd.DataFrame, value: str = "ratio") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epochs, layers, z[layer, epoch]) with NaN where a cell has no value."""
    z = surface.pivot(index="layer", columns="epoch", values=value).sort_index().sort_index(axis=1)
    return z.columns.to_numpy(), z.index.to_numpy(), z.to_numpy(dtype=float)


def _interval_grids(surface: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(ci_low, ci_high) on the ``_grid`` layout; NaN where a surface has no intervals."""
    if {"ci_low", "ci_high"} <= set(surface.columns):
        return _grid(surface, "ci_low")[2], _grid(surface, "ci_high")[2]
    nan = np.full_like(_grid(surface)[2], np.nan)
    return nan, nan.copy()


def _cell(v: float, lo: float, hi: float) -> str:
    if not np.isfinite(v):
        return "-"
    text = f"{v:.2f}" if v >= 0.1 else f"{v:.1g}"
    return text + (f"\n[{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) and np.isfinite(hi) else "")


def ratio_surface_html(surface: pd.DataFrame, path: Path, *, denominator: str, stat: str) -> None:
    ratio_surface_plotly(surface, denominator=denominator, stat=stat).write_html(path, include_plotlyjs=True, full_html=True)


def ratio_surface_plotly(surface: pd.DataFrame, *, denominator: str, stat: str) -> Any:
    """Interactive 3D surface(s), one scene per numerator method; plotly.js embedded so it works offline."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    _require(surface, REQUIRED)
    methods = list(dict.fromkeys(surface["method"]))
    fig = make_subplots(rows=1, cols=len(methods), specs=[[{"type": "scene"}] * len(methods)],
                        subplot_titles=[f"{m} / {denominator}" for m in methods])
    for i, m in enumerate(methods, start=1):
        sub = surface[surface["method"] == m]
        x, y, z = _grid(sub)
        lo, hi = _interval_grids(sub)
        text = np.vectorize(lambda a, b: f"[{a:.3g}, {b:.3g}]" if np.isfinite(a) and np.isfinite(b) else "no interval")(lo, hi)
        fig.add_trace(go.Surface(x=x, y=y, z=z, colorscale="Viridis", showscale=i == 1, colorbar={"title": "ratio"}, text=text,
                                 hovertemplate="epoch %{x}<br>layer %{y}<br>ratio %{z:.3g}<br>95% interval %{text}<extra></extra>"),
                      row=1, col=i)
        scene = "scene" if i == 1 else f"scene{i}"
        fig.layout[scene].update(xaxis_title="epoch", yaxis_title="layer", zaxis_title=f"{stat} ratio")
    fig.update_layout(title=f"Module gradient ratio ({stat}) per epoch and layer", height=600, width=max(700, 600 * len(methods)))
    return fig


def ratio_surface_png(surface: pd.DataFrame, path: Path, *, denominator: str, stat: str) -> None:
    ratio_surface_figure(surface, denominator=denominator, stat=stat).savefig(path)


def ratio_surface_figure(surface: pd.DataFrame, *, denominator: str, stat: str) -> Figure:
    """Per numerator: the Fig. 7-style 3D surface (top; grey plane at ratio 1) and the same values as an
    annotated layer x epoch map (bottom; log colour scale centred on 1, so above/below the baseline reads
    at a glance). One shared colour scale for all numerators. A single epoch gives lines over layers."""
    _require(surface, REQUIRED)
    methods = list(dict.fromkeys(surface["method"]))
    values = surface["ratio"].to_numpy(dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    span = float(np.max(np.abs(np.log10(values)))) if values.size else 1.0
    norm = LogNorm(vmin=10 ** -max(span, 0.05), vmax=10 ** max(span, 0.05))
    zmax = float(values.max()) if values.size else 1.0
    cols = min(len(methods), 4)  # a zoo of methods wraps into rows of four (surface above, map below)
    block_rows = -(-len(methods) // cols)
    fig = Figure(figsize=(6.0 * cols, 9.0 * block_rows), dpi=120)
    image = None
    for i, m in enumerate(methods):
        top = 2 * (i // cols) * cols + i % cols + 1  # this method's cell in a (2 * block_rows) x cols grid
        bottom = top + cols
        sub = surface[surface["method"] == m]
        x, y, z = _grid(sub)
        lo, hi = _interval_grids(sub)
        title = f"{m} / {denominator}: {stat} gradient ratio"
        if len(x) < 2 or len(y) < 2:
            ax = fig.add_subplot(2 * block_rows, cols, top)
            for j, epoch in enumerate(x):
                err = np.abs(np.vstack([z[:, j] - lo[:, j], hi[:, j] - z[:, j]]))
                ax.errorbar(y, z[:, j], yerr=np.where(np.isfinite(err), err, 0), marker="o", capsize=3, label=f"epoch {epoch} (95% interval)")
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax.set(xlabel="layer", ylabel=f"gradient ratio (x {denominator})", title=title)
            ax.legend()
        else:
            ax = fig.add_subplot(2 * block_rows, cols, top, projection="3d")
            X, Y = np.meshgrid(x, y)
            ax.plot_surface(X, Y, np.ma.masked_invalid(z), cmap="RdBu_r", norm=norm, edgecolor="k", linewidth=0.3, alpha=0.95)
            ax.plot_surface(X, Y, np.ones_like(z), color="grey", alpha=0.15, linewidth=0)
            ax.set_xticks(x)
            ax.set_yticks(y)
            ax.set_zlim(0, zmax * 1.05)
            ax.set_xlabel("epoch")
            ax.set_ylabel("layer")
            ax.set_zlabel(f"ratio (x {denominator})")
            ax.view_init(elev=25, azim=-130)
            ax.set_title(title, fontsize=11)
        ax2 = fig.add_subplot(2 * block_rows, cols, bottom)
        image = ax2.imshow(np.where(z > 0, z, np.nan), origin="lower", aspect="auto", cmap="RdBu_r", norm=norm,
                           extent=(x[0] - 0.5, x[-1] + 0.5, y[0] - 0.5, y[-1] + 0.5))
        small = len(y) * len(x) > 40  # many cells: a smaller font, so the interval fits under the mean
        for (li, ei), v in np.ndenumerate(z):
            ax2.text(x[ei], y[li], _cell(v, lo[li, ei], hi[li, ei]), ha="center", va="center", fontsize=6 if small else 8,
                     color="white" if np.isfinite(v) and v > 0 and abs(np.log10(v)) > 0.6 * max(span, 0.05) else "black")
        ax2.set_xticks(x)
        ax2.set_yticks(y)
        ax2.set(xlabel="epoch", ylabel="layer", title=f"{m} / {denominator} (red: above 1, blue: below)")
        ax2.grid(False)
    if image is not None:
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

        cb = fig.colorbar(image, ax=fig.axes[-1], label=f"{stat} gradient ratio (log scale)")
        candidates = (0.1, 0.2, 0.25, 0.5, 1, 2, 4, 5, 10) if span <= 1 else (0.001, 0.01, 0.1, 0.5, 1, 2, 10, 100, 1000)
        ticks = [t for t in candidates if norm.vmin <= t <= norm.vmax]  # decades once the span passes one
        cb.ax.yaxis.set_major_locator(FixedLocator(ticks))
        cb.ax.yaxis.set_minor_locator(NullLocator())
        cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    fig.tight_layout()
    return fig


def activation_heatmaps_png(profiles: dict[str, pd.DataFrame], path: Path, *, stat: str) -> None:
    activation_heatmaps_figure(profiles, stat=stat).savefig(path, bbox_inches="tight")


def activation_heatmaps_figure(profiles: dict[str, pd.DataFrame], *, stat: str) -> Figure:
    """Layer x epoch heat map of the activation-gradient statistic per method, on one shared log scale."""
    for p in profiles.values():
        _require(p, {"epoch", "layer", "value"})
    values = np.concatenate([p["value"].to_numpy(dtype=float) for p in profiles.values()])
    positive = values[values > 0]
    norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if positive.size else None
    cols = min(len(profiles), 5)  # many methods wrap into rows of five
    rows = -(-len(profiles) // cols)
    fig = Figure(figsize=(3.2 * cols + 1.2, 4.6 * rows), dpi=120)
    grid = fig.subplots(rows, cols, squeeze=False)
    axes = list(grid.flat)
    for extra in axes[len(profiles):]:
        extra.set_visible(False)
    axes = axes[: len(profiles)]
    image = None
    for k, (ax, (method, p)) in enumerate(zip(axes, profiles.items())):
        x, y, z = _grid(p, "value")
        image = ax.imshow(np.where(z > 0, z, np.nan), origin="lower", aspect="auto", norm=norm, cmap="magma",
                          extent=(x[0] - 0.5, x[-1] + 0.5, y[0] - 0.5, y[-1] + 0.5))
        ax.set_title(method, fontsize=11)
        ax.grid(False)
        ax.set_xlabel("epoch")
        ax.set_xticks(x)
        ax.set_yticks(y)
        if k % cols == 0:
            ax.set_ylabel("block input i (top = encoder output)")
    if image is not None:
        fig.colorbar(image, ax=list(grid.flat), label=f"||dL/dh_i|| ({stat}, epoch mean, log scale)")
    fig.suptitle("Gradient reaching each block's input", fontsize=12)
    return fig
