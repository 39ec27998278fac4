"""Where the eval curve flattens (analysis.training), on constructed curves with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from lor2c_probe.analysis import training


def _curve(values, steps=None):
    steps = steps if steps is not None else [100 * (i + 1) for i in range(len(values))]
    return pd.DataFrame({"step": steps, "value": values})


def test_flat_step_is_the_first_evaluation_within_one_binomial_se_of_the_final():
    # SE at 0.86 on 100 examples: sqrt(0.86 * 0.14 / 100) = 0.0347; 0.80 is 0.06 away (outside), 0.85 and 0.87 inside
    assert training.flat_step(np.array([100, 200, 300, 400]), np.array([0.50, 0.80, 0.85, 0.86]), 100) == 300
    assert training.flat_step(np.array([100, 200, 300, 400]), np.array([0.85, 0.80, 0.87, 0.86]), 100) == 300  # a dip counts
    assert training.flat_step(np.array([100, 200]), np.array([0.86, 0.86]), 100) == 100
    assert np.isnan(training.flat_step(np.array([100, 200]), np.array([0.5, 0.6]), None))  # no n: not a proportion we can judge
    assert np.isnan(training.flat_step(np.array([100, 200]), np.array([1.5, 2.0]), 100))  # a loss, not a proportion
    assert np.isnan(training.flat_step(np.array([100]), np.array([0.86]), 100))  # one evaluation: nothing to flatten
    assert training.flat_step(np.array([100, 200, 300]), np.array([0.5, np.nan, 0.86]), 100) == 300  # a missing one is left out


def test_eval_curve_picks_the_eval_rows_of_the_metric():
    m = pd.DataFrame({"step": [1, 2, 2, 2, 4, 4], "epoch": 0, "split": ["train", "train", "eval", "eval", "eval", "eval"],
                      "name": ["loss", "loss", "accuracy", "loss", "accuracy", "loss"], "value": [9, 9, 0.6, 0.7, 0.8, 0.5]})
    pd.testing.assert_frame_equal(training.eval_curve(m, "accuracy"), _curve([0.6, 0.8], [2, 4]))


def test_summary_over_seeds_uses_a_student_t_interval_and_reads_flatness_against_the_margin():
    flat = [training.RunCurve("a", s, _curve([0.7, 0.85, 0.85 + g]), 1000) for s, g in zip((1, 2, 3), (0.001, 0.002, 0.003))]
    moving = [training.RunCurve("b", s, _curve([0.6, 0.7, 0.7 + g]), 1000) for s, g in zip((1, 2, 3), (0.05, 0.06, 0.07))]
    table = training.summary(training.per_run(flat + moving)).set_index("group")
    half = sps.t.ppf(0.975, 2) * np.std([0.001, 0.002, 0.003], ddof=1) / np.sqrt(3)  # by hand
    assert table.loc["a", "last_gain"] == pytest.approx(0.002, abs=1e-12)
    assert (table.loc["a", "low"], table.loc["a", "high"]) == pytest.approx((0.002 - half, 0.002 + half), abs=1e-12)
    assert table.loc["a", "flattened"] == "holds" and table.loc["a", "interval"] == "Student t over 3 seeds"
    assert table.loc["b", "flattened"] == "does not hold"  # the interval [0.035, 0.085] lies above +1 point
    # SE at 0.853 on 1,000 examples is 0.0112: 0.85 is inside, 0.70 outside, so every seed of a flattens at step 200
    assert table.loc["a", ["flat_step_median", "flat_step_min", "flat_step_max"]].tolist() == [200, 200, 200]


def test_one_seed_uses_the_per_example_interval_of_its_last_two_evaluations():
    n = 400
    label = np.zeros(n, dtype=int)
    prev = np.zeros(n, dtype=int)
    prev[:40] = 1  # 40 wrong before the last epoch
    last = prev.copy()
    last[:30] = 0  # 30 of them fixed ...
    last[300:310] = 1  # ... and 10 others broken: +20 / 400 = +5 points, discordant 30 vs 10
    rows = lambda p: pd.DataFrame({"example": np.arange(n), "label": label, "prediction": p})  # noqa: E731
    preds = pd.concat([rows(prev).assign(step=200, split="eval"), rows(last).assign(step=300, split="eval"),
                       rows(last).assign(step=300, split="train")])
    pair = training.last_two_predictions(preds)
    run = training.RunCurve("a", 1, _curve([0.90, 0.95], [200, 300]), n, pair)
    per_run = training.per_run([run])
    se = np.sqrt(30 + 10 - 20 ** 2 / n) / n  # Agresti's paired-proportion SE from the discordant counts
    assert per_run.loc[0, "gain_p"] == pytest.approx(sps.binomtest(30, 40, 0.5).pvalue)
    assert (per_run.loc[0, "gain_low"], per_run.loc[0, "gain_high"]) == pytest.approx((0.05 - 1.959964 * se, 0.05 + 1.959964 * se), abs=1e-6)
    row = training.summary(per_run).iloc[0]
    assert row["interval"].startswith("per example") and row["flattened"] == "does not hold"  # 5 points [1.9, 8.1] > 1
    assert row["p"] == per_run.loc[0, "gain_p"]
    assert "the last epoch changed it by +5.00 points [+1.94, +8.06]" in training.describe(training.summary(per_run))
    # predictions of other evaluations than the last two of the curve: no per-example interval for this gain
    shifted = training.per_run([training.RunCurve("a", 1, _curve([0.85, 0.90, 0.95], [100, 200, 300]), n,
                                                  (pair[0].assign(step=100), pair[1].assign(step=200)))])
    assert np.isnan(shifted.loc[0, "gain_low"]) and training.summary(shifted).iloc[0]["flattened"] == "cannot tell"


def test_identical_gains_over_seeds_give_no_interval():
    runs = [training.RunCurve("a", s, _curve([0.80, 0.85]), 400) for s in (1, 2, 3)]  # +5 points each: t's interval has width 0
    row = training.summary(training.per_run(runs)).iloc[0]
    assert row["last_gain"] == pytest.approx(0.05) and np.isnan(row["low"]) and row["flattened"] == "cannot tell"
    assert row["interval"] == "none: the 3 seeds' gains are identical"
    # the same gain of one example reached from different accuracies can differ in the 16th digit (1,133 -> 1,134 and
    # 1,102 -> 1,103 of 1,275); fig7-depth12's two ShareLoR2C seeds each gained one example and a t interval on the
    # rounding read p = 4.5e-14
    two = [training.RunCurve("a", 1, _curve([1133 / 1275, 1134 / 1275]), 1275), training.RunCurve("a", 2, _curve([1102 / 1275, 1103 / 1275]), 1275)]
    gains = training.per_run(two)
    assert gains["last_gain"].nunique() == 2  # not equal as floats
    row = training.summary(gains).iloc[0]
    assert np.isnan(row["low"]) and np.isnan(row["p"]) and row["interval"] == "none: the 2 seeds' gains are identical"
