"""Low-rank evidence (paper Fig. 2) and subspace similarity between learned maps. numpy + pandas only.

- ``low_rank_evidence``: per (epoch, module) at the epoch's last recorded step, the normalised spectrum
  (sigma / sigma_max), cumulative energy (sum_{i<=k} sigma_i^2 / sum sigma^2), the energy share of the
  top 1, 2, 4, 8, 16 directions, effective and stable rank; each next to a **control**: an n x n
  Gaussian matrix (seeded) scaled to the same Frobenius norm, n = the number of recorded singular
  values. "Low rank" is then a measured contrast: ``top8_energy`` vs ``control_top8_energy``.
- ``subspace_similarity``: the LoRA paper's phi(i, j) = ||U_i^T V_j||_F^2 / min(i, j), U_i and V_j the
  top-i and top-j left singular vectors (output directions) of two maps. 1 = one subspace contains the
  other, 0 = orthogonal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lor2c_probe.analysis.spectral import effective_rank, stable_rank
from lor2c_probe.record.naming import module_span

TOP_KS = (1, 2, 4, 8, 16)


def _check_ks(ks: tuple[int, ...]) -> None:
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive integer; got {k!r}")


def energy_shares(sigma: np.ndarray, ks: tuple[int, ...]) -> dict[int, float]:
    e = np.sort(np.asarray(sigma, dtype=np.float64))[::-1] ** 2
    total = e.sum()
    return {k: float(e[:k].sum() / total) if total > 0 else 0.0 for k in ks}


def control_spectrum(n: int, frobenius: float, seed: int) -> np.ndarray:
    """Singular values of an n x n standard Gaussian matrix rescaled to Frobenius norm ``frobenius``."""
    g = np.random.default_rng(seed).standard_normal((n, n))
    s = np.linalg.svd(g, compute_uv=False)
    norm = np.sqrt((s**2).sum())
    return s * (frobenius / norm) if norm > 0 else s


def epoch_end_spectra(spectra: pd.DataFrame, source: str) -> pd.DataFrame:
    """Rows of the last recorded step of each epoch, for ``source``; raises if there are none."""
    if spectra.empty:
        raise ValueError("the spectra table is empty (record with --probes spectra)")
    sel = spectra[spectra["source"] == source]
    if sel.empty:
        raise ValueError(f"no {source!r} spectra recorded; available sources: {', '.join(sorted(spectra.source.unique()))}")
    last = sel.groupby("epoch")["step"].transform("max")
    return sel[sel["step"] == last]


def low_rank_evidence(
    spectra: pd.DataFrame, *, source: str = "weights", ks: tuple[int, ...] = TOP_KS, control_seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary per epoch and module, spectrum per epoch, module and index) with the control alongside.

    Summary columns: epoch, module, layer, n, frobenius, top<k>_energy, effective_rank, stable_rank and
    the same with a ``control_`` prefix, plus ``top8_vs_control`` (ratio of top-8 energy shares when 8 in ks).
    """
    _check_ks(ks)
    ends = epoch_end_spectra(spectra, source)
    summary, curves = [], []
    for (epoch, module), g in ends.groupby(["epoch", "module"]):
        span = module_span(module)
        sigma = g.sort_values("index")["sigma"].to_numpy(dtype=np.float64)
        sigma = np.sort(sigma)[::-1]
        n = len(sigma)
        fro = float(np.sqrt((sigma**2).sum()))
        ctrl = control_spectrum(n, fro, control_seed + int(epoch) * 1000 + (span[0] if span else 0))
        row = {"epoch": int(epoch), "module": module, "layer": span[0] if span else -1, "n": n, "frobenius": fro}
        for name, s in (("", sigma), ("control_", ctrl)):
            for k, v in energy_shares(s, ks).items():
                row[f"{name}top{k}_energy"] = v
            row[f"{name}effective_rank"] = effective_rank(s)
            row[f"{name}stable_rank"] = stable_rank(s)
        if 8 in ks:
            row["top8_vs_control"] = row["top8_energy"] / row["control_top8_energy"] if row["control_top8_energy"] > 0 else 0.0
        summary.append(row)
        for name, s in (("learned", sigma), ("control", ctrl)):
            e = s**2
            cum = np.cumsum(e) / e.sum() if e.sum() > 0 else np.zeros_like(e)
            norm = s / s[0] if s[0] > 0 else np.zeros_like(s)
            curves.append(pd.DataFrame({
                "epoch": int(epoch), "module": module, "layer": row["layer"], "kind": name, "index": np.arange(n),
                "sigma": s, "sigma_normalized": norm, "cumulative_energy": cum,
            }))
    return pd.DataFrame(summary), pd.concat(curves, ignore_index=True)


