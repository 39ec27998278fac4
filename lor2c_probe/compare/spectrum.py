"""Low-rank evidence across runs (paper Fig. 2): spectra against a same-norm control, and phi between two runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from lor2c_probe.errors import CannotCompare
from lor2c_probe.record.runs import RecordedRun
from lor2c_probe.record.store import read_table
from lor2c_probe.analysis.low_rank import claim_table, phi_test

PHI_MAX = 8  # phi(i, j) for i, j up to this many directions


@dataclass(frozen=True)
class SpectrumComparison:
    summary_table: pd.DataFrame  # run, epoch, layer, n, top-k energies, effective and stable ranks (and the control's)
    curves: pd.DataFrame  # normalised spectra and cumulative energy per run, layer and epoch
    grid: pd.DataFrame | None  # phi(i, j) between the first two runs' maps, per layer (None without two comparable runs)
    summary: str
    claims: pd.DataFrame | None = None  # per group: top-k energy, ranks with 95% intervals, the low-rank test (analysis.low_rank.claim_table)
    phi: pd.DataFrame | None = None  # per seed and layer: phi(8, 8) of the first two groups against its chance distribution


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
        summaries.append(s.assign(run=r.label, group=r.group, seed=r.seed if r.seed is not None else 0))
        curves.append(c.assign(run=r.label))
    summary = pd.concat(summaries, ignore_index=True)
    curve = pd.concat(curves, ignore_index=True)
    from lor2c_probe.compare.chance import failed_runs

    failed = set(failed_runs(runs))
    pairs = _seed_pairs(_learned(runs, failed))
    grid, phi_note = _subspace(pairs[0], strict_phi) if pairs else (None, "phi: needs two runs")
    phi = _phi_tests(pairs, strict_phi) if grid is not None else None
    k = 8 if 8 in ks else max(ks)
    claims = _claims(summary, failed, k)
    text = _text(summary, grid, pairs[0] if pairs else runs, source, ks, phi_note, claims, phi)
    return SpectrumComparison(summary, curve, grid, text, claims, phi)


def _learned(runs: list[RecordedRun], failed: set[str]) -> list[RecordedRun]:
    """The runs that learned their task (``failed``: labels of those that did not), when every method keeps one and two
    or more runs are left (phi against a failed map says nothing); otherwise all of them."""
    kept = [r for r in runs if r.label not in failed]
    return kept if len(kept) >= 2 and {r.group for r in kept} == {r.group for r in runs} else runs


def _claims(summary: pd.DataFrame, failed: set[str], k: int) -> pd.DataFrame:
    """``claim_table`` over the runs that learned their task; a group none of whose runs did keeps its numbers from all
    of them, with the verdict "cannot tell". Column ``left_out``: the group's runs that did not learn."""
    kept = summary[~summary["run"].isin(failed)]
    groups = list(dict.fromkeys(summary["group"]))
    parts = [claim_table(kept, k)] if not kept.empty else []
    lost = [g for g in groups if g not in set(kept["group"])]
    if lost:
        t = claim_table(summary[summary["group"].isin(lost)], k)
        parts.append(t.assign(verdict=t["verdict"].where(t["verdict"] == "not tested (rank <= k)", "cannot tell (no run of it learned the task)")))
    table = pd.concat(parts, ignore_index=True).set_index("group").loc[groups].reset_index()
    left = summary[summary["run"].isin(failed)].groupby("group")["run"].nunique()
    return table.assign(left_out=[int(left.get(g, 0)) for g in table["group"]])


def _seed_pairs(runs: list[RecordedRun]) -> list[tuple[RecordedRun, RecordedRun]]:
    """(a run of the first group, the run of the second group with its seed) for every seed both have; with no
    groups spanning seeds, the first two runs."""
    groups = list(dict.fromkeys(r.group for r in runs))
    if len(groups) < 2:
        return [(runs[0], runs[1])] if len(runs) >= 2 else []
    second = {r.seed: r for r in runs if r.group == groups[1]}
    pairs = [(r, second[r.seed]) for r in runs if r.group == groups[0] and r.seed in second]
    return pairs or [(runs[0], runs[1])]


def _phi_tests(pairs: list[tuple[RecordedRun, RecordedRun]], strict: bool) -> pd.DataFrame | None:
    """phi(PHI_MAX, PHI_MAX) per seed and layer, each against the chance distribution for random subspaces."""
    frames = []
    for a, b in pairs:
        grid, _ = _subspace((a, b), strict)
        if grid is None:
            continue
        top = grid[(grid.i == grid.i.max()) & (grid.j == grid.j.max())]
        d = int(grid.attrs.get("d", 0))
        t = phi_test(top.phi.to_numpy(), d, int(grid.i.max()), int(grid.j.max()), seed=int(a.seed or 0))
        frames.append(t.assign(seed=a.seed, layer=top.layer.to_numpy(), module=top.module.to_numpy(), i=int(grid.i.max()), j=int(grid.j.max()), d=d))
    return pd.concat(frames, ignore_index=True) if frames else None


def _subspace(runs: tuple[RecordedRun, RecordedRun], strict: bool = True) -> tuple[Any, str]:
    """phi between two runs' maps at their last checkpoint, per common layer (``attrs["d"]``: the maps' output size)."""
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
    frames, d = [], 0
    for module in sorted(ma, key=lambda m: module_span(m) or (0, 0)):
        U, _ = left_singular_vectors(ma[module])
        V, _ = left_singular_vectors(mb[module])
        d = U.shape[0]
        frames.append(subspace_similarity(U, V, PHI_MAX, PHI_MAX).assign(module=module, layer=(module_span(module) or (-1,))[0]))
    grid = pd.concat(frames, ignore_index=True)
    grid.attrs["d"] = d
    grid.attrs["runs"] = (a.label, b.label)
    return grid, ""


