"""The statistics of analysis/stats.py on constructed data with known answers (exact p-values worked out by hand,
coverage on normal samples, Holm by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from lor2c_probe.analysis import stats


def test_bootstrap_interval_of_a_mean():
    x = np.random.default_rng(1).normal(0.0, 1.0, 400)
    ci = stats.bootstrap_ci(x, seed=2, reps=4000)
    half = 1.96 / np.sqrt(400)  # the normal-theory half width, 0.098
    assert ci.low < 0 < ci.high and (ci.high - ci.low) / 2 == pytest.approx(half, rel=0.15) and ci.n == 400
    one = stats.bootstrap_ci([0.7])
    assert (one.estimate, one.low, one.high, one.n) == (0.7, 0.7, 0.7, 1)  # nothing to resample: the caller cannot tell


def test_block_bootstrap_widens_for_autocorrelated_steps():
    rng = np.random.default_rng(3)
    e = rng.normal(size=600)
    x = np.empty(600)
    x[0] = e[0]
    for t in range(1, 600):
        x[t] = 0.9 * x[t - 1] + e[t]  # AR(1): neighbouring steps are not independent
    iid = stats.bootstrap_ci(x, seed=4, reps=2000)
    block = stats.block_bootstrap_ci(x, block=30, seed=4, reps=2000)
    assert (block.high - block.low) > 2 * (iid.high - iid.low)  # AR(1) with phi 0.9: variance of the mean ~19x


def test_spearman_permutation_exact_on_a_monotone_sample():
    x = np.arange(8)
    r = stats.spearman_test(x, x ** 2, perms=3000, reps=500, seed=5)
    # Only 2 of 8! = 40,320 orders reach |rho| = 1 (identity, reversal): about 0.15 random hits in 3,000 permutations.
    assert r.rho == 1.0 and r.p <= 3 / 3001
    noise = np.random.default_rng(6).normal(size=8)
    r0 = stats.spearman_test(x, noise, perms=2000, reps=200, seed=7)
    assert r0.p > 0.05 and r0.low < r0.rho < r0.high


def test_spearman_pooled_within_seeds():
    layers = np.tile(np.arange(6), 3)
    seeds = np.repeat([0, 1, 2], 6)
    y = -layers + np.repeat([0.0, 10.0, 20.0], 6)  # decreasing within every seed; the seeds' levels differ a lot
    r = stats.spearman_test(layers, y, groups=seeds, perms=2000, reps=300, seed=8)
    assert r.p < 0.01 and r.n == 18  # permuted within seeds: the level differences cannot fake or hide the trend


def test_spearman_interval_with_two_seeds_resamples_layers_within_seeds():
    # two identical seeds: resampling whole seeds gives the same sample every time (a zero-width interval); resampling
    # layers within each seed shows the spread the layers carry
    layers = np.tile(np.arange(8), 2)
    y = np.tile([3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0, 6.0], 2)
    r = stats.spearman_test(layers, y, groups=np.repeat([0, 1], 8), perms=500, reps=500, seed=2)
    assert r.low < r.rho < r.high and r.high - r.low > 0.3, r
    one = stats.spearman_test(np.arange(8), y[:8], perms=500, reps=500, seed=2)  # one seed: the same rule as before
    assert one.low < one.rho < one.high


def test_paired_sign_flip_exact():
    p = stats.paired_permutation([2, 2, 2, 2, 2], [1, 1, 1, 1, 1])
    assert p.difference == 1.0 and p.p == pytest.approx(2 / 32) and p.n == 5  # all + or all - of 2^5 sign patterns
    p6 = stats.paired_permutation([1.0] * 6, [0.0] * 6)
    assert p6.p == pytest.approx(2 / 64) and p6.p < 0.05


def test_mcnemar_exact_and_interval():
    a = np.array([True] * 10 + [True] * 80 + [False] * 10)
    b = np.array([False] * 10 + [True] * 80 + [False] * 10)
    m = stats.mcnemar(a, b)
    assert (m.only_a, m.only_b, m.n) == (10, 0, 100) and m.p == pytest.approx(2 * 0.5 ** 10)
    assert m.difference == pytest.approx(0.10) and m.low < 0.10 < m.high
    same = stats.mcnemar(a, a)
    assert same.p == 1.0 and same.difference == 0.0
    with pytest.raises(ValueError, match="different eval sets"):
        stats.mcnemar(a, a[:5])


def test_holm_by_hand_and_verdicts():
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, np.nan]), [0.03, 0.06, 0.06, np.nan])
    assert stats.verdict(0.001, 0.2, 0.5, claim_sign=+1) == "holds"
    assert stats.verdict(0.001, -0.5, -0.2, claim_sign=+1) == "does not hold"
    assert stats.verdict(0.3, -0.1, 0.4, claim_sign=+1) == "cannot tell"
    assert stats.verdict(float("nan"), float("nan"), float("nan"), claim_sign=-1) == "cannot tell"


def test_t_test_by_hand():
    r = stats.t_test(np.array([1.0, 2.0, 3.0]), null=0.0)
    # mean 2, sd 1, se 1/sqrt(3), t = 2*sqrt(3) = 3.464 on 2 df: p = 0.0742 (scipy.stats.ttest_1samp), t_0.975,2 = 4.303
    assert (r.estimate, r.n) == (2.0, 3)
    assert r.p == pytest.approx(0.07418, abs=1e-4)
    assert (r.low, r.high) == pytest.approx((2 - 4.3027 / np.sqrt(3), 2 + 4.3027 / np.sqrt(3)), abs=1e-3)
    same = stats.t_test(np.array([0.1 + 0.2, 0.3]))  # equal up to rounding (0.30000000000000004): no spread
    assert same.identical and np.isnan(same.low) and np.isnan(same.p) and same.estimate == pytest.approx(0.3)
    # one-example gains on a 40,430-example set, reached from different accuracies: rounding differs, not the gain
    gains = np.array([36001 / 40430 - 36000 / 40430, 35001 / 40430 - 35000 / 40430])
    assert gains[0] != gains[1] and stats.t_test(gains).identical
    zeros = stats.t_test(np.zeros(3))
    assert zeros.identical and np.isnan(zeros.p)
    tiny = stats.t_test(np.array([1e-8, 1.1e-8, 1.2e-8]))  # a real spread at a small scale is kept
    assert not tiny.identical and tiny.low < 1.1e-8 < tiny.high
    one = stats.t_test(np.array([5.0]))
    assert one.estimate == 5.0 and np.isnan(one.p) and np.isnan(one.low)


def test_t_interval_covers_at_three_seeds_where_the_bootstrap_does_not():
    # Why seed-level means use t: 300 samples of 3 standard normals; the measured coverage of the true mean 0.
    rng = np.random.default_rng(1)
    samples = rng.standard_normal((300, 3))
    boot = np.mean([(b := stats.bootstrap_ci(x, reps=400, seed=i)).low <= 0 <= b.high for i, x in enumerate(samples)])
    t = np.mean([(r := stats.t_test(x)).low <= 0 <= r.high for x in samples])
    assert boot < 0.82 and 0.92 <= t <= 0.98  # measured: 0.74 and 0.95 (400 samples, 1000 reps)


def test_block_bootstrap_ratio_keeps_the_pairing():
    rng = np.random.default_rng(3)
    common = rng.lognormal(0, 1, 200)  # a shared per-step factor (the batch): cancels in a paired ratio
    r = stats.block_bootstrap_ratio(2 * common, common, seed=1)
    assert r.estimate == pytest.approx(2.0) and r.low == pytest.approx(2.0) and r.high == pytest.approx(2.0)
    noisy = stats.block_bootstrap_ratio(2 * common * rng.lognormal(0, 0.3, 200), common, seed=1)
    assert noisy.low < noisy.estimate < noisy.high and noisy.low < 2.2 and noisy.high > 1.8
    assert np.isnan(stats.block_bootstrap_ratio(np.ones(4), np.zeros(4)).estimate)


def test_spearman_with_unequal_groups():
    layers = np.array([0, 1, 2, 3, 0, 1, 2])
    y = np.array([4.0, 3.0, 2.0, 1.0, 3.5, 2.5, 1.5])
    r = stats.spearman_test(layers, y, groups=np.array([0, 0, 0, 0, 1, 1, 1]), perms=2000, reps=300, seed=2)
    assert r.rho < -0.8 and r.p < 0.05 and r.high < 0 and r.n == 7


def test_an_interval_alone_never_decides():
    assert stats.verdict(0.2, -0.5, -0.2, claim_sign=+1) == "cannot tell"  # wholly on the other side, but not significant
    assert stats.verdict(0.01, -0.1, 0.4, claim_sign=+1) == "cannot tell"  # significant p, interval straddles 0


def test_wilson_interval_by_hand_and_at_the_edges():
    from scipy.stats import binomtest

    # 320 of 400: scipy's Wilson interval is [0.758030, 0.836263]
    low, high = stats.wilson(np.array([0.8, 1.0, 0.0]), 400)
    ref = binomtest(320, 400).proportion_ci(method="wilson")
    assert (low[0], high[0]) == pytest.approx((ref.low, ref.high), abs=1e-12) and low[0] == pytest.approx(0.758030, abs=1e-6)
    assert high[1] == pytest.approx(1.0) and 0.98 < low[1] < 1.0  # 100%: still an interval, inside [0, 1]
    assert low[2] == pytest.approx(0.0, abs=1e-12) and 0.0 < high[2] < 0.02


def test_seeds_for_halfwidth_against_a_loop_by_hand():
    from scipy import stats as sps

    def by_hand(sd, hw):
        n = 2
        while sps.t.ppf(0.975, n - 1) * sd / np.sqrt(n) > hw:
            n += 1
        return n

    for sd, hw in [(1.303, 0.561), (1.303, 1.0), (0.5, 0.2), (2.0, 3.0)]:
        assert stats.seeds_for_halfwidth(sd, hw) == by_hand(sd, hw)
    # t_{n-1} * 2 / sqrt(n): 17.97, 4.97, 3.18 at n = 2, 3, 4, then 2.48 at n = 5, the first <= 3
    assert stats.seeds_for_halfwidth(2.0, 3.0) == 5
    # the gallery's depth-6 LoR2C - LoRA differences (SD 1.303 points, mean -0.44): 23 seeds give 0.563, 24 give 0.550
    assert stats.seeds_for_halfwidth(1.303, 1 - 0.439) == 24
    for sd, hw in [(0.0, 1.0), (1.0, 0.0), (np.nan, 1.0), (1.0, -0.5)]:
        assert np.isnan(stats.seeds_for_halfwidth(sd, hw))
    assert np.isnan(stats.seeds_for_halfwidth(100.0, 0.01, most=50))  # not reachable within `most`
