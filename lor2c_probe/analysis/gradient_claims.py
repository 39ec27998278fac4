"""The gradient-ratio claims with their uncertainty: the surface over seeds with 95% intervals, the trend test, the
"ratio above 1" test, and the summary that states each test, its n, the effect with its interval and the verdict.

Inputs are per-seed ratio tables (``ratio_table`` rows plus a ``seed`` column) and, for one seed, per-step values.
Rules, stated once:
- Cell value and interval: with two or more seeds, the geometric mean of the per-seed ratios and the Student-t interval
  of their logs, exponentiated (``stats.t_test``: a bootstrap over 3-5 seeds under-covers). A ratio is multiplicative
  and positive: on the linear scale two seeds' t interval (t = 12.7) reached below zero in most cells of a 12-layer
  surface; on the log scale it cannot, and it is the scale the "above 1" test uses. A cell where a seed's ratio is 0
  (a numerator of exactly 0) falls back to the arithmetic mean and its linear t interval, and says so in ``ci_method``.
  With one seed, a moving-block bootstrap over the epoch's steps of the ratio of step means (within-run noise only: it
  says nothing about another seed).
- Trend ("the ratio rises toward lower layers"): per epoch, each seed's Spearman ρ(layer, ratio); their mean with a
  Student-t interval and a one-sample t-test across seeds (n = seeds); Holm across the epochs judged; verdict at
  α = 0.05 with the claimed sign ρ < 0. Repeated without the highest layer. The pooled permutation p (layers
  shuffled within each seed) is reported beside it as within-run evidence only.
- Above 1 ("LoR2C's modules receive larger gradients"): per seed the geometric mean ratio over the defined cells; a
  one-sample t-test of its log against 0 across seeds (n = seeds). With one seed: cannot tell (n = 1); the cells whose
  step interval lies wholly above or below 1 are counted, as within-run evidence only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from lor2c_probe.analysis import stats

SURFACE_COLUMNS = ["epoch", "layer", "numerator", "denominator", "ratio", "status", "ci_low", "ci_high", "n_seeds", "ci_method"]
CI_SEEDS, CI_STEPS = "t over seeds (log scale)", "block bootstrap over steps"
CI_SEEDS_LINEAR = "t over seeds (linear: a ratio of 0)"


def step_intervals(num_steps: pd.DataFrame, den_steps: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Per (epoch, layer): a block-bootstrap interval of mean(numerator) / mean(denominator) over the steps both runs
    recorded. Inputs: columns step, epoch, layer, value (one run each, same seed and data order)."""
    m = pd.merge(num_steps, den_steps, on=["step", "epoch", "layer"], suffixes=("_n", "_d")).sort_values("step")
    rows = []
    for (epoch, layer), g in m.groupby(["epoch", "layer"]):
        iv = stats.block_bootstrap_ratio(g["value_n"].to_numpy(), g["value_d"].to_numpy(), seed=seed + 7919 * int(layer) + int(epoch))
        rows.append((int(epoch), int(layer), iv.low, iv.high))
    return pd.DataFrame(rows, columns=["epoch", "layer", "ci_low", "ci_high"])


def aggregate_seeds(per_seed: pd.DataFrame, step_ci: pd.DataFrame | None = None) -> pd.DataFrame:
    """One surface from per-seed ratio tables (columns seed + ``RATIO_COLUMNS``): per (epoch, layer) the geometric mean
    over the seeds whose ratio is defined, its interval, and how many seeds it rests on (``numerator`` and
    ``denominator`` are arithmetic means over those seeds). A cell no seed defines keeps the first seed's status (why it
    is undefined)."""
    rows = []
    n_total = per_seed["seed"].nunique()
    for (epoch, layer), g in per_seed.groupby(["epoch", "layer"], sort=True):
        ok = g[g["status"] == "ok"]
        if ok.empty:
            rows.append((epoch, layer, g["numerator"].mean(), g["denominator"].mean(), np.nan, g["status"].iloc[0], np.nan, np.nan, 0, ""))
            continue
        r = ok["ratio"].to_numpy(dtype=float)
        if n_total > 1 and len(r) == 1:  # only one seed defines this cell: its ratio, no interval
            est, low, high, how = float(r[0]), np.nan, np.nan, f"one seed of {n_total}: no interval"
        elif n_total > 1 and (r > 0).all():
            t = stats.geometric_t(r)
            est, low, high, how = t.estimate, t.low, t.high, CI_SEEDS
        elif n_total > 1:
            t = stats.t_test(r)
            est, low, high, how = t.estimate, t.low, t.high, CI_SEEDS_LINEAR
        else:
            est, low, high, how = float(r.mean()), np.nan, np.nan, CI_STEPS
        rows.append((epoch, layer, ok["numerator"].mean(), ok["denominator"].mean(), est, "ok", low, high, len(ok), how))
    out = pd.DataFrame(rows, columns=SURFACE_COLUMNS)
    if n_total == 1 and step_ci is not None and not step_ci.empty:
        ci = out[["epoch", "layer"]].merge(step_ci, on=["epoch", "layer"], how="left")
        defined = out["status"] == "ok"
        out.loc[defined, "ci_low"] = ci.loc[defined, "ci_low"].to_numpy()
        out.loc[defined, "ci_high"] = ci.loc[defined, "ci_high"].to_numpy()
    out["epoch"], out["layer"], out["n_seeds"] = out["epoch"].astype(int), out["layer"].astype(int), out["n_seeds"].astype(int)
    return out


