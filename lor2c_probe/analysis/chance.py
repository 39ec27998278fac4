"""Did a run learn its task at all? Final accuracy against the best constant prediction on the same eval set.

A classifier that predicts the eval set's majority class for every example scores that class's share without learning
anything; a run that diverged or never left its initial point lands there (or below). Its learned weights, gradients
and spectra then describe a failed optimisation, not the method, and an analysis that reads them as the method's
(e.g. "the learned full-rank map is low rank") must say so instead of judging the claim.

Per run, from the final evaluation's per-example predictions: the accuracy, the majority class's share of the eval
labels (the best constant classifier's accuracy on this very set), the share of the most-predicted class, and an exact
one-sided binomial test of "accuracy > majority share". ``learned`` = p < alpha. Classification only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from lor2c_probe.analysis.stats import ALPHA


@dataclass(frozen=True)
class ChanceTest:
    accuracy: float
    majority_share: float  # share of the eval set's most frequent label: a constant classifier's accuracy
    majority_label: int
    top_prediction_share: float  # share of examples given the most-predicted class (1.0: one class for everything)
    p: float  # exact one-sided binomial test of accuracy > majority_share
    n: int  # eval examples
    learned: bool

    def describe(self, name: str) -> str:
        if self.learned:
            return (f"{name} learned the task: accuracy {self.accuracy:.2%} vs {self.majority_share:.2%} for always predicting "
                    f"class {self.majority_label} (exact binomial p = {self.p:.2g}, n = {self.n:,}).")
        return (f"{name} did not learn the task: accuracy {self.accuracy:.2%}, not above the {self.majority_share:.2%} of always "
                f"predicting class {self.majority_label} (exact one-sided binomial p = {self.p:.2g}, n = {self.n:,}); it gives "
                f"one class to {self.top_prediction_share:.0%} of the examples. What it learned describes a failed run, not its method.")


def above_chance(final: pd.DataFrame, *, alpha: float = ALPHA) -> ChanceTest | None:
    """``final``: one evaluation's prediction rows (columns label, prediction), e.g. ``comparison.final_predictions``.
    None when there are no rows."""
    if final.empty:
        return None
    labels = final["label"].to_numpy()
    preds = final["prediction"].to_numpy()
    n = len(labels)
    values, counts = np.unique(labels, return_counts=True)
    majority = int(values[np.argmax(counts)])
    share = float(counts.max() / n)
    correct = int(np.sum(preds == labels))
    p = float(sps.binomtest(correct, n, share, alternative="greater").pvalue) if share < 1 else 1.0
    _, pcounts = np.unique(preds, return_counts=True)
    return ChanceTest(correct / n, share, majority, float(pcounts.max() / n), p, n, p < alpha)


def chance_table(finals: dict[str, pd.DataFrame], *, alpha: float = ALPHA) -> pd.DataFrame:
    """One row per run (``finals``: run name -> its final prediction rows): accuracy, majority share, top prediction
    share, p, learned. Runs without rows are left out."""
    rows = []
    for name, f in finals.items():
        t = above_chance(f, alpha=alpha)
        if t is not None:
            rows.append({"run": name, "accuracy": t.accuracy, "majority_share": t.majority_share, "majority_label": t.majority_label,
                         "top_prediction_share": t.top_prediction_share, "p": t.p, "n": t.n, "learned": t.learned})
    return pd.DataFrame(rows)
