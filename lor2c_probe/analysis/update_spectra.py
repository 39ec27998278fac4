"""How low-rank each method's learned update is: per module, from the ``spectra`` table's weight spectra.

Pure pandas. For every adapter module at a run's last reading: the number of singular values its route yields
(``n``: r for LoRA, 2r for PiSSA relative to its start, min(out, in) for the dense routes of IA3 and DoRA), the
effective rank exp(H(p)) with p_i = sigma_i^2 / sum sigma^2 (Roy & Vetterli 2007), and the energy share of the
top 1 and top k directions. A method whose update can have at most r non-zero values is low rank by construction;
only the dense routes (IA3, DoRA, a full-rank residual) let the data say how low rank the update is.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

SUMMARY_COLUMNS = ["run", "module", "layer", "n", "effective_rank", "energy_top1", "energy_topk", "k"]
_LAYER = re.compile(r"^[A-Za-z0-9_-]+\.(\d+)")


def module_layer(module: str) -> int:
    """The block of a spectral module id (``lora.3.q`` -> 3, ``lor2c.3-4`` -> 3); -1 without one."""
    m = _LAYER.match(module)
    return int(m.group(1)) if m else -1


def per_module(spectra: pd.DataFrame, run: str, k: int) -> pd.DataFrame:
    """One row per weight-spectrum module at the run's last reading."""
    w = spectra[spectra["source"] == "weights"]
    if w.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    w = w[w["step"] == w["step"].max()]
    rows = []
    for module, g in w.groupby("module"):
        sigma = np.sort(g["sigma"].to_numpy(dtype=np.float64))[::-1]
        energy = sigma**2
        total = energy.sum()
        if total <= 0 or not np.isfinite(total):
            rows.append((run, module, module_layer(module), len(sigma), np.nan, np.nan, np.nan, k))
            continue
        p = energy / total
        nz = p[p > 0]
        rows.append((run, module, module_layer(module), len(sigma), float(np.exp(-(nz * np.log(nz)).sum())),
                     float(p[0]), float(p[: min(k, len(p))].sum()), k))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def by_run(modules: pd.DataFrame) -> pd.DataFrame:
    """Per run: modules, the cap n, and the median and quartiles over modules of the effective rank and energies."""
    out = []
    for run, g in modules.groupby("run", sort=False):
        er = g["effective_rank"].dropna()
        out.append({
            "run": run, "modules": len(g), "n_max": int(g["n"].max()),
            "effective_rank_median": float(er.median()) if len(er) else np.nan,
            "effective_rank_q25": float(er.quantile(0.25)) if len(er) else np.nan,
            "effective_rank_q75": float(er.quantile(0.75)) if len(er) else np.nan,
            "energy_top1_median": float(g["energy_top1"].median()),
            "energy_topk_median": float(g["energy_topk"].median()), "k": int(g["k"].iloc[0]),
        })
    return pd.DataFrame(out)


def reading(table: pd.DataFrame) -> str:
    """Plain sentences: each run's effective rank against its cap; which methods could have shown a high rank."""
    if table.empty:
        return "No run recorded weight spectra."
    lines = []
    for r in table.itertuples(index=False):
        if not np.isfinite(r.effective_rank_median):
            lines.append(f"{r.run}: every update is exactly zero at the last reading (no effective rank).")
            continue
        lines.append(f"{r.run}: median effective rank {r.effective_rank_median:.2f} (quartiles {r.effective_rank_q25:.2f}-"
                     f"{r.effective_rank_q75:.2f}) of at most {r.n_max} over {r.modules} modules; the top direction holds "
                     f"{r.energy_top1_median:.0%} of the energy, the top {r.k} {r.energy_topk_median:.0%}.")
    full = int(table["n_max"].max())  # a dense route yields min(out, in) values: the widest cap is the layers' dimension
    free = table[table["n_max"] == full]
    capped = table[table["n_max"] < full]
    if len(capped):
        lines.append(f"Low rank by construction (their route yields at most the cap, below {full}): "
                     + ", ".join(f"{r.run} ({r.n_max})" for r in capped.itertuples(index=False))
                     + "; a low effective rank there is not evidence that the data asks for one.")
    if len(capped) and len(free):
        lines.append(f"Only {', '.join(free['run'])} could show an update of full rank ({full} values).")
    elif not len(capped):
        lines.append(f"Every run's route yields {full} values, so these effective ranks compare like with like.")
    return "\n".join(lines)