# -- subspace similarity --------------------------------------------------------------------------------
def left_singular_vectors(matrix_or_factors: np.ndarray | tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(U, sigma) of a dense matrix, or of B @ A given the factors (B, A) without forming it (thin QR route)."""
    if isinstance(matrix_or_factors, tuple):
        B, A = (np.asarray(x, dtype=np.float64) for x in matrix_or_factors)
        qb, rb = np.linalg.qr(B)
        _, ra = np.linalg.qr(A.T)
        u, s, _ = np.linalg.svd(rb @ ra.T)
        return qb @ u, s
    u, s, _ = np.linalg.svd(np.asarray(matrix_or_factors, dtype=np.float64))
    return u, s


def phi(U: np.ndarray, V: np.ndarray, i: int, j: int) -> float:
    """||U[:, :i]^T V[:, :j]||_F^2 / min(i, j) (LoRA paper, Eq. 4); U, V with orthonormal columns."""
    _check_ks((i, j))
    if i > U.shape[1] or j > V.shape[1]:
        raise ValueError(f"phi({i}, {j}) needs {i} and {j} singular vectors; have {U.shape[1]} and {V.shape[1]}")
    m = U[:, :i].T @ V[:, :j]
    return float((m**2).sum() / min(i, j))


def subspace_similarity(U: np.ndarray, V: np.ndarray, max_i: int, max_j: int) -> pd.DataFrame:
    """phi(i, j) for i <= max_i, j <= max_j (capped at the available vectors): columns i, j, phi."""
    max_i, max_j = min(max_i, U.shape[1]), min(max_j, V.shape[1])
    return pd.DataFrame([(i, j, phi(U, V, i, j)) for i in range(1, max_i + 1) for j in range(1, max_j + 1)], columns=["i", "j", "phi"])


# -- uncertainty ----------------------------------------------------------------------------------------------
METRICS = ("effective_rank", "stable_rank")


def claim_table(summary: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per group (method), last epoch: top-k energy, effective and stable rank with 95% intervals, next to the control,
    and the test of the low-rank claim (top-k energy above the same-norm Gaussian control's).

    ``summary``: ``low_rank_evidence`` rows with columns group and seed. The unit is the seed (each seed's mean over
    layers; a Student-t interval across seeds); with one seed the unit falls back to the layer (t across layers, which
    share a run: within-run evidence only), and ``unit`` says which.
    """
    from lor2c_probe.analysis import stats

    rows = []
    for group, g in summary.groupby("group", sort=False):
        last = g[g["epoch"] == g.groupby("seed")["epoch"].transform("max")]
        unit = "seed" if last["seed"].nunique() > 1 else "layer"
        per = last.groupby("seed").mean(numeric_only=True) if unit == "seed" else last
        row = {"group": group, "unit": unit, "n": len(per), "seeds": int(last["seed"].nunique()), "layers": int(last["layer"].nunique()),
               "directions": int(last["n"].max())}
        for col in (f"top{k}_energy",) + METRICS:
            t = stats.t_test(per[col].to_numpy())
            row.update({col: t.estimate, f"{col}_low": t.low, f"{col}_high": t.high, f"control_{col}": float(per[f"control_{col}"].mean())})
        diff = stats.t_test((per[f"top{k}_energy"] - per[f"control_top{k}_energy"]).to_numpy())
        trivial = row["directions"] <= k  # a map of rank <= k holds all its energy in k directions by construction
        row.update({"difference": diff.estimate, "difference_low": diff.low, "difference_high": diff.high, "p": np.nan if trivial else diff.p,
                    "verdict": "not tested (rank <= k)" if trivial else
                    ("cannot tell (one seed)" if unit == "layer" else stats.verdict(diff.p, diff.low, diff.high, claim_sign=+1))})
        rows.append(row)
    return pd.DataFrame(rows)


def by_layer(summary: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per group and layer, each run's last epoch: top-k energy and effective rank as the mean over runs (one per seed)
    with a 95% Student-t interval across them (no interval with one), next to the control's mean; ``seeds`` counts the
    runs. Groups whose maps have at most k directions are left out (their top-k energy is 1 by construction)."""
    from lor2c_probe.analysis import stats

    cols = [f"top{k}_energy", "effective_rank", f"control_top{k}_energy", "control_effective_rank"]
    rows = []
    for group, g in summary.groupby("group", sort=False):
        key = "run" if "run" in g else "seed"  # the unit: one run (one seed) each
        last = g[g["epoch"] == g.groupby(key)["epoch"].transform("max")]
        if int(last["n"].max()) <= k:
            continue
        for layer, cell in last.groupby("layer"):
            per_run = cell.groupby(key)[cols].mean()  # several modules at one layer (e.g. unplaced ones): one value per run
            row = {"group": group, "layer": int(layer), "seeds": len(per_run)}
            for col in (f"top{k}_energy", "effective_rank"):
                t = stats.t_test(per_run[col].to_numpy(dtype=float))
                row.update({col: t.estimate, f"{col}_low": t.low, f"{col}_high": t.high, f"control_{col}": float(per_run[f"control_{col}"].mean())})
            rows.append(row)
    return pd.DataFrame(rows)


def phi_null(d: int, i: int, j: int, *, draws: int = 2_000, seed: int = 0) -> np.ndarray:
    """phi(i, j) between a fixed top-i subspace and a uniformly random j-dimensional subspace of R^d (Haar: QR of a
    Gaussian d x j matrix), ``draws`` times: the chance distribution phi is judged against (mean max(i, j) / d)."""
    _check_ks((i, j))
    rng = np.random.default_rng(seed)
    out = np.empty(draws)
    for n in range(draws):
        q, _ = np.linalg.qr(rng.standard_normal((d, j)))
        out[n] = float((q[:i, :] ** 2).sum() / min(i, j))  # U = the first i basis vectors (phi is rotation-invariant)
    return out


def phi_test(observed: np.ndarray, d: int, i: int, j: int, *, draws: int = 2_000, seed: int = 0) -> pd.DataFrame:
    """Each observed phi(i, j) against its chance distribution: null mean, 95th percentile, one-sided p
    ``(1 + #{null >= phi}) / (1 + draws)``, Holm across the observed values."""
    from lor2c_probe.analysis import stats

    null = phi_null(d, i, j, draws=draws, seed=seed)
    obs = np.asarray(observed, dtype=float)
    p = np.array([(1 + np.sum(null >= x - 1e-12)) / (1 + draws) for x in obs])
    return pd.DataFrame({"phi": obs, "chance_mean": float(null.mean()), "chance_q95": float(np.quantile(null, 0.95)), "p": p,
                         "p_holm": stats.holm(p)})
