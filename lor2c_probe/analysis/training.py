"""Where the eval accuracy flattens, with its uncertainty: did a run train long enough that its last epochs no longer
move its accuracy?

Accuracy only: the rule needs a proportion's sampling error, and the margin is in accuracy points. Per run, from the
accuracy after each epoch:

- ``flat_step``: the first evaluation from which every later one lies within one binomial standard error
  (sqrt(p (1 - p) / n), p the final accuracy, n the eval examples) of the final value: after it the curve moves less
  than the sampling noise of one evaluation. NaN with fewer than two evaluations.
- ``last_gain``: the final accuracy minus the previous evaluation's, what the last epoch added; with per-example
  predictions of those same two evaluations, an exact McNemar test and a paired-proportion 95% interval.

Per group (a method over seeds): ``flat_step`` median and range; the mean last gain with a Student-t interval and p
over seeds (one seed: that run's per-example interval and McNemar p), and the reading ``flattened``: the interval lies
within +-``margin`` (holds), wholly outside it (does not hold), else cannot tell. Seeds whose gains are all equal
give a zero-width t interval that says nothing about the next seed: cannot tell. The margin defaults to the 1 point
the method comparison resolves. It is a per-method statement about the last epoch: it does not bound the drift of a
paired difference between methods, nor what later epochs would add.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lor2c_probe.analysis import stats
from lor2c_probe.analysis.comparison import PARITY_MARGIN, parity


def eval_curve(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """A run's ``metrics`` rows of the eval split for ``metric``: columns step, value, by step (one row per evaluation)."""
    sel = metrics[(metrics["split"] == "eval") & (metrics["name"] == metric)]
    return sel.groupby("step", as_index=False)["value"].last().sort_values("step", ignore_index=True)


def flat_step(steps: np.ndarray, values: np.ndarray, n_eval: int | None) -> float:
    """First step from which every evaluation is within one binomial SE of the last (missing evaluations left out);
    NaN with fewer than two evaluations or without the eval set's size."""
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    v, st = v[ok], np.asarray(steps)[ok]
    if len(v) < 2 or not n_eval or not (0 <= v[-1] <= 1):
        return float("nan")
    se = np.sqrt(v[-1] * (1 - v[-1]) / n_eval)
    outside = np.flatnonzero(np.abs(v - v[-1]) > se)
    return float(st[outside[-1] + 1] if len(outside) else st[0])


def last_two_predictions(predictions: pd.DataFrame, split: str = "eval") -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The rows of the last two evaluations of ``split``, each sorted by example; None with fewer than two."""
    sel = predictions[predictions["split"] == split]
    steps = sorted(sel["step"].unique())
    if len(steps) < 2:
        return None
    prev, last = (sel[sel["step"] == s].sort_values("example", ignore_index=True) for s in steps[-2:])
    return prev, last


@dataclass(frozen=True)
class RunCurve:
    group: str
    seed: int | None
    curve: pd.DataFrame  # from ``eval_curve``
    n_eval: int | None = None  # eval examples (a proportion's n); None when unknown
    last_two: tuple[pd.DataFrame, pd.DataFrame] | None = None  # from ``last_two_predictions`` (accuracy only)


def per_run(runs: list[RunCurve]) -> pd.DataFrame:
    """One row per run: evaluations, final value, flat_step, last_gain with its per-example interval and p."""
    rows = []
    for r in runs:
        c = r.curve
        steps, values = c["step"].to_numpy(), c["value"].to_numpy(dtype=float)
        row = {"group": r.group, "seed": r.seed, "evaluations": len(c), "final": values[-1] if len(c) else np.nan,
               "flat_step": flat_step(steps, values, r.n_eval), "last_step": steps[-1] if len(c) else np.nan,
               "last_gain": values[-1] - values[-2] if len(c) > 1 else np.nan,
               "gain_low": np.nan, "gain_high": np.nan, "gain_p": np.nan}
        if r.last_two is not None and len(c) > 1:
            prev, last = r.last_two
            same_evals = (prev["step"].iloc[0], last["step"].iloc[0]) == (steps[-2], steps[-1])  # the pair last_gain spans
            if same_evals and len(prev) == len(last) and np.array_equal(prev["example"].to_numpy(), last["example"].to_numpy()):
                m = stats.mcnemar(last["prediction"].to_numpy() == last["label"].to_numpy(),
                                  prev["prediction"].to_numpy() == prev["label"].to_numpy())
                row.update(gain_low=m.low, gain_high=m.high, gain_p=m.p)
        rows.append(row)
    return pd.DataFrame(rows)


def summary(runs: pd.DataFrame, *, margin: float = PARITY_MARGIN) -> pd.DataFrame:
    """One row per group: seeds, flat_step median/min/max, last-epoch gain with its interval, p and the flattened reading."""
    rows = []
    for group, g in runs.groupby("group", sort=False):
        t = stats.t_test(g["last_gain"].to_numpy(dtype=float))
        low, high, p, how = t.low, t.high, t.p, f"Student t over {t.n} seeds"
        if len(g) == 1 and np.isfinite(g["gain_low"].iloc[0]):
            low, high, p = (float(g[k].iloc[0]) for k in ("gain_low", "gain_high", "gain_p"))
            how = "per example (paired proportions, exact McNemar p), one seed"
        elif t.identical:  # identical gains: no spread says nothing about the next seed
            low, high, p, how = np.nan, np.nan, np.nan, f"none: the {t.n} seeds' gains are identical"
        fs = g["flat_step"].dropna()
        rows.append({"group": group, "seeds": len(g), "last_step": g["last_step"].max(),
                     "flat_step_median": fs.median() if len(fs) else np.nan, "flat_step_min": fs.min() if len(fs) else np.nan,
                     "flat_step_max": fs.max() if len(fs) else np.nan, "last_gain": t.estimate, "low": low, "high": high, "p": p,
                     "interval": how if np.isfinite(low) or how.startswith("none:") else "none: one seed and no per-example predictions",
                     "flattened": parity(low, high, margin),
                     "margin": margin})
    return pd.DataFrame(rows)


def describe(table: pd.DataFrame) -> str:
    """One sentence per group: where the accuracy flattens and what the last epoch added, with interval, p and reading."""
    def pt(x: float) -> str:
        return f"{100 * x:+.2f}" if np.isfinite(x) else "undefined"

    lines = []
    for r in table.itertuples(index=False):
        where = (f"flattens at step {r.flat_step_median:g} (median over {r.seeds} seed(s); range {r.flat_step_min:g}-{r.flat_step_max:g}) "
                 f"of {r.last_step:g}" if np.isfinite(r.flat_step_median) else "flattening step undefined (fewer than two evaluations)")
        ci = f"[{pt(r.low)}, {pt(r.high)}] ({r.interval}, p = {r.p:.2g})" if np.isfinite(r.low) else f"[no interval: {r.interval}]"
        lines.append(f"{r.group}: accuracy {where}; the last epoch changed it by {pt(r.last_gain)} points {ci}; "
                     f"flattened within +-{100 * r.margin:g} point(s): {r.flattened}.")
    return "\n".join(lines)
