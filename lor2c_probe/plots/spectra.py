"""Figures for the spectral analyses: Fig. 2-style low-rank evidence and subspace-similarity heat maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from lor2c_probe.plots.layout import title_and_tighten

MAX_INDEX = 64  # the interesting part of a spectrum; beyond it everything is in the tail


def _last_epoch(curves: pd.DataFrame) -> pd.DataFrame:
    return curves[curves["epoch"] == curves["epoch"].max()]


def low_rank_png(curves: pd.DataFrame, path: Path, *, title: str) -> None:
    low_rank_figure(curves, title=title).savefig(path)


def low_rank_figure(curves: pd.DataFrame, *, title: str) -> Figure:
    """Per run: normalised singular values (log scale) and cumulative energy per layer, control dashed."""
    runs = list(dict.fromkeys(curves["run"]))
    fig = Figure(figsize=(11, 3.9 * len(runs)), dpi=120)
    axes = fig.subplots(len(runs), 2, squeeze=False)
    for row, run in zip(axes, runs):
        c = _last_epoch(curves[curves["run"] == run])
        layers = sorted(c["layer"].unique())
        colors = [f"C{i % 10}" for i in range(len(layers))]
        for layer, color in zip(layers, colors):
            g = c[(c.layer == layer) & (c.kind == "learned") & (c["index"] < MAX_INDEX)]
            row[0].plot(g["index"] + 1, g["sigma_normalized"].clip(lower=1e-6), color=color, label=f"layer {layer}")
            row[1].plot(g["index"] + 1, g["cumulative_energy"], color=color)
        ctrl = c[(c.kind == "control") & (c["index"] < MAX_INDEX)].groupby("index")[["sigma_normalized", "cumulative_energy"]].mean()
        row[0].plot(ctrl.index + 1, ctrl["sigma_normalized"], "k--", label="control (Gaussian, same norm)")
        row[1].plot(ctrl.index + 1, ctrl["cumulative_energy"], "k--")
        row[0].set_yscale("log")
        row[0].set_ylabel("sigma_i / sigma_1")
        row[1].set_ylabel("cumulative energy")
        row[1].set_ylim(0, 1.02)
        n = int(c["index"].max()) + 1
        shown = f" (first {MAX_INDEX} of {n})" if n > MAX_INDEX else f" (all {n})"
        for ax in row:
            ax.set_xlabel("singular value index i" + shown)
            ax.axvline(8, color="grey", lw=0.6, ls=":")
        row[0].set_title(f"{run}: normalised spectrum (epoch {int(c.epoch.max())})", fontsize=10)
        row[1].set_title(f"{run}: cumulative energy share of the top i", fontsize=10)
        row[0].legend(fontsize=7, ncol=2)
    title_and_tighten(fig, title, fontsize=12)
    return fig


def low_rank_layers_figure(layers: pd.DataFrame, *, k: int, title: str) -> Figure:
    """Per group: top-k energy (left) and effective rank (right) by layer, mean over seeds with 95% t whiskers
    (``analysis.low_rank.by_layer``); the same-norm Gaussian control dashed."""
    fig = Figure(figsize=(11, 3.9), dpi=120)
    axes = fig.subplots(1, 2)
    for i, (group, g) in enumerate(layers.groupby("group", sort=False)):
        g = g.sort_values("layer")
        color = f"C{i % 10}"
        for ax, col in zip(axes, (f"top{k}_energy", "effective_rank")):
            lo, hi = g[f"{col}_low"].to_numpy(), g[f"{col}_high"].to_numpy()
            has = ~(pd.isna(lo) | pd.isna(hi))
            err = [(g[col] - lo).where(has, 0).to_numpy(), (hi - g[col]).where(has, 0).to_numpy()] if has.any() else None
            most, least = int(g["seeds"].max()), int(g["seeds"].min())
            count = f"{most} seed{'s' if most != 1 else ''}" if most == least else f"{least}-{most} seeds"
            ax.errorbar(g["layer"], g[col], yerr=err, color=color, marker="o", capsize=3, label=f"{group} ({count})")
            ax.plot(g["layer"], g[f"control_{col}"], color=color, ls="--", lw=0.9, label=f"{group}: control")
    axes[0].set(xlabel="layer", ylabel=f"energy share of the top {k}", title=f"Top-{k} energy per layer")  # no fixed limits: whiskers past 0 or 1 show
    axes[1].set(xlabel="layer", ylabel="effective rank (entropy)", title="Effective rank per layer")
    axes[0].legend(fontsize=7)
    title_and_tighten(fig, title, fontsize=12)
    return fig


def low_rank_html(curves: pd.DataFrame, path: Path, *, title: str) -> None:
    low_rank_plotly(curves, title=title).write_html(path, include_plotlyjs=True, full_html=True)


def low_rank_plotly(curves: pd.DataFrame, *, title: str) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    runs = list(dict.fromkeys(curves["run"]))
    fig = make_subplots(rows=len(runs), cols=2, subplot_titles=[f"{r}: {t}" for r in runs for t in ("sigma_i / sigma_1", "cumulative energy")])
    for r, run in enumerate(runs, start=1):
        c = _last_epoch(curves[curves["run"] == run])
        for (layer, kind), g in c.groupby(["layer", "kind"]):
            name = f"{run} layer {layer}" + (" control" if kind == "control" else "")
            dash = "dash" if kind == "control" else "solid"
            for col, y in ((1, "sigma_normalized"), (2, "cumulative_energy")):
                fig.add_trace(go.Scatter(x=g["index"] + 1, y=g[y], mode="lines", name=name, legendgroup=name,
                                         showlegend=col == 1, line={"dash": dash}), row=r, col=col)
        fig.update_yaxes(type="log", row=r, col=1)
    fig.update_layout(title=title, height=420 * len(runs), width=1100)
    return fig


def subspace_png(grid: pd.DataFrame, path: Path, *, title: str) -> None:
    subspace_figure(grid, title=title).savefig(path, bbox_inches="tight")


def subspace_figure(grid: pd.DataFrame, *, title: str) -> Figure:
    """phi(i, j) heat map per layer (rows: top-i directions of the first run, columns: the second's)."""
    layers = sorted(grid["layer"].unique())
    fig = Figure(figsize=(2.8 * len(layers) + 1.0, 3.3), dpi=120)
    axes = fig.subplots(1, len(layers), squeeze=False)[0]
    image = None
    for ax, layer in zip(axes, layers):
        g = grid[grid.layer == layer].pivot(index="i", columns="j", values="phi")
        image = ax.imshow(g.to_numpy(), origin="lower", vmin=0, vmax=1, cmap="viridis",
                          extent=(0.5, g.columns.max() + 0.5, 0.5, g.index.max() + 0.5))
        ax.set_title(f"layer {layer}: phi({g.index.max()}, {g.columns.max()}) = {g.iloc[-1, -1]:.2f}", fontsize=10)
        ax.grid(False)
        ax.set_xticks(g.columns.to_numpy())
        ax.set_yticks(g.index.to_numpy())
        ax.set_xlabel("j (second run's top j)")
    axes[0].set_ylabel("i (first run's top i)")
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="phi(i, j)")
    fig.suptitle(title, fontsize=11)
    return fig