def _seed_rhos(g: pd.DataFrame) -> np.ndarray:
    """Each seed's Spearman ρ(layer, ratio) over its layers (NaN-free: a seed with < 3 layers or a constant ratio has none)."""
    out = []
    for _, s in g.groupby("seed"):
        if len(s) >= 3 and np.ptp(s["layer"].to_numpy(dtype=float)) > 0 and np.ptp(s["ratio"].to_numpy(dtype=float)) > 0:
            out.append(float(sps.spearmanr(s["layer"], s["ratio"]).statistic))
    return np.asarray(out, dtype=float)


def _trend(g: pd.DataFrame, perms: int, seed: int) -> dict[str, Any]:
    """Seed-level test of ρ < 0 on one epoch's (layer, seed) pairs, and the pooled within-seed permutation p beside it."""
    rhos = _seed_rhos(g)
    t = stats.t_test(rhos)
    within = stats.spearman_test(g["layer"], g["ratio"], groups=g["seed"], perms=perms, reps=2, seed=seed)
    return {"n": within.n, "seeds": len(rhos), "rho": t.estimate, "rho_low": max(-1.0, t.low) if np.isfinite(t.low) else np.nan,
            "rho_high": min(1.0, t.high) if np.isfinite(t.high) else np.nan, "p": t.p, "identical": t.identical,
            "p_within": within.p, "rho_seeds": ", ".join(f"{r:+.2f}" for r in rhos)}


def trend_tests(per_seed: pd.DataFrame, *, perms: int = 5_000, seed: int = 0) -> pd.DataFrame:
    """Per epoch, the claim "the ratio rises toward lower layers" (ρ < 0), with and without the highest layer.

    The unit is the seed: each seed's Spearman ρ(layer, ratio); their mean with a Student-t interval (clipped to
    [-1, 1]) and a one-sample t-test (n = seeds), Holm across epochs, the verdict at alpha = 0.05. Beside it, ``p_within``:
    the pooled permutation p with layers shuffled within each seed. That p treats one run's layers as exchangeable,
    which a seed's smooth layer profile is not: with no trend in the method, random-walk profiles pass it far more
    often than alpha (tests/analysis/test_gradient_claims.py), so it is within-run evidence and never decides. One
    seed, or seeds whose ρ are all equal (no spread): cannot tell."""
    ok = per_seed[per_seed["status"] == "ok"]
    rows = []
    for epoch, g in ok.groupby("epoch"):
        top = g["layer"].max()
        full = _trend(g, perms, seed + int(epoch))
        rest = _trend(g[g["layer"] != top], perms, seed + int(epoch))
        rows.append({"epoch": int(epoch), "layers": int(g["layer"].nunique()), **full,
                     **{k.replace("rho", "rho_without_top") if k.startswith("rho_") or k == "rho" else f"{k}_without_top": v
                        for k, v in rest.items() if k != "rho_seeds"}, "rho_seeds_without_top": rest["rho_seeds"]})
    t = pd.DataFrame(rows)
    if t.empty:
        return t
    t["p_holm"] = stats.holm(t["p"].to_numpy())
    t["p_without_top_holm"] = stats.holm(t["p_without_top"].to_numpy())
    t["verdict"] = [stats.verdict(p, lo, hi, claim_sign=-1) for p, lo, hi in zip(t.p_holm, t.rho_low, t.rho_high)]
    t["verdict_without_top"] = [stats.verdict(p, lo, hi, claim_sign=-1)
                                for p, lo, hi in zip(t.p_without_top_holm, t.rho_without_top_low, t.rho_without_top_high)]
    return t


