"""Did a run learn? Its final predictions against always predicting the majority class, paired on the same examples;
expected values by hand (counts) and from scipy.stats.binomtest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from lor2c_probe.analysis.chance import above_chance, chance_table


def final(labels, preds) -> pd.DataFrame:
    labels, preds = np.asarray(labels, dtype=float), np.asarray(preds, dtype=float)
    return pd.DataFrame({"step": 400, "split": "eval", "example": np.arange(len(labels)), "label": labels, "prediction": preds})


def test_a_constant_classifier_is_at_chance():
    # the fig2-depth12 full-rank runs at lr 5e-4: 746 of 1,275 labels are 1 (58.51%), every prediction is 1
    labels = np.r_[np.ones(746), np.zeros(529)]
    t = above_chance(final(labels, np.ones(1275)))
    assert t.accuracy == pytest.approx(746 / 1275) and t.majority_share == pytest.approx(746 / 1275) and t.majority_label == 1
    assert (t.difference, t.low, t.high, t.p) == (0, 0, 0, 1.0)  # no discordant example: nothing differs from the constant
    assert t.reading == "at chance" and t.at_chance and t.top_prediction_share == 1.0 and t.n == 1275
    assert "did not learn the task" in t.describe("full-rank-residual-s17") and "100% of the examples" in t.describe("x")
    worse = above_chance(final(labels, 1 - labels))  # every prediction wrong: worse than the constant, also at chance
    assert worse.accuracy == 0 and worse.high < 0 and worse.at_chance


def test_the_test_is_paired_on_the_examples():
    # 600 of 1,000 labels are 1. Right on every majority example but 20, and on 250 of the 400 others: the run is right
    # where the constant is wrong on 250 examples and wrong where it is right on 20: one-sided exact McNemar
    labels = np.r_[np.ones(600), np.zeros(400)]
    preds = np.r_[np.ones(580), np.zeros(20), np.zeros(250), np.ones(150)]
    t = above_chance(final(labels, preds))
    assert t.accuracy == pytest.approx(0.83) and t.difference == pytest.approx(0.23) and t.reading == "learned"
    assert t.p == pytest.approx(sps.binomtest(250, 270, 0.5, alternative="greater").pvalue)
    assert "learned the task" in t.describe("lor2c")
    # the constant everywhere but 20 minority examples, all right: 20 against 0 discordant, p = 0.5^20, learned,
    # although 62% is within a binomial SE of 60% (an unpaired test against 60% would miss it)
    near = above_chance(final(labels, np.r_[np.ones(600), np.zeros(20), np.ones(380)]))
    assert near.accuracy == pytest.approx(0.62) and near.p == pytest.approx(0.5 ** 20) and near.reading == "learned"


def test_a_small_set_a_few_points_up_cannot_tell():
    # an RTE-sized set: 277 examples, 146 of class 1; the run is right on 155 (56.0%, against 52.7%), discordant 28 against 19
    labels = np.r_[np.ones(146), np.zeros(131)]
    preds = np.r_[np.ones(127), np.zeros(19), np.zeros(28), np.ones(103)]
    t = above_chance(final(labels, preds))
    assert t.accuracy == pytest.approx(155 / 277) and t.p == pytest.approx(sps.binomtest(28, 47, 0.5, alternative="greater").pvalue)
    assert t.p > 0.05 and t.high > 0.01 and t.reading == "cannot tell" and not t.at_chance
    assert "cannot tell whether it learned" in t.describe("r")


def test_ties_classes_and_tasks_without_a_test():
    tie = above_chance(final([0, 0, 1, 1], [1, 1, 1, 1]))  # a tie for the majority: the class the run predicts is named
    assert tie.majority_label == 1 and tie.at_chance
    three = above_chance(final([0, 1, 2, 2, 2, 1], [2, 2, 2, 2, 2, 2]))  # three classes: the constant is class 2
    assert three.majority_label == 2 and three.accuracy == pytest.approx(0.5) and three.at_chance
    assert above_chance(final([0.5, 3.8, 2.2], [0.4, 3.9, 2.0])) is None  # regression (STS-B-like scores): no test
    assert above_chance(final([1, 1, 1], [1, 1, 1])) is None  # one class in the eval set: nothing to beat
    assert above_chance(final([], [])) is None
    labels = np.r_[np.ones(60), np.zeros(40)]
    table = chance_table({name: above_chance(f) for name, f in
                          {"a": final(labels, labels), "b": final(labels, np.ones(100)), "r": final([0.5, 1.5], [0.5, 1.5])}.items()})
    assert list(table.run) == ["a", "b"] and list(table.reading) == ["learned", "at chance"]
