"""Spectral metrics of a singular-value vector, each with its definition (numpy only).

Convention for the zero matrix (sum sigma = 0): every share, rank and norm is 0. Nothing is NaN.
"""

from __future__ import annotations

import numpy as np

DEFINITIONS: dict[str, str] = {
    "sfs": "SFS_k = sum_{i>k} sigma_i / sum_i sigma_i (tail share of linear singular values; LoR2C Eq. 5). Low = concentrated",
    "head_share": "sum_{i<=k} sigma_i / sum_i sigma_i = 1 - SFS_k",
    "nuclear_norm": "sum_i sigma_i",
    "effective_rank": "exp(-sum_i p_i log p_i) with p = sigma / sum sigma (Roy & Vetterli 2007)",
    "stable_rank": "sum_i sigma_i^2 / sigma_max^2",
    "energy_rank_90": "smallest k with sum_{i<=k} sigma_i^2 >= 0.90 * sum_i sigma_i^2",
    "energy_rank_99": "smallest k with sum_{i<=k} sigma_i^2 >= 0.99 * sum_i sigma_i^2",
    "zero_matrix": "all of the above are 0 when every sigma is 0",
}


def _sorted(sigma: np.ndarray) -> np.ndarray:
    s = np.sort(np.asarray(sigma, dtype=np.float64))[::-1]
    if s.size and s[-1] < 0:
        raise ValueError("singular values must be non-negative")
    return s


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer; got {k!r}")


def head_share(sigma: np.ndarray, k: int) -> float:
    _check_k(k)
    s = _sorted(sigma)
    total = s.sum()
    return float(s[:k].sum() / total) if total > 0 else 0.0


def sfs(sigma: np.ndarray, k: int) -> float:
    """Tail share beyond the top k; 0 when k >= the number of non-zero singular values."""
    _check_k(k)
    s = _sorted(sigma)
    total = s.sum()
    return float(s[k:].sum() / total) if total > 0 else 0.0


def effective_rank(sigma: np.ndarray) -> float:
    s = _sorted(sigma)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def stable_rank(sigma: np.ndarray) -> float:
    s = _sorted(sigma)
    return float((s**2).sum() / s[0] ** 2) if s.size and s[0] > 0 else 0.0


def energy_rank(sigma: np.ndarray, q: float) -> int:
    if not 0 < q <= 1:
        raise ValueError(f"energy fraction must be in (0, 1]; got {q!r}")
    e = _sorted(sigma) ** 2
    total = e.sum()
    if total <= 0:
        return 0
    return int(np.searchsorted(np.cumsum(e) / total, q - 1e-12) + 1)


def metrics(sigma: np.ndarray, ks: tuple[int, ...] = (1, 2, 4, 8)) -> dict[str, float]:
    """Every metric of DEFINITIONS for one spectrum; per-k ones as ``sfs_<k>`` and ``head_share_<k>``."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"sfs_{k}"] = sfs(sigma, k)
        out[f"head_share_{k}"] = head_share(sigma, k)
    out["nuclear_norm"] = float(_sorted(sigma).sum())
    out["effective_rank"] = effective_rank(sigma)
    out["stable_rank"] = stable_rank(sigma)
    out["energy_rank_90"] = float(energy_rank(sigma, 0.90))
    out["energy_rank_99"] = float(energy_rank(sigma, 0.99))
    return out
