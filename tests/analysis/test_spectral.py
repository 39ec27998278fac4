"""Spectral metrics on hand-computed spectra."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lor2c_probe.analysis.spectral import effective_rank, energy_rank, head_share, metrics, sfs, stable_rank

SIGMA = np.array([3.0, 1.0, 0.0, 0.0])  # sum 4, energy 10


def test_hand_computed():
    assert sfs(SIGMA, 1) == 0.25 and head_share(SIGMA, 1) == 0.75
    assert sfs(SIGMA, 2) == 0.0 and sfs(SIGMA, 4) == 0.0 and sfs(SIGMA, 10) == 0.0  # k >= non-zero count
    p = np.array([0.75, 0.25])
    assert effective_rank(SIGMA) == pytest.approx(math.exp(-(p * np.log(p)).sum()))  # 1.7548
    assert effective_rank(SIGMA) == pytest.approx(1.7548, abs=1e-4)
    assert stable_rank(SIGMA) == pytest.approx(10 / 9)
    assert energy_rank(SIGMA, 0.90) == 1 and energy_rank(SIGMA, 0.99) == 2  # 9/10 = 0.9 exactly reaches 90 %
    assert metrics(np.array([1.0, 3.0, 0.0, 0.0]))["nuclear_norm"] == 4.0  # order does not matter


def test_flat_spectrum_has_full_ranks():
    s = np.ones(8)
    assert effective_rank(s) == pytest.approx(8.0) and stable_rank(s) == 8.0 and energy_rank(s, 0.99) == 8
    assert sfs(s, 2) == 0.75


def test_zero_matrix_is_all_zeros_not_nan():
    m = metrics(np.zeros(5), ks=(1, 2))
    assert all(v == 0.0 for v in m.values()) and not any(math.isnan(v) for v in m.values())


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_bad_k(k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        sfs(SIGMA, k)
