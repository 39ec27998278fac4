"""Method comparisons with their uncertainty: accuracy differences paired by seed, and per example (McNemar).

- Paired by seed: each method's final metric minus the baseline's at the same seed (same data order and schedule);
  the mean difference with a Student-t interval and p (``stats.t_test``), and the exact sign-flip p beside it (it cannot
  reach p < 0.0625 below 6 seeds, so it is reported, not used for the verdict).
- Two claims per method, each with its verdict at alpha = 0.05:
  ``better``: the difference is above 0 (t-test); ``parity``: the 95% interval lies within +-``margin`` (an
  equivalence reading: holds inside, does not hold when the interval lies wholly below -margin, else cannot tell).
  Where parity cannot be told, ``parity_seeds`` says how many seeds would decide it (the interval inside +-margin, or
  clear of it) if the differences' mean and SD stayed as observed: a planning estimate, not a test.
- Per example: on the shared eval set, exact McNemar per seed (examples right under one method and wrong under the
  other), with a paired-proportion interval; Holm across a method's seeds.
Each method against the baseline is its own claim (one row of the paper's Table I), so nothing is corrected across
methods; a claim tested in many cells (seeds here, epochs for the trend, layers for φ) is Holm-corrected over them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lor2c_probe.analysis import stats

PARITY_MARGIN = 0.01  # 1 accuracy point: the gap the issue asks the Table I comparison to resolve


def paired_by_seed(values: pd.DataFrame, baseline: str, *, margin: float = PARITY_MARGIN) -> pd.DataFrame:
    """``values``: columns group, seed, value (one final metric per run). One row per group other than ``baseline``."""
    base = values[values["group"] == baseline].set_index("seed")["value"]
    rows = []
    for group, g in values[values["group"] != baseline].groupby("group", sort=False):
        g = g.set_index("seed")["value"]
        seeds = sorted(set(g.index) & set(base.index))
        d = (g.loc[seeds] - base.loc[seeds]).to_numpy(dtype=float)
        t = stats.t_test(d)  # identical differences over seeds: no interval, p NaN (cannot tell)
        flip = stats.paired_permutation(g.loc[seeds].to_numpy(dtype=float), base.loc[seeds].to_numpy(dtype=float)) if seeds else None
        par = parity(t.low, t.high, margin)
        sd = float(d.std(ddof=1)) if len(d) >= 2 else np.nan
        need = stats.seeds_for_halfwidth(sd, abs(margin - abs(t.estimate))) if par == "cannot tell" and np.isfinite(t.low) else np.nan
        rows.append({"group": group, "baseline": baseline, "seeds": t.n, "identical": t.identical, "difference": t.estimate, "low": t.low, "high": t.high,
                     "p": t.p, "p_sign_flip": flip.p if flip else np.nan, "better": stats.verdict(t.p, t.low, t.high, claim_sign=+1),
                     "parity": par, "margin": margin, "sd": sd, "parity_seeds": need})
    return pd.DataFrame(rows)


def parity(low: float, high: float, margin: float) -> str:
    """Equivalence within +-margin from a 95% interval of the difference."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "cannot tell"
    if -margin <= low and high <= margin:
        return "holds"
    if high < -margin or low > margin:
        return "does not hold"
    return "cannot tell"


def final_predictions(predictions: pd.DataFrame, split: str = "eval") -> pd.DataFrame:
    """The last evaluation's rows of ``split`` (the final eval), sorted by example."""
    sel = predictions[predictions["split"] == split]
    return sel[sel["step"] == sel["step"].max()].sort_values("example", ignore_index=True)


def per_example(preds: dict[tuple[str, int], pd.DataFrame], baseline: str) -> pd.DataFrame:
    """``preds``: (group, seed) -> final ``predictions`` rows. Exact McNemar of each group against the baseline run of
    its seed; Holm across each group's seeds. Classification only (correct = prediction == label)."""
    rows = []
    for (group, seed), p in preds.items():
        if group == baseline or (baseline, seed) not in preds:
            continue
        b = preds[(baseline, seed)]
        if len(p) != len(b) or not np.array_equal(p["label"].to_numpy(), b["label"].to_numpy()):
            raise ValueError(f"{group} and {baseline} (seed {seed}) were evaluated on different examples; McNemar needs the same eval set")
        m = stats.mcnemar(p["prediction"].to_numpy() == p["label"].to_numpy(), b["prediction"].to_numpy() == b["label"].to_numpy())
        rows.append({"group": group, "baseline": baseline, "seed": seed, "examples": m.n, "only_group": m.only_a, "only_baseline": m.only_b,
                     "difference": m.difference, "low": m.low, "high": m.high, "p": m.p})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["p_holm"] = out.groupby("group")["p"].transform(lambda p: stats.holm(p.to_numpy()))
    out["verdict"] = [("differ" if p < stats.ALPHA else "no difference shown") for p in out["p_holm"]]
    return out


def _pt(x: float) -> str:
    return f"{100 * x:+.2f}" if np.isfinite(x) else "undefined"


def _seeds_note(parity_seeds: float) -> str:
    if not np.isfinite(parity_seeds):
        return ""
    return f" (about {int(parity_seeds)} seeds would decide it if the differences' mean and SD stayed as observed)"


def summarize(paired: pd.DataFrame, mcnemar: pd.DataFrame, *, metric: str) -> str:
    """Sentences with test, n, effect, interval and verdict (differences in points of ``metric`` x 100)."""
    lines = []
    for r in paired.itertuples(index=False):
        why = {0: "no seed shared with the baseline", 1: "one seed"}.get(r.seeds, "the seeds' differences are identical" if r.identical else "")
        ci = f"[{_pt(r.low)}, {_pt(r.high)}]" if np.isfinite(r.low) else f"[no interval: {why}]"
        p = f"{r.p:.2g}" if np.isfinite(r.p) else "undefined"
        flip = f"{r.p_sign_flip:.2g}" if np.isfinite(r.p_sign_flip) else "undefined"
        lines.append(f"{r.group} - {r.baseline}: final {metric} difference {_pt(r.difference)} points {ci} (95%, paired t across "
                     f"n = {r.seeds} seeds, p = {p}; exact sign-flip p = {flip}). "
                     f"Better than {r.baseline}: {r.better}. Parity within +-{100 * r.margin:g} point(s): {r.parity}{_seeds_note(r.parity_seeds)}.")
    for group, g in (mcnemar.groupby("group", sort=False) if not mcnemar.empty else []):
        parts = [f"seed {int(x.seed)}: {x.only_group} vs {x.only_baseline} discordant, {_pt(x.difference)} points [{_pt(x.low)}, {_pt(x.high)}], "
                 f"p = {x.p:.2g} (Holm {x.p_holm:.2g})" for x in g.itertuples(index=False)]
        lines.append(f"{group} vs {g.baseline.iloc[0]} per example (exact McNemar on {int(g.examples.iloc[0]):,} shared eval examples): "
                     + "; ".join(parts) + f". Differ at alpha = 0.05 in {int((g.verdict == 'differ').sum())} of {len(g)} seeds.")
    return "\n".join(lines)