def _text(summary: Any, grid: Any, runs: Any, source: str, ks: tuple[int, ...], phi_note: str, claims: Any, phi: Any) -> str:
    from lor2c_probe.analysis.gradient_claims import _ci, _p

    k = 8 if 8 in ks else max(ks)
    lines = [f"Low-rank evidence ({source} spectra, last epoch); control = Gaussian matrix of the same shape and Frobenius norm; "
             "95% intervals: Student t across seeds (each seed's mean over layers), or across layers with one seed."]
    for c in claims.itertuples(index=False):
        e, lo, hi = getattr(c, f"top{k}_energy"), getattr(c, f"top{k}_energy_low"), getattr(c, f"top{k}_energy_high")
        lines.append(
            f"  {c.group} ({c.seeds} seed(s), {c.layers} layers, {c.directions} directions): top {k} hold {e:.1%} {_ci(lo, hi, '.1%')} of the "
            f"energy (control {getattr(c, f'control_top{k}_energy'):.1%}); effective rank {c.effective_rank:.1f} "
            f"{_ci(c.effective_rank_low, c.effective_rank_high, '.1f')} (control {c.control_effective_rank:.1f}); stable rank "
            f"{c.stable_rank:.2f} {_ci(c.stable_rank_low, c.stable_rank_high, '.2f')} (control {c.control_stable_rank:.1f})")
        if c.verdict == "not tested (rank <= k)":
            continue
        lines.append(f"  Low rank ({c.group}: top-{k} energy above the control's): {c.verdict}; difference {c.difference:+.1%} "
                     f"{_ci(c.difference_low, c.difference_high, '+.1%')}, one-sample t-test across {c.unit}s, p = {_p(c.p)}, n = {c.n} {c.unit}s"
                     + (" (layers of one run are not independent: within-run evidence only)" if c.unit == "layer" else "")
                     + (f"; {c.left_out} run(s) that did not learn the task left out" if c.left_out and not c.verdict.startswith("cannot tell (no run") else "")
                     + ".")
    for run, s in summary.groupby("run", sort=False):
        last = s[s.epoch == s.epoch.max()].sort_values("layer")
        for r in last.itertuples(index=False):
            lines.append(f"    {run} layer {r.layer}: top-{k} energy {getattr(r, f'top{k}_energy'):.1%}, effective rank {r.effective_rank:.1f}, "
                         f"stable rank {r.stable_rank:.2f}")
    if grid is not None:
        a, b = runs[0].label, runs[1].label
        last = grid[(grid.i == grid.i.max()) & (grid.j == grid.j.max())]
        top1 = grid[(grid.i == 1) & (grid.j == 1)]
        lines.append(
            f"Subspace similarity of {a} vs {b} maps (top left singular vectors, last checkpoint): phi({grid.i.max()}, {grid.j.max()}) per layer "
            + ", ".join(f"{v:.2f}" for v in last.phi) + "; phi(1, 1): " + ", ".join(f"{v:.2f}" for v in top1.phi) + "."
        )
    if phi is not None and not phi.empty:
        sig = int((phi.p_holm < 0.05).sum())
        lines.append(
            f"phi({int(phi.i.iloc[0])}, {int(phi.j.iloc[0])}) against chance (random {int(phi.j.iloc[0])}-dimensional subspaces of R^{int(phi.d.iloc[0])}, "
            f"2,000 draws: mean {phi.chance_mean.iloc[0]:.3f}, 95th percentile {phi.chance_q95.iloc[0]:.3f}): median observed {phi.phi.median():.3f}; "
            f"above chance (one-sided p, Holm across layers within a seed, alpha = 0.05) in {sig} of {len(phi)} (seed, layer) maps; "
            f"smallest p = {_p(float(phi.p.min()))}.")
        lines.append(_phi_effect(phi))
    elif phi_note:
        lines.append(phi_note)
    return "\n".join(lines)


def _phi_effect(phi: Any) -> str:
    """Each seed's mean over its layers of phi minus that map's chance mean: the t interval across seeds (the
    independent unit), two-sided t p, and the verdict on the claim "above chance"; with one seed, the mean only
    (layers of one run are within-run evidence)."""
    from lor2c_probe.analysis import stats
    from lor2c_probe.analysis.gradient_claims import _ci, _p

    by_seed = phi.assign(excess=phi["phi"] - phi["chance_mean"]).groupby("seed", sort=True, dropna=False)
    per_seed = by_seed["excess"].mean().to_numpy(dtype=float)
    means = ", ".join(f"{v:.3f}" for v in by_seed["phi"].mean())
    chance = ", ".join(f"{v:.3f}" for v in phi["chance_mean"].unique())
    if len(per_seed) < 2:
        return f"Mean phi over layers {means} (chance {chance}): one seed, no test across seeds."
    t = stats.t_test(per_seed)
    v = stats.verdict(t.p, t.low, t.high, claim_sign=+1)
    return (f"Mean phi over layers per seed: {means}; above chance by {t.estimate:+.3f} {_ci(t.low, t.high, '+.3f')} "
            f"(one-sample t-test across n = {t.n} seeds, p = {_p(t.p)}): above chance {v}.")
