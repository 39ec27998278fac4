"""Metrics against brute-force definitions on hand-checkable vectors (tolerance 1e-12)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from lor2c_probe.metrics import accuracy, f1, matthews_corr, task_metrics

PRED = np.array([1, 1, 0, 0, 1, 0, 1, 1])
GOLD = np.array([1, 0, 0, 1, 1, 0, 1, 0])
# By hand: tp = 3, fp = 2, fn = 1, tn = 2.


def test_binary_metrics_by_hand():
    assert accuracy(PRED, GOLD) == 5 / 8
    assert f1(PRED, GOLD, 2) == pytest.approx(2 * 3 / (2 * 3 + 2 + 1), abs=1e-12)
    mcc = (3 * 2 - 2 * 1) / math.sqrt((3 + 2) * (3 + 1) * (2 + 2) * (2 + 1))
    assert matthews_corr(PRED, GOLD, 2) == pytest.approx(mcc, abs=1e-12)


def test_multiclass_mcc_equals_covariance_definition():
    rng = np.random.default_rng(0)
    pred, gold = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    X, Y = np.eye(3)[pred], np.eye(3)[gold]  # one-hot, MCC = cov(X,Y)/sqrt(cov(X,X)cov(Y,Y)) (Gorodkin)
    cov = lambda a, b: sum(np.cov(a[:, k], b[:, k], bias=True)[0, 1] for k in range(3))  # noqa: E731
    assert matthews_corr(pred, gold, 3) == pytest.approx(cov(X, Y) / math.sqrt(cov(X, X) * cov(Y, Y)), abs=1e-12)


def test_degenerate_cases_are_zero_not_nan():
    assert matthews_corr(np.ones(4, int), np.array([0, 1, 0, 1]), 2) == 0.0
    assert task_metrics(("pearson", "spearman"), np.ones((4, 1)), np.array([1.0, 2, 3, 4]), True) == {"pearson": 0.0, "spearman": 0.0}


def test_regression_correlations():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    y = np.array([2.0, 1.0, 4.0, 3.0, 5.0])
    r = task_metrics(("pearson", "spearman"), x[:, None], y, True)
    n = len(x)
    xc, yc = x - x.mean(), y - y.mean()
    assert r["pearson"] == pytest.approx((xc @ yc) / math.sqrt((xc @ xc) * (yc @ yc)), abs=1e-12)
    d2 = sum((a - b) ** 2 for a, b in zip(x.argsort().argsort(), y.argsort().argsort()))
    assert r["spearman"] == pytest.approx(1 - 6 * d2 / (n * (n**2 - 1)), abs=1e-12)


def test_task_metrics_uses_argmax_of_logits():
    logits = np.array(list(itertools.product([0.0, 1.0], repeat=2)))  # argmax: 0,1,0,0 (ties -> 0)
    assert task_metrics(("accuracy",), logits, np.array([0, 1, 0, 0]), False) == {"accuracy": 1.0}
