"""Uncertainty for the analyses: bootstrap confidence intervals, permutation tests, McNemar, multiple comparisons.

Pure numpy/scipy. Every random function takes a ``seed`` (a ``numpy.random.Generator`` seed) so a summary is
reproducible, and returns plain floats or small dataclasses. Conventions: two-sided tests; intervals at ``level``
(default 95%): Student t over seeds (few units, docs/statistics.md says why), percentile bootstrap where the units are
many (layers × seeds, steps, eval examples); a permutation p-value counts the observed statistic among the
permutations, ``(1 + #{|t*| >= |t|}) / (1 + n)``, so it is never 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

ALPHA = 0.05


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    n: int  # independent units the interval rests on (seeds, blocks, examples)


def bootstrap_ci(values: np.ndarray, *, level: float = 0.95, reps: int = 10_000, seed: int = 0, stat=np.mean) -> Interval:
    """Percentile bootstrap of ``stat`` over independent ``values`` (e.g. one value per seed). Fewer than 2 values:
    the interval is the point (nothing to resample; the caller says "cannot tell")."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    est = float(stat(x))
    if len(x) < 2:
        return Interval(est, est, est, len(x))
    rng = np.random.default_rng(seed)
    boots = np.asarray([stat(x[idx]) for idx in rng.integers(0, len(x), size=(reps, len(x)))], dtype=float)
    q = (1 - level) / 2
    return Interval(est, float(np.quantile(boots, q)), float(np.quantile(boots, 1 - q)), len(x))


