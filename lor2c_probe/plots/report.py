"""Figures only the report draws: training curves, activation-gradient profiles, the method comparison.

All take tidy frames (no run directories) and return a matplotlib ``Figure`` or a plotly figure.
``STYLE`` is the report's publication style (readable fonts, light grid), applied with ``rc_context``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter

STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
    "legend.fontsize": 8, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
    "svg.fonttype": "none",  # text stays text in SVG: smaller files, selectable labels
}


def smooth(values: pd.Series, window: int) -> pd.Series:
    """Trailing mean over ``window`` steps (min 1 value), so the curve starts at step 1."""
    return values.rolling(window, min_periods=1).mean()


def loss_window(n_steps: int) -> int:
    return max(1, min(50, n_steps // 15))


def _eval_err(ev: pd.DataFrame) -> list[np.ndarray] | None:
    """Whisker lengths below and above each evaluation from its ``ci_low``/``ci_high`` columns, when present."""
    if "ci_low" not in ev or not ev["ci_low"].notna().any():
        return None
    return [(ev["value"] - ev["ci_low"]).fillna(0).to_numpy(), (ev["ci_high"] - ev["value"]).fillna(0).to_numpy()]


def training_curves_figure(metrics: dict[str, pd.DataFrame], *, headline: str) -> Figure:
    """Left: train loss per step (trailing mean, raw faint). Right: eval ``headline`` at each epoch end, with whiskers
    where the eval rows carry ``ci_low``/``ci_high`` (the report adds each accuracy's Wilson interval)."""
    fig = Figure(figsize=(11, 4.0), dpi=120)
    ax_loss, ax_eval = fig.subplots(1, 2)
    for i, (label, m) in enumerate(metrics.items()):
        color = f"C{i % 10}"
        loss = m[(m.split == "train") & (m.name == "loss")].sort_values("step")
        if len(loss):
            w = loss_window(len(loss))
            ax_loss.plot(loss.step, loss.value, color=color, alpha=0.15, lw=0.6)
            ax_loss.plot(loss.step, smooth(loss.value, w), color=color, lw=1.4, label=label)
        ev = m[(m.split == "eval") & (m.name == headline)].sort_values("step")
        if len(ev):
            err = _eval_err(ev)
            ax_eval.errorbar(ev.step, ev.value, yerr=err, color=color, marker="o", capsize=2 if err is not None else 0, label=label)
    w = loss_window(max((int(((m.split == "train") & (m.name == "loss")).sum()) for m in metrics.values()), default=1))
    ax_loss.set(xlabel="optimizer step", ylabel="train loss (nats)", title=f"Training loss (trailing mean over {w} steps)")
    ax_eval.set(xlabel="optimizer step (epoch end)", ylabel=f"eval {headline}", title=f"Eval {headline} after each epoch")
    for ax in (ax_loss, ax_eval):
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    return fig


def training_curves_plotly(metrics: dict[str, pd.DataFrame], *, headline: str) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("train loss (trailing mean)", f"eval {headline}"))
    for i, (label, m) in enumerate(metrics.items()):
        color = _plotly_color(i)
        loss = m[(m.split == "train") & (m.name == "loss")].sort_values("step")
        if len(loss):
            fig.add_trace(go.Scatter(x=loss.step, y=smooth(loss.value, loss_window(len(loss))), name=label, legendgroup=label,
                                     line={"color": color}), row=1, col=1)
        ev = m[(m.split == "eval") & (m.name == headline)].sort_values("step")
        if len(ev):
            err = _eval_err(ev)
            fig.add_trace(go.Scatter(x=ev.step, y=ev.value, name=label, legendgroup=label, showlegend=not len(loss),
                                     mode="lines+markers", line={"color": color},
                                     error_y=None if err is None else {"type": "data", "array": err[1], "arrayminus": err[0],
                                                                       "symmetric": False, "visible": True}), row=1, col=2)
    fig.update_xaxes(title_text="optimizer step")
    fig.update_yaxes(title_text="train loss (nats)", row=1, col=1)
    evals = pd.concat([m[(m.split == "eval") & (m.name == headline)].value for m in metrics.values()])
    if len(evals):  # plotly pads a lone point to a meaningless range; keep the axis around the values (and their intervals)
        widest = max((float(np.max(e)) for m in metrics.values()
                      if (e := _eval_err(m[(m.split == "eval") & (m.name == headline)])) is not None and len(e[0])), default=0.0)
        pad = max(0.01, 0.1 * float(evals.max() - evals.min()), widest)
        fig.update_yaxes(range=[float(evals.min()) - pad, float(evals.max()) + pad], row=1, col=2)
    fig.update_yaxes(title_text=f"eval {headline}", row=1, col=2)
    fig.update_layout(height=420, width=1100, margin={"t": 50})
    return fig


