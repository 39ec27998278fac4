"""Did a run learn? Final accuracy against always predicting the majority class, on constructed predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from lor2c_probe.analysis.chance import above_chance, chance_table


def final(labels: np.ndarray, preds: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"step": 400, "split": "eval", "example": np.arange(len(labels)), "label": labels.astype(float),
                         "prediction": preds.astype(float)})


def test_a_constant_classifier_did_not_learn():
    # the fig2-depth12 full-rank runs' case: 746 of 1,275 labels are 1 (58.51%), every prediction is 1
    labels = np.r_[np.ones(746), np.zeros(529)]
    t = above_chance(final(labels, np.ones(1275)))
    assert t.accuracy == pytest.approx(746 / 1275) and t.majority_share == pytest.approx(746 / 1275) and t.majority_label == 1
    assert t.top_prediction_share == 1.0 and t.n == 1275 and not t.learned
    assert t.p == pytest.approx(sps.binomtest(746, 1275, 746 / 1275, alternative="greater").pvalue)  # about 0.5
    assert "did not learn the task" in t.describe("full-rank-residual-s17") and "100%" in t.describe("x")


def test_accuracy_clearly_above_the_majority_learned():
    labels = np.r_[np.ones(600), np.zeros(400)]
    preds = labels.copy()
    preds[:150] = 0  # 850 of 1,000 right against 600 for always 1
    t = above_chance(final(labels, preds))
    assert t.accuracy == pytest.approx(0.85) and t.majority_share == pytest.approx(0.6) and t.learned
    assert t.p == pytest.approx(sps.binomtest(850, 1000, 0.6, alternative="greater").pvalue) and t.p < 1e-12
    assert t.top_prediction_share == pytest.approx(0.55)  # 450 ones, 550 zeros predicted
    assert "learned the task" in t.describe("lor2c")


def test_a_small_edge_is_not_enough_and_below_chance_is_not_learning():
    labels = np.r_[np.ones(60), np.zeros(40)]
    preds = labels.copy()
    preds[:35] = 0  # 65 of 100 against 60: one-sided binomial p about 0.18
    t = above_chance(final(labels, preds))
    assert t.accuracy == pytest.approx(0.65) and 0.05 < t.p < 0.5 and not t.learned
    worse = above_chance(final(labels, 1 - labels))  # every prediction wrong
    assert worse.accuracy == 0 and worse.p == pytest.approx(1.0) and not worse.learned


def test_table_and_edge_cases():
    labels = np.r_[np.ones(60), np.zeros(40)]
    table = chance_table({"a": final(labels, labels), "b": final(labels, np.ones(100)), "empty": final(labels[:0], labels[:0])})
    assert list(table.run) == ["a", "b"] and list(table.learned) == [True, False]
    one_class = above_chance(final(np.ones(10), np.ones(10)))  # every label the same: nothing to beat, cannot be shown
    assert one_class.majority_share == 1 and one_class.p == 1.0 and not one_class.learned
    assert above_chance(final(labels[:0], labels[:0])) is None