def block_bootstrap_ci(series: np.ndarray, *, block: int | None = None, level: float = 0.95, reps: int = 5_000, seed: int = 0) -> Interval:
    """Moving-block bootstrap of the mean of one autocorrelated series (the steps of one epoch of one seed). Blocks
    of ``block`` consecutive values (default: about n^(1/3)) are drawn with replacement to length n."""
    x = np.asarray(series, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 2:
        est = float(x.mean()) if n else float("nan")
        return Interval(est, est, est, n)
    b = max(1, min(n, block or int(round(n ** (1 / 3)))))
    starts = np.arange(n - b + 1)
    k = -(-n // b)
    rng = np.random.default_rng(seed)
    picks = rng.choice(starts, size=(reps, k))
    idx = (picks[:, :, None] + np.arange(b)[None, None, :]).reshape(reps, -1)[:, :n]
    boots = x[idx].mean(axis=1)
    q = (1 - level) / 2
    return Interval(float(x.mean()), float(np.quantile(boots, q)), float(np.quantile(boots, 1 - q)), -(-n // b))


@dataclass(frozen=True)
class Correlation:
    rho: float
    p: float  # permutation p-value, two-sided
    low: float  # bootstrap interval of rho over the pairs
    high: float
    n: int


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of (m, n) arrays; NaN where a row is constant."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def spearman_test(x: np.ndarray, y: np.ndarray, *, groups: np.ndarray | None = None, perms: int = 10_000, reps: int = 5_000,
                  level: float = 0.95, seed: int = 0) -> Correlation:
    """Spearman ρ(x, y) with a permutation p-value and a bootstrap interval. With ``groups`` (e.g. the seed of each
    (layer, ratio) pair), y is permuted within each group and, with 3 or more groups, pairs are resampled by group, so
    seeds pool without pretending their layers are independent draws (with 1 or 2 groups, pairs are resampled within
    each group: a bootstrap over 2 seeds has only 3 distinct outcomes). Vectorised: ρ is the Pearson r of the ranks (average ranks for ties);
    permuting y permutes its ranks, and each bootstrap sample is ranked afresh."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    g = np.zeros(len(x), dtype=int) if groups is None else np.unique(np.asarray(groups)[ok], return_inverse=True)[1]
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Correlation(float("nan"), float("nan"), float("nan"), float("nan"), n)
    rx, ry = sps.rankdata(x), sps.rankdata(y)
    rho = float(_pearson_rows(rx[None], ry[None])[0])
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(g == k) for k in np.unique(g)]
    idx = np.tile(np.arange(n), (perms, 1))
    for m in members:  # within-group permutations: argsort of uniform keys shuffles each row's members independently
        idx[:, m] = m[np.argsort(rng.random((perms, len(m))), axis=1)]
    null = _pearson_rows(np.broadcast_to(rx, (perms, n)), ry[idx])
    p = (1 + np.sum(np.abs(null) >= abs(rho) - 1e-12)) / (1 + perms)
    if len(members) >= 3:  # resample whole groups (seeds)
        picks = rng.integers(0, len(members), size=(reps, len(members)))
        sizes = {len(m) for m in members}
        if len(sizes) == 1:
            stacked = np.stack(members)
            bidx = stacked[picks].reshape(reps, -1)
        else:
            bidx = [np.concatenate([members[k] for k in row]) for row in picks]
    else:  # one or two groups: resampling 2 seeds has 3 distinct outcomes, so resample pairs within each group instead
        bidx = np.concatenate([m[rng.integers(0, len(m), size=(reps, len(m)))] for m in members], axis=1)
    if isinstance(bidx, np.ndarray):
        boots = _pearson_rows(sps.rankdata(x[bidx], axis=1), sps.rankdata(y[bidx], axis=1))
    else:
        boots = np.array([_pearson_rows(sps.rankdata(x[i])[None], sps.rankdata(y[i])[None])[0] for i in bidx])
    boots = boots[np.isfinite(boots)]
    q = (1 - level) / 2
    lo, hi = (float(np.quantile(boots, q)), float(np.quantile(boots, 1 - q))) if len(boots) else (float("nan"), float("nan"))
    return Correlation(rho, float(p), lo, hi, n)


@dataclass(frozen=True)
class MeanTest:
    estimate: float  # mean of the values
    low: float  # Student-t interval at ``level``
    high: float
    p: float  # two-sided one-sample t-test of mean == ``null``
    n: int
    test: str = "one-sample t-test"
    identical: bool = False  # n >= 2 values equal up to rounding: no spread, so no interval and no p


def t_test(values: np.ndarray, *, null: float = 0.0, level: float = 0.95) -> MeanTest:
    """Mean of a few independent values (one per seed) with a Student-t interval and p-value. At the 3-5 seeds a CPU
    study affords, a percentile bootstrap over seeds under-covers badly (about 75% for a nominal 95% at n = 3, measured
    in tests/analysis/test_stats.py) and a sign-flip test cannot reach p < 0.0625 at n <= 5; the t interval is exact for
    normal seed means and is what this module uses for seed-level means. Fewer than 2 values: no interval, p NaN.
    Values equal up to rounding (``identical``): no interval and p NaN too: a sample without spread says nothing about
    the next seed, and a t statistic on rounding noise would read as p ~ 0."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return MeanTest(float("nan"), float("nan"), float("nan"), float("nan"), 0)
    est = float(x.mean())
    if n < 2:
        return MeanTest(est, float("nan"), float("nan"), float("nan"), n)
    se = float(x.std(ddof=1)) / np.sqrt(n)
    # equal up to rounding: accuracy gains of one example computed from different accuracies differ by ~1e-16 (about
    # 1e-12 of the gain at 1,275 examples, 4e-12 at 40,430); 1e-9 of the largest value leaves real spreads alone
    if se <= 1e-9 * float(np.abs(x).max()):
        return MeanTest(est, float("nan"), float("nan"), float("nan"), n, identical=True)
    t = sps.t.ppf(1 - (1 - level) / 2, n - 1)
    p = float(2 * sps.t.sf(abs(est - null) / se, n - 1))
    return MeanTest(est, est - t * se, est + t * se, p, n)


def seeds_for_halfwidth(sd: float, halfwidth: float, *, level: float = 0.95, most: int = 10_000) -> float:
    """Smallest n >= 2 at which a Student-t interval of n values with standard deviation ``sd`` is at most
    ``halfwidth`` wide on each side (t_{n-1} sd / sqrt(n) <= halfwidth): a planning estimate that takes the observed
    spread as the truth. NaN when ``sd`` or ``halfwidth`` is not positive and finite, or no n up to ``most`` suffices."""
    if not (np.isfinite(sd) and np.isfinite(halfwidth) and sd > 0 and halfwidth > 0):
        return float("nan")
    n = np.arange(2, most + 1)
    ok = np.flatnonzero(sps.t.ppf(1 - (1 - level) / 2, n - 1) * sd / np.sqrt(n) <= halfwidth)
    return float(n[ok[0]]) if len(ok) else float("nan")


def geometric_t(values: np.ndarray, *, level: float = 0.95) -> MeanTest:
    """Geometric mean of positive values (ratios, norms) with the Student-t interval of their logs, exponentiated:
    positive, and symmetric on a log axis. ``p`` tests log mean == 0 (a ratio of 1)."""
    t = t_test(np.log(np.asarray(values, dtype=float)), level=level)
    return MeanTest(float(np.exp(t.estimate)), float(np.exp(t.low)), float(np.exp(t.high)), t.p, t.n, t.test, t.identical)


def block_bootstrap_ratio(numerator: np.ndarray, denominator: np.ndarray, *, block: int | None = None, level: float = 0.95,
                          reps: int = 2_000, seed: int = 0) -> Interval:
    """mean(numerator) / mean(denominator) of two aligned per-step series (the same steps of two runs), with a
    moving-block bootstrap interval: the same blocks of steps are drawn for both, keeping their pairing."""
    a, b = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = len(a)
    if n == 0 or b.mean() == 0:
        return Interval(float("nan"), float("nan"), float("nan"), n)
    est = float(a.mean() / b.mean())
    if n < 2:
        return Interval(est, float("nan"), float("nan"), n)
    size = max(1, min(n, block or int(round(n ** (1 / 3)))))
    k = -(-n // size)
    rng = np.random.default_rng(seed)
    idx = (rng.integers(0, n - size + 1, size=(reps, k))[:, :, None] + np.arange(size)).reshape(reps, -1)[:, :n]
    with np.errstate(divide="ignore", invalid="ignore"):
        boots = a[idx].mean(axis=1) / b[idx].mean(axis=1)
    boots = boots[np.isfinite(boots)]
    q = (1 - level) / 2
    return Interval(est, float(np.quantile(boots, q)), float(np.quantile(boots, 1 - q)), k)


@dataclass(frozen=True)
class PairedTest:
    difference: float  # mean of a - b
    low: float
    high: float
    p: float
    n: int
    test: str


def paired_permutation(a: np.ndarray, b: np.ndarray, *, level: float = 0.95, seed: int = 0, reps: int = 10_000) -> PairedTest:
    """Mean paired difference a - b (e.g. accuracy per seed, two methods) with a bootstrap interval and the exact
    sign-flip p-value (all 2^n flips up to n = 16, else ``reps`` random ones)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    if n == 0:
        return PairedTest(float("nan"), float("nan"), float("nan"), float("nan"), 0, "sign-flip permutation")
    obs = abs(d.mean())
    if n <= 16:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1)
        p = float(np.mean(np.abs((signs * d).mean(axis=1)) >= obs - 1e-12))
    else:
        rng = np.random.default_rng(seed)
        flips = rng.choice([-1.0, 1.0], size=(reps, n))
        p = float((1 + np.sum(np.abs((flips * d).mean(axis=1)) >= obs - 1e-12)) / (1 + reps))
    ci = bootstrap_ci(d, level=level, seed=seed)
    return PairedTest(float(d.mean()), ci.low, ci.high, p, n, "sign-flip permutation")


@dataclass(frozen=True)
class McNemar:
    only_a: int  # examples right under A, wrong under B
    only_b: int
    difference: float  # accuracy(A) - accuracy(B)
    low: float
    high: float
    p: float  # exact two-sided binomial test on the discordant pairs
    n: int


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray, *, level: float = 0.95) -> McNemar:
    """Per-example paired comparison of two classifiers on one eval set: the exact McNemar test, and a Wald interval
    of the accuracy difference for paired proportions (Agresti's, with the discordant counts)."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"the two runs scored different eval sets: {a.shape} and {b.shape} examples")
    n = len(a)
    n10, n01 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p = float(sps.binomtest(n10, n10 + n01, 0.5).pvalue) if n10 + n01 else 1.0
    diff = (n10 - n01) / n if n else float("nan")
    se = np.sqrt(max(n10 + n01 - (n10 - n01) ** 2 / n, 0.0)) / n if n else float("nan")
    z = sps.norm.ppf(1 - (1 - level) / 2)
    return McNemar(n10, n01, float(diff), float(diff - z * se), float(diff + z * se), p, n)


def wilson(proportion: np.ndarray, n: int, *, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of binomial proportions measured on ``n`` trials each (e.g. accuracy on an eval set of n
    examples): unlike the Wald interval it keeps its width at 0% and 100% and stays inside [0, 1]."""
    p = np.asarray(proportion, dtype=float)
    z = sps.norm.ppf(1 - (1 - level) / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (family-wise error), in the input order; NaNs stay NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok])]
    m = len(order)
    running = 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[k]))
        out[k] = running
    return out


def verdict(p: float, low: float, high: float, *, claim_sign: int, alpha: float = ALPHA) -> str:
    """"holds" (p < ``alpha`` and the interval wholly on the claimed side), "does not hold" (p < ``alpha`` and the
    interval wholly on the other side), else "cannot tell". An interval alone never decides: the test does (bootstrap
    intervals over a few seeds are too narrow to stand on their own)."""
    if not (np.isfinite(p) and np.isfinite(low) and np.isfinite(high)) or p >= alpha:
        return "cannot tell"
    if claim_sign * low > 0 and claim_sign * high > 0:
        return "holds"
    if claim_sign * low < 0 and claim_sign * high < 0:
        return "does not hold"
    return "cannot tell"