def activation_profile_figure(profiles: pd.DataFrame, *, stat: str) -> Figure:
    """||dL/dh_i|| against block input i in the last epoch, log scale: where gradient fades. One line per run, or, with
    a ``group`` column whose groups hold several runs (seeds), their geometric mean with a shaded 95% band: the Student-t
    interval of the seeds' log norms, exponentiated (positive, symmetric on the log axis it is drawn on)."""
    from lor2c_probe.analysis.stats import geometric_t

    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    epochs = set()
    key = "group" if "group" in profiles.columns else "method"
    banded = False
    for i, (label, p) in enumerate(profiles.groupby(key, sort=False)):
        last = p[p.epoch == p.groupby("method").epoch.transform("max")]
        epochs.update(int(e) for e in last.epoch.unique())
        color = f"C{i % 10}"
        if last["method"].nunique() < 2:
            last = last.sort_values("layer")
            ax.plot(last.layer, last.value, marker="o", color=color, label=label)
            continue
        positive = last[last.value > 0]  # a norm of exactly 0 has no log; it is left out of the mean
        per = [(layer, geometric_t(g.value.to_numpy())) for layer, g in positive.groupby("layer")]
        layers = [lay for lay, _ in per]
        dropped = "; zero norms left out" if len(positive) < len(last) else ""
        ax.plot(layers, [t.estimate for _, t in per], marker="o", color=color,
                label=f"{label} (geometric mean of {last['method'].nunique()} seeds{dropped})")
        ax.fill_between(layers, [t.low for _, t in per], [t.high for _, t in per], color=color, alpha=0.2, lw=0)
        banded = True
    top = int(profiles.layer.max())
    ax.set_xticks(range(0, top + 1))
    ax.set_xticklabels([str(i) if i < top else f"{i}\n(output)" for i in range(0, top + 1)])
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.tick_params(axis="y", which="minor", labelsize=7)
    when = f"epoch {epochs.pop()}" if len(epochs) == 1 else "each run's last epoch"
    band = "; bands: 95% t interval over seeds, log scale" if banded else ""
    ax.set(xlabel="block input i", ylabel=f"||dL/dh_i|| ({stat}, epoch mean, log scale)",
           title=f"Gradient reaching each block's input ({when}{band})")
    ax.legend()
    fig.tight_layout()
    return fig


def comparison_figure(table: pd.DataFrame, points: pd.DataFrame, *, metric: str) -> Figure:
    """Final ``metric`` per group: each seed a dot, the mean a diamond with its 95% interval over seeds (columns
    ``ci_low``/``ci_high``) as whiskers, and a shaded band of +-2 binomial standard errors of the evaluation (column ``se``),
    so the reader sees both the seed-to-seed spread and which differences the eval set can resolve.
    A dot plot, not bars: the axis does not start at 0, and bars would exaggerate small gaps."""
    fig = Figure(figsize=(max(5.5, 1.25 * len(table) + 2.5), 4.2), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(table))
    for i, r in enumerate(table.itertuples(index=False)):
        color = f"C{i % 10}"
        pts = points[points.group == r.group]["value"].to_numpy()
        ax.plot(np.full(len(pts), i) + np.linspace(-0.08, 0.08, len(pts)) * (len(pts) > 1), pts, "o", color=color, ms=5, alpha=0.6)
        se = getattr(r, "se", None)
        if se is not None and se == se:  # what one eval set can resolve
            ax.add_patch(Rectangle((i - 0.22, r.mean - 2 * se), 0.44, 4 * se, color=color, alpha=0.15, lw=0))
        lo, hi = getattr(r, "ci_low", np.nan), getattr(r, "ci_high", np.nan)
        ax.errorbar([i], [r.mean], yerr=[[r.mean - lo], [hi - r.mean]] if np.isfinite(lo) and np.isfinite(hi) else None, fmt="D",
                    color=color, ecolor="k", ms=8, capsize=5, mec="k")
        ax.annotate(f"{int(r.adapter_params):,} params at end", (i, 0), xycoords=("data", "axes fraction"), xytext=(0, 4),
                    textcoords="offset points", ha="center", fontsize=8, color="#444")
    ax.set_xticks(x)
    ax.set_xticklabels(table["group"], rotation=15, ha="right")
    ax.set_xlim(-0.6, len(table) - 0.4)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo - 0.12 * (hi - lo), hi)
    whiskers = "; whiskers: 95% t interval over seeds" if "ci_low" in table.columns else ""
    whiskers += "; shaded: ±2 SE of the eval set" if "se" in table.columns else ""
    ax.set(ylabel=f"final eval {metric}", title=f"Final eval {metric} per method\n(diamond: mean, dots: single seeds{whiskers})")
    fig.tight_layout()
    return fig


def _plotly_color(i: int) -> str:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    return to_hex(colormaps["tab10"](i % 10))
