"""Gradient-flow analyses: the LoR2C/LoRA gradient-ratio surface (paper Fig. 7) and activation-gradient profiles.

Rules, stated once:
- Epoch value = mean of the per-step statistic over the recorded steps of that epoch.
- A module spanning blocks a..b (a merge) gives its value to every layer it covers; modules without a
  layer (``lor2c.shared``, ``global``) are not part of the per-layer surface.
- Ratio = numerator / denominator at the same (epoch, layer). Its uncertainty, the tests of the paper's claims and
  the summary live in ``gradient_claims``. A row's ``status`` says why a ratio is
  missing: ``numerator_missing`` / ``denominator_missing`` (a method does not cover that layer or epoch),
  ``zero_denominator`` / ``zero_both`` (the statistic is exactly 0, e.g. factor A at step 1 when B = 0):
  the ratio is then NaN by rule, never inf and never an unexplained NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lor2c_probe.record.naming import module_span

RATIO_COLUMNS = ["epoch", "layer", "numerator", "denominator", "ratio", "status"]


class AlignmentError(ValueError):
    """Two runs cannot be compared cell by cell."""


def _check_choice(df: pd.DataFrame, column: str, value: str, what: str) -> None:
    present = sorted(df[column].unique())
    if value not in present:
        raise ValueError(f"{what} {value!r} is not recorded; available: {', '.join(map(str, present))}")


def module_layer_values(grads: pd.DataFrame, *, stat: str = "mean_abs", factor: str = "all") -> pd.DataFrame:
    """Per (epoch, layer): the epoch-mean ``stat`` of the module(s) covering that layer.

    Returns columns epoch, layer, value, modules (comma-joined ids; several modules on one layer are averaged).
    """
    g = grads[grads["module"] != "global"]
    if g.empty:
        raise ValueError("the grads table has no module rows")
    _check_choice(g, "stat", stat, "statistic")
    _check_choice(g, "factor", factor, "factor")
    sel = g[(g["stat"] == stat) & (g["factor"] == factor)]
    per = sel.groupby(["epoch", "module"], as_index=False)["value"].mean()
    rows = []
    for epoch, module, value in per.itertuples(index=False):
        span = module_span(module)
        if span is None:
            continue
        for layer in range(span[0], span[1] + 1):
            rows.append((epoch, layer, value, module))
    out = pd.DataFrame(rows, columns=["epoch", "layer", "value", "modules"])
    return (
        out.groupby(["epoch", "layer"], as_index=False)
        .agg(value=("value", "mean"), modules=("modules", lambda m: ",".join(sorted(m))))
        .sort_values(["epoch", "layer"], ignore_index=True)
    )


def module_layer_steps(grads: pd.DataFrame, *, stat: str = "mean_abs", factor: str = "all") -> pd.DataFrame:
    """Per (step, epoch, layer): the ``stat`` of the module(s) covering that layer at that step (several averaged);
    the per-step series behind ``module_layer_values`` (for block-bootstrap intervals). Columns step, epoch, layer, value."""
    g = grads[(grads["module"] != "global") & (grads["stat"] == stat) & (grads["factor"] == factor)]
    spans = {m: module_span(m) for m in g["module"].unique()}
    rows = [(step, epoch, layer, value) for step, epoch, module, value in g[["step", "epoch", "module", "value"]].itertuples(index=False)
            if (span := spans[module]) is not None for layer in range(span[0], span[1] + 1)]
    out = pd.DataFrame(rows, columns=["step", "epoch", "layer", "value"])
    return out.groupby(["step", "epoch", "layer"], as_index=False)["value"].mean()


def activation_steps(activation_grads: pd.DataFrame, *, stat: str = "l2") -> pd.DataFrame:
    """Per (step, epoch, layer): ||dL/dh_layer|| (or mean |.|), the series behind ``activation_grad_profile``."""
    sel = activation_grads[activation_grads["stat"] == stat]
    return sel.groupby(["step", "epoch", "layer"], as_index=False)["value"].mean()


def ratio_table(num: pd.DataFrame, den: pd.DataFrame) -> pd.DataFrame:
    """Align two (epoch, layer, value) tables and divide, with the status rules of this module."""
    m = pd.merge(
        num[["epoch", "layer", "value"]].rename(columns={"value": "numerator"}),
        den[["epoch", "layer", "value"]].rename(columns={"value": "denominator"}),
        on=["epoch", "layer"],
        how="outer",
    ).sort_values(["epoch", "layer"], ignore_index=True)
    n, d = m["numerator"], m["denominator"]
    status = np.select(
        [n.isna(), d.isna(), (d == 0) & (n == 0), d == 0],
        ["numerator_missing", "denominator_missing", "zero_both", "zero_denominator"],
        default="ok",
    )
    m["status"] = status
    m["ratio"] = np.where(status == "ok", n / d.where(d != 0, np.nan), np.nan)
    return m[RATIO_COLUMNS]


def covered(grads: pd.DataFrame) -> tuple[list[int], list[int]]:
    """(epochs, layers) a run's grads table covers."""
    g = grads[grads["module"] != "global"]
    layers = set()
    for module in g["module"].unique():
        if (span := module_span(module)) is not None:
            layers.update(range(span[0], span[1] + 1))
    return sorted(int(e) for e in g["epoch"].unique()), sorted(layers)