def sfs_traces_png(traces: pd.DataFrame, events: pd.DataFrame, path: Path, *, title: str) -> None:
    sfs_traces_figure(traces, events, title=title).savefig(path)


def sfs_traces_figure(traces: pd.DataFrame, events: pd.DataFrame, *, title: str) -> Figure:
    """SFS_k per module over steps; merged modules start where their parents end; events as vertical lines."""
    fig = Figure(figsize=(10, 5.6), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    modules = list(dict.fromkeys(traces.sort_values("step")["module"]))
    colors = {m: f"C{i % 10}" for i, m in enumerate(modules)}
    for m in modules:
        t = traces[traces.module == m]
        ax.plot(t.step, t.value, marker=".", ms=3, color=colors[m], label=m)
        for p in filter(None, t.parents.iloc[0].split(",")) if len(t) else []:
            pt = traces[(traces.module == p) & (traces.step <= t.step.iloc[0])]
            if len(pt):
                ax.plot([pt.step.iloc[-1], t.step.iloc[0]], [pt.value.iloc[-1], t.value.iloc[0]], ls=":", color=colors[m], lw=1)
    for e in events.itertuples(index=False):
        merge = e.kind.startswith("merge")
        ax.axvline(e.step, color="red" if merge else "purple", lw=0.8, ls="--")
        short = "+".join(m.removeprefix("lor2c.") for m in e.modules.split(",") if m)
        label = f"{e.kind.replace('_', ' ')} {short} @{e.step}"
        # above the plot, clear of the traces; a merge and its injection one step later sit on either side of the lines
        ax.annotate(label, (e.step, 1.0), xycoords=ax.get_xaxis_transform(), xytext=(-2 if merge else 2, 3), textcoords="offset points",
                    rotation=90, ha="right" if merge else "left", va="bottom", fontsize=7, color="red" if merge else "purple")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("SFS_k: share of singular-value mass beyond the top k")
    fig.suptitle(title, fontsize=11, y=0.995)
    ax.legend(fontsize=7, ncol=3, loc="best")
    fig.subplots_adjust(top=0.74, bottom=0.11, left=0.08, right=0.98)
    return fig


def sfs_traces_html(traces: pd.DataFrame, events: pd.DataFrame, path: Path, *, title: str) -> None:
    sfs_traces_plotly(traces, events, title=title).write_html(path, include_plotlyjs=True, full_html=True)


def sfs_traces_plotly(traces: pd.DataFrame, events: pd.DataFrame, *, title: str) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for m, t in traces.groupby("module", sort=False):
        fig.add_trace(go.Scatter(x=t.step, y=t.value, mode="lines+markers", name=m))
    for e in events.itertuples(index=False):
        fig.add_vline(x=e.step, line_dash="dash", line_color="red" if e.kind.startswith("merge") else "purple",
                      annotation_text=f"{e.kind} {e.modules}", annotation_textangle=-90)
    fig.update_layout(title=title, xaxis_title="optimizer step", yaxis_title="SFS_k", height=550, width=1100)
    return fig


def update_rank_figure(modules: pd.DataFrame, *, title: str) -> Figure:
    """Per run: effective rank of every module's update (box over modules) and its cap, on a log axis."""
    runs = list(dict.fromkeys(modules["run"]))
    fig = Figure(figsize=(max(6.0, 0.9 * len(runs) + 2), 4.2), dpi=120)
    ax = fig.subplots()
    data = [modules.loc[modules.run == r, "effective_rank"].dropna().to_numpy() for r in runs]
    ax.boxplot(data, tick_labels=runs, showfliers=True)
    caps = [int(modules.loc[modules.run == r, "n"].max()) for r in runs]
    ax.scatter(range(1, len(runs) + 1), caps, marker="_", s=400, color="k", label="cap: values the route yields")
    ax.set_yscale("log")
    ax.set_ylabel("effective rank exp(H(σ²/Σσ²))")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    for label in ax.get_xticklabels():
        label.set_rotation(30)
        label.set_ha("right")
    fig.tight_layout()
    return fig
