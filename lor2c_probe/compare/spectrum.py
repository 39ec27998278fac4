"""Low-rank evidence across runs (paper Fig. 2): spectra against a same-norm control, and phi between two runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from lor2c_probe.errors import CannotCompare
from lor2c_probe.record.runs import RecordedRun
from lor2c_probe.record.store import read_table

PHI_MAX = 8  # phi(i, j) for i, j up to this many directions


@dataclass(frozen=True)
class SpectrumComparison:
    summary_table: pd.DataFrame  # run, epoch, layer, n, top-k energies, effective and stable ranks (and the control's)
    curves: pd.DataFrame  # normalised spectra and cumulative energy per run, layer and epoch
    grid: pd.DataFrame | None  # phi(i, j) between the first two runs' maps, per layer (None without two comparable runs)
    summary: str


def compare_spectra(runs: list[RecordedRun], source: str, ks: tuple[int, ...], *, strict_phi: bool = True) -> SpectrumComparison:
    """Low-rank evidence per run, and phi between the first two runs (a layer mismatch is an error when ``strict_phi``)."""
    from lor2c_probe.analysis.low_rank import low_rank_evidence

    summaries, curves = [], []
    for r in runs:
        spectra = read_table(r.path, "spectra")
        spectra = spectra[spectra.module.str.startswith("lor2c.")]  # residual maps only (not LoRA's q/v deltas)
        if spectra.empty:
            raise CannotCompare(f"run {r.path} has no LoR2C residual-map spectra (its method is {r.manifest.get('method', {}).get('name')}); "
                            "analyse runs of the LoR2C family or full-rank-residual (any method's update spectra: the report's "
                            "update_spectra section)")
        try:
            s, c = low_rank_evidence(spectra, source=source, ks=ks)
        except ValueError as e:
            raise CannotCompare(f"run {r.path}: {e}") from None
        summaries.append(s.assign(run=r.label))
        curves.append(c.assign(run=r.label))
    summary = pd.concat(summaries, ignore_index=True)
    curve = pd.concat(curves, ignore_index=True)
    grid, phi_note = _subspace(runs, strict_phi) if len(runs) >= 2 else (None, "phi: needs two runs")
    text = _text(summary, grid, runs, source, ks, phi_note)
    return SpectrumComparison(summary, curve, grid, text)


def _subspace(runs: list[RecordedRun], strict: bool = True) -> tuple[Any, str]:
    """phi between the first two runs' maps at their last checkpoint, per common layer."""
    from lor2c_probe.analysis.checkpoints import residual_maps
    from lor2c_probe.analysis.low_rank import left_singular_vectors, subspace_similarity
    from lor2c_probe.record.naming import module_span

    a, b = runs[0], runs[1]
    try:
        ma = residual_maps(a.path, a.manifest["method"]["scaling"])
        mb = residual_maps(b.path, b.manifest["method"]["scaling"])
    except (ValueError, KeyError) as e:
        return None, f"phi skipped: {e}"
    if not ma or not mb:
        return None, "phi skipped: phi compares LoR2C-family maps and one run has none"
    if set(ma) != set(mb):
        only_a, only_b = sorted(set(ma) - set(mb)), sorted(set(mb) - set(ma))
        why = f"layers do not match for phi: {a.label} alone has {only_a}, {b.label} alone has {only_b}"
        if strict:
            raise CannotCompare(why)
        return None, f"phi skipped: {why}"
    frames = []
    for module in sorted(ma, key=lambda m: module_span(m) or (0, 0)):
        U, _ = left_singular_vectors(ma[module])
        V, _ = left_singular_vectors(mb[module])
        frames.append(subspace_similarity(U, V, PHI_MAX, PHI_MAX).assign(module=module, layer=(module_span(module) or (-1,))[0]))
    return pd.concat(frames, ignore_index=True), ""


def _text(summary: Any, grid: Any, runs: list[RecordedRun], source: str, ks: tuple[int, ...], phi_note: str) -> str:
    k = 8 if 8 in ks else max(ks)
    lines = [f"Low-rank evidence ({source} spectra, last epoch); control = Gaussian matrix of the same shape and Frobenius norm."]
    for run, s in summary.groupby("run", sort=False):
        last = s[s.epoch == s.epoch.max()].sort_values("layer")
        n = int(last.n.iloc[0])
        lines.append(
            f"  {run}: top {k} of {n} directions hold {last[f'top{k}_energy'].min():.1%}-{last[f'top{k}_energy'].max():.1%} of the energy "
            f"(control {last[f'control_top{k}_energy'].mean():.1%}); effective rank {last.effective_rank.min():.1f}-{last.effective_rank.max():.1f} "
            f"(control {last.control_effective_rank.mean():.1f}); stable rank {last.stable_rank.min():.2f}-{last.stable_rank.max():.2f} "
            f"(control {last.control_stable_rank.mean():.1f})"
        )
        for r in last.itertuples(index=False):
            lines.append(f"    layer {r.layer}: top-{k} energy {getattr(r, f'top{k}_energy'):.1%}, effective rank {r.effective_rank:.1f}, stable rank {r.stable_rank:.2f}")
    if grid is not None:
        a, b = runs[0].label, runs[1].label
        d = int(summary.n.max())
        last = grid[(grid.i == grid.i.max()) & (grid.j == grid.j.max())]
        top1 = grid[(grid.i == 1) & (grid.j == 1)]
        chance = max(int(grid.i.max()), int(grid.j.max())) / d
        lines.append(
            f"Subspace similarity of {a} vs {b} maps (top left singular vectors, last checkpoint): phi({grid.i.max()}, {grid.j.max()}) per layer "
            + ", ".join(f"{v:.2f}" for v in last.phi) + f" (chance for random subspaces ~{chance:.3f}); phi(1, 1): "
            + ", ".join(f"{v:.2f}" for v in top1.phi) + "."
        )
    elif phi_note:
        lines.append(phi_note)
    return "\n".join(lines)
