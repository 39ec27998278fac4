"""Did a run learn its task at all? Its final predictions against the best constant prediction on the same eval set.

A classifier that gives the eval set's majority class to every example scores that class's share without learning
anything; a run that never left its initial point, or was knocked back to it, lands there. Its learned weights,
gradients and spectra then describe a failed optimisation, not the method, and an analysis that reads them as the
method's (e.g. "the learned full-rank map is low rank") must leave it out instead of judging the claim with it.

Per run, from the final evaluation's per-example predictions, a paired comparison with the constant classifier on the
same examples (the majority share is measured on those very examples, so an unpaired test against it as a fixed rate
would be wrong): the run's accuracy minus the constant's, the exact one-sided McNemar p of "the run is better", and the
paired-proportion 95% interval of the difference (``stats.mcnemar``). Three readings, so that a small eval set is not
taken for failure:

- ``learned``: one-sided p < alpha (the run is better than the constant);
- ``at chance``: the interval's upper end lies below ``margin`` (1 accuracy point by default): the run is shown to be
  no better than always predicting the majority class by more than the margin, or worse. Only these runs are left out;
- ``cannot tell``: neither (a few hundred examples and a run a few points up).

Classification only: labels that are not all whole numbers (a regression task), or an eval set with a single class,
give None.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from lor2c_probe.analysis.comparison import PARITY_MARGIN
from lor2c_probe.analysis.stats import ALPHA, mcnemar


@dataclass(frozen=True)
class ChanceTest:
    accuracy: float
    majority_share: float  # accuracy of always predicting ``majority_label`` on this eval set
    majority_label: int
    top_prediction_share: float  # share of examples given the most-predicted class (1.0: one class for everything)
    difference: float  # accuracy - majority_share
    low: float  # paired-proportion 95% interval of the difference
    high: float
    p: float  # exact one-sided McNemar p of "better than the constant"
    n: int  # eval examples
    reading: str  # "learned", "at chance" or "cannot tell"

    @property
    def at_chance(self) -> bool:
        return self.reading == "at chance"

    def describe(self, name: str) -> str:
        vs = (f"accuracy {self.accuracy:.2%} against {self.majority_share:.2%} for always predicting class {self.majority_label}, "
              f"difference {100 * self.difference:+.2f} points [{100 * self.low:+.2f}, {100 * self.high:+.2f}] "
              f"(exact one-sided McNemar p = {self.p:.2g}, n = {self.n:,})")
        if self.reading == "learned":
            return f"{name} learned the task: {vs}."
        if self.reading == "at chance":
            return (f"{name} did not learn the task: {vs}; it gives one class to {self.top_prediction_share:.0%} of the examples. "
                    "What it learned describes a failed run, not its method.")
        return f"{name}: cannot tell whether it learned the task: {vs}."


def above_chance(final: pd.DataFrame, *, alpha: float = ALPHA, margin: float = PARITY_MARGIN) -> ChanceTest | None:
    """``final``: one evaluation's prediction rows (columns label, prediction), e.g. ``comparison.final_predictions``.
    None without rows, for a regression task (labels not all whole numbers) or a single-class eval set."""
    if final.empty:
        return None
    labels = final["label"].to_numpy(dtype=float)
    preds = final["prediction"].to_numpy(dtype=float)
    if not np.all(labels == np.round(labels)):
        return None
    values, counts = np.unique(labels, return_counts=True)
    if len(values) < 2:
        return None
    pvalues, pcounts = np.unique(preds, return_counts=True)
    tied = values[counts == counts.max()]
    # a tie for the majority: the tied class the run predicts most, so the text names the constant it resembles
    majority = max(tied, key=lambda v: int(pcounts[pvalues == v].sum()))
    right, constant = preds == labels, labels == majority
    m = mcnemar(right, constant)
    discordant = m.only_a + m.only_b
    p = float(sps.binomtest(m.only_a, discordant, 0.5, alternative="greater").pvalue) if discordant else 1.0
    reading = "learned" if p < alpha else ("at chance" if m.high < margin else "cannot tell")
    return ChanceTest(float(right.mean()), float(constant.mean()), int(majority), float(pcounts.max() / len(preds)), m.difference,
                      m.low, m.high, p, m.n, reading)


def chance_table(tests: dict[str, ChanceTest | None]) -> pd.DataFrame:
    """One row per run (``tests``: run name -> its ``above_chance``); runs without a test are left out."""
    rows = [{"run": name, "accuracy": t.accuracy, "majority_share": t.majority_share, "majority_label": t.majority_label,
             "top_prediction_share": t.top_prediction_share, "difference": t.difference, "low": t.low, "high": t.high,
             "p": t.p, "n": t.n, "reading": t.reading} for name, t in tests.items() if t is not None]
    return pd.DataFrame(rows)