def above_one(per_seed: pd.DataFrame) -> stats.MeanTest:
    """One-sample t-test across seeds of each seed's log geometric-mean ratio over its defined cells (null: log 1 = 0)."""
    ok = per_seed[(per_seed["status"] == "ok") & (per_seed["ratio"] > 0)]
    logs = ok.groupby("seed")["ratio"].apply(lambda r: float(np.log(r).mean()))
    return stats.t_test(logs.to_numpy())


def lowest_input_test(act_per_seed: pd.DataFrame) -> tuple[int, stats.MeanTest] | None:
    """"More gradient reaches the lowest block input": the last epoch's ‖dL/dh‖ ratio at the lowest layer, one value per
    seed; a one-sample t-test of its log (n = seeds). None when no seed defines that cell."""
    a = act_per_seed[(act_per_seed["status"] == "ok") & (act_per_seed["ratio"] > 0)]
    cell = a[(a["epoch"] == a["epoch"].max()) & (a["layer"] == a["layer"].min())]
    if cell.empty:
        return None
    return int(cell["layer"].iloc[0]), stats.t_test(np.log(cell["ratio"].to_numpy()))


def _methods(surface: pd.DataFrame) -> str:
    """The interval methods the surface's cells used (several when a cell fell back to the linear scale)."""
    used = [m for m in surface["ci_method"].dropna().unique() if m]
    return "; ".join(used) if used else CI_SEEDS


def _n(x: float, spec: str = ".3g") -> str:
    return format(x, spec) if np.isfinite(x) else "undefined"


def _p(p: float) -> str:
    return "undefined" if not np.isfinite(p) else (f"{p:.2g}" if p >= 0.001 else "< 0.001")


def _ci(lo: float, hi: float, spec: str = ".3g") -> str:
    return f"[{_n(lo, spec)}, {_n(hi, spec)}]" if np.isfinite(lo) and np.isfinite(hi) else "[no interval]"


def overall(verdicts: list[str]) -> str:
    """A claim tested in several epochs: holds / does not hold only when every epoch agrees."""
    if not verdicts:
        return "cannot tell (no epoch could be tested)"
    n, holds, fails = len(verdicts), verdicts.count("holds"), verdicts.count("does not hold")
    if holds == n:
        return f"holds (in all {n} epochs)"
    if fails == n:
        return f"does not hold (in all {n} epochs)"
    if holds == 0 and fails == 0:
        return f"cannot tell (no epoch of {n} significant)"
    return f"mixed: holds in {holds} of {n} epochs, does not hold in {fails}, cannot tell in {n - holds - fails}"


