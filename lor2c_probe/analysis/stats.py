"""Uncertainty for the analyses: bootstrap confidence intervals, permutation tests, McNemar, multiple comparisons.

Pure numpy/scipy. Every function takes a ``seed`` (a ``numpy.random.Generator`` seed) so a summary is reproducible,
and returns plain floats or small dataclasses. Conventions: two-sided tests; intervals are percentile bootstrap
intervals at ``level`` (default 95%); a permutation p-value counts the observed statistic among the permutations,
``(1 + #{|t*| >= |t|}) / (1 + n)``, so it is never 0.
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


def spearman_test(x: np.ndarray, y: np.ndarray, *, groups: np.ndarray | None = None, perms: int = 10_000, reps: int = 5_000,
                  level: float = 0.95, seed: int = 0) -> Correlation:
    """Spearman ρ(x, y) with a permutation p-value and a bootstrap interval. With ``groups`` (e.g. the seed of each
    (layer, ratio) pair), y is permuted within each group and pairs are resampled by group, so seeds pool without
    pretending their layers are independent draws."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    g = np.zeros(len(x), dtype=int) if groups is None else np.unique(np.asarray(groups)[ok], return_inverse=True)[1]
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Correlation(float("nan"), float("nan"), float("nan"), float("nan"), n)
    rho = float(sps.spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(g == k) for k in np.unique(g)]
    hits = 0
    for _ in range(perms):
        yp = y.copy()
        for m in members:
            yp[m] = y[rng.permutation(m)]
        hits += abs(sps.spearmanr(x, yp).statistic) >= abs(rho) - 1e-12
    p = (1 + hits) / (1 + perms)
    boots = []
    for _ in range(reps):
        if len(members) > 1:  # resample whole groups (seeds)
            idx = np.concatenate([members[k] for k in rng.integers(0, len(members), size=len(members))])
        else:
            idx = rng.integers(0, n, size=n)
        if np.ptp(x[idx]) > 0 and np.ptp(y[idx]) > 0:
            boots.append(sps.spearmanr(x[idx], y[idx]).statistic)
    q = (1 - level) / 2
    lo, hi = (float(np.quantile(boots, q)), float(np.quantile(boots, 1 - q))) if boots else (float("nan"), float("nan"))
    return Correlation(rho, float(p), lo, hi, n)


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
    """"holds" (significant, effect on the claimed side), "does not hold" (significant on the other side, or the
    interval excludes the claimed side), or "cannot tell" (not significant at ``alpha``, or nothing measured)."""
    if not np.isfinite(p):
        return "cannot tell"
    if p < alpha and claim_sign * low > 0 and claim_sign * high > 0:
        return "holds"
    if (p < alpha and claim_sign * high < 0) or (claim_sign * high < 0 and claim_sign * low < 0):
        return "does not hold"
    return "cannot tell"