def check_alignment(num_grads: pd.DataFrame, den_grads: pd.DataFrame, names: tuple[str, str] = ("numerator", "denominator")) -> None:
    """Raise AlignmentError naming the epochs or layers one run has and the other lacks."""
    (ne, nl), (de, dl) = covered(num_grads), covered(den_grads)
    for what, a, b in (("epochs", ne, de), ("layers", nl, dl)):
        if a != b:
            only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
            parts = [f"{names[0]} alone has {only_a}" if only_a else "", f"{names[1]} alone has {only_b}" if only_b else ""]
            raise AlignmentError(f"{what} do not align: {'; '.join(p for p in parts if p)}")


def gradient_ratio_surface(
    numerator: pd.DataFrame, denominator: pd.DataFrame, *, stat: str = "mean_abs", factor: str = "all"
) -> pd.DataFrame:
    """Fig. 7: numerator-run module gradient / denominator-run module gradient per (epoch, layer).

    Args:
        numerator: the ``grads`` table of e.g. the LoR2C run.
        denominator: the ``grads`` table of e.g. the LoRA run (same seed, data order and schedule).
        stat: ``mean_abs`` (the paper's "mean gradient"), ``l2`` or ``max_abs``.
        factor: ``all`` (element-weighted over the module), ``A`` or ``B``.

    Returns:
        Columns epoch, layer, numerator, denominator, ratio, status.
    """
    return ratio_table(
        module_layer_values(numerator, stat=stat, factor=factor),
        module_layer_values(denominator, stat=stat, factor=factor),
    )


def activation_grad_profile(activation_grads: pd.DataFrame, *, stat: str = "l2") -> pd.DataFrame:
    """Per (epoch, layer): the epoch-mean of ||dL/dh_layer|| (or mean |.|); layer L is the encoder output."""
    if activation_grads.empty:
        raise ValueError("the activation_grads table is empty")
    _check_choice(activation_grads, "stat", stat, "statistic")
    sel = activation_grads[activation_grads["stat"] == stat]
    return sel.groupby(["epoch", "layer"], as_index=False)["value"].mean().sort_values(["epoch", "layer"], ignore_index=True)


def activation_grad_ratio(numerator: pd.DataFrame, denominator: pd.DataFrame, *, stat: str = "l2") -> pd.DataFrame:
    """The same ratio and status rules for the activation-gradient profiles of two runs."""
    return ratio_table(activation_grad_profile(numerator, stat=stat), activation_grad_profile(denominator, stat=stat))


def _spearman(g: pd.DataFrame, min_layers: int) -> float:
    """Spearman rho(layer, ratio); NaN (not a warning) when too few layers or the ratio is constant."""
    if len(g) < min_layers or g["ratio"].nunique() < 2:
        return np.nan
    return float(g["layer"].corr(g["ratio"], method="spearman"))


def trend_by_epoch(surface: pd.DataFrame) -> pd.DataFrame:
    """Per epoch: Spearman rho(layer, ratio) (negative = ratio rises toward lower layers), the ratio at the
    lowest and highest layer, and how many layers have ratio > 1."""
    rows = []
    for epoch, g in surface[surface["status"] == "ok"].groupby("epoch"):
        g = g.sort_values("layer")
        rho = _spearman(g, 2)
        rest = g.iloc[:-1]  # leave the highest layer out: is the trend carried by one layer?
        rho_rest = _spearman(rest, 3)
        rows.append(
            {
                "epoch": int(epoch),
                "layers": len(g),
                "spearman_rho": float(rho),
                "spearman_rho_without_top": float(rho_rest),
                "ratio_lowest_layer": float(g["ratio"].iloc[0]),
                "ratio_highest_layer": float(g["ratio"].iloc[-1]),
                "lowest_over_highest": float(g["ratio"].iloc[0] / g["ratio"].iloc[-1]),
                "layers_ratio_above_1": int((g["ratio"] > 1).sum()),
            }
        )
    return pd.DataFrame(rows)