def summarize(per_seed: pd.DataFrame, surface: pd.DataFrame, *, numerator: str, denominator: str, stat: str, factor: str,
              paper_claim: bool = False, trend: pd.DataFrame | None = None, method: str | None = "lor2c") -> str:
    """The reading of one numerator over the baseline: per epoch the effect at the ends with intervals and the trend test;
    then the two claims, each with test, n, effect, interval and verdict at α = 0.05."""
    seeds = sorted(int(s) for s in per_seed["seed"].unique())
    trend = trend_tests(per_seed) if trend is None else trend
    head = (f"Gradient ratio {numerator} / {denominator} (statistic {stat}, factor {factor}), epoch means of per-step values; "
            f"{len(seeds)} seed(s) ({', '.join(map(str, seeds))}); cell intervals: "
            f"{_methods(surface) if len(seeds) > 1 else CI_STEPS} (95%).")
    lines = [head]
    ok = surface[surface["status"] == "ok"]
    if ok.empty:
        return "\n".join(lines + ["No (epoch, layer) cell has a defined ratio: no claim can be tested."] + _undefined(surface, numerator, denominator))
    for r in trend.itertuples(index=False) if not trend.empty else []:
        cells = ok[ok["epoch"] == r.epoch].sort_values("layer")
        lo, hi = cells.iloc[0], cells.iloc[-1]
        line = (f"  epoch {r.epoch}: ratio {_n(lo.ratio)} {_ci(lo.ci_low, lo.ci_high)} at layer {lo.layer}, {_n(hi.ratio)} "
                f"{_ci(hi.ci_low, hi.ci_high)} at layer {hi.layer}; {int((cells.ratio > 1).sum())}/{len(cells)} layers above 1")
        if np.isfinite(r.rho) and r.seeds >= 2:
            why = " (the seeds' rho are equal: no spread)" if r.identical else ""
            line += (f"; Spearman rho(layer, ratio) per seed {r.rho_seeds}: mean {r.rho:+.2f} {_ci(r.rho_low, r.rho_high, '+.2f')}, "
                     f"t-test across n = {r.seeds} seeds p = {_p(r.p)} (Holm {_p(r.p_holm)}){why}: {r.verdict}; pooled within-seed "
                     f"permutation p = {_p(r.p_within)} over {r.n} (layer, seed) pairs (within-run evidence)")
            if np.isfinite(r.rho_without_top):
                line += (f"; without layer {hi.layer}: mean rho {r.rho_without_top:+.2f} "
                         f"{_ci(r.rho_without_top_low, r.rho_without_top_high, '+.2f')}, p = {_p(r.p_without_top_holm)} (Holm), "
                         f"n = {r.seeds_without_top} seeds: {r.verdict_without_top}")
        elif np.isfinite(r.rho):
            line += (f"; Spearman rho(layer, ratio) = {r.rho:+.2f}, permutation p over its {r.n} layers = {_p(r.p_within)} "
                     f"(within-run evidence): cannot tell at n = 1 seed")
            if np.isfinite(r.rho_without_top):
                line += f"; without layer {hi.layer}: rho = {r.rho_without_top:+.2f}, p = {_p(r.p_within_without_top)}"
        else:
            line += "; too few layers with a ratio (or a constant ratio) for a trend test"
        lines.append(line)
    on = "" if method == "lor2c" else f", tested on {numerator}"  # a variant (ShareLoR2C, IMLoR2C) is named
    subject = (f"Paper claim (LoR2C's gradient ratio to LoRA rises toward lower layers){on}" if paper_claim
               else f"Trend: the {numerator} / {denominator} ratio rises toward lower layers")
    judged = trend.dropna(subset=["rho"]) if not trend.empty else trend
    verdicts = list(judged["verdict"]) if not judged.empty else []
    if not judged.empty and judged["seeds"].max() < 2:
        lines.append(f"{subject}: cannot tell at n = 1 seed (within-run evidence above).")
    else:
        lines.append(f"{subject}: {overall(verdicts)}; test: each seed's Spearman rho, one-sample t-test across seeds, Holm across "
                     "epochs, alpha = 0.05.")
    if verdicts and "holds" in verdicts and "holds" not in list(judged["verdict_without_top"]):
        lines.append("Caution: without the highest layer no epoch shows a significant rise, so the rise may rest on that "
                     "layer alone (not itself tested).")
    a = above_one(per_seed)
    claim2 = (f"Paper claim (LoR2C's modules receive larger gradients than LoRA's){on}" if paper_claim
              else f"{numerator}'s module gradient exceeds {denominator}'s")
    if a.n >= 2:
        v = stats.verdict(a.p, a.low, a.high, claim_sign=+1)
        lines.append(f"{claim2}: {v}; geometric-mean ratio over cells {_n(np.exp(a.estimate))} "
                     f"{_ci(np.exp(a.low), np.exp(a.high))}, one-sample t-test of its log across seeds, p = {_p(a.p)}, n = {a.n} seeds.")
    else:
        above = int((ok["ci_low"] > 1).sum())
        below = int((ok["ci_high"] < 1).sum())
        gm = float(np.exp(np.log(ok.loc[ok.ratio > 0, "ratio"]).mean())) if (ok.ratio > 0).any() else float("nan")
        lines.append(f"{claim2}: cannot tell at n = 1 seed (geometric-mean ratio over cells {_n(gm)}); within this run, "
                     f"{above} of {len(ok)} cells have a step interval wholly above 1 and {below} wholly below.")
    over = " (geometric mean over seeds)" if len(seeds) > 1 else ""
    lines.append(f"Share of (epoch, layer) cells where the ratio{over} exceeds 1: {(ok.ratio > 1).mean():.0%}.")
    return "\n".join(lines + _undefined(surface, numerator, denominator))


REASONS = {
    "numerator_missing": "{num} records no module there",
    "denominator_missing": "{den} records no module there",
    "zero_denominator": "{den}'s statistic is exactly 0 (e.g. a zero-initialised factor at the first step)",
    "zero_both": "both statistics are exactly 0",
}


def _undefined(surface: pd.DataFrame, numerator: str, denominator: str) -> list[str]:
    """One line per reason a cell has no ratio, naming the layers."""
    lines = []
    for status, g in surface[surface.status != "ok"].groupby("status"):
        why = REASONS.get(str(status), str(status)).format(num=numerator, den=denominator)
        lines.append(f"Cells without a ratio: {len(g)} ({status}: {why}) at layers {sorted(int(x) for x in g['layer'].unique())}.")
    zero = surface["status"].isin(["zero_denominator", "zero_both"]).groupby(surface["layer"]).all()
    if zl := [int(layer) for layer, z in zero.items() if z]:
        lines.append(f"Layers whose statistic is zero in every epoch (no ratio): {zl}.")
    return lines
