"""``lor2c-probe spectrum``: is the learned residual map low rank? (paper Fig. 2) and does LoR2C learn its directions?

With no run directories it trains ``--methods`` (default: full-rank-residual, lor2c) on the same data and
seed, recording spectra at each epoch end. Outputs in ``--out``: ``low_rank.parquet`` (run, module, layer,
epoch, kind, index, sigma, ...), ``low_rank_summary.parquet``, ``low_rank.png``, ``low_rank.html``,
``subspace.parquet`` + ``subspace.png`` (phi between the first two runs' maps, last epoch),
``summary.txt`` and ``spectrum.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from lor2c_probe.commands.common import RunRef, plan_methods, recorded_runs, reject_training_options, train_planned
from lor2c_probe.errors import UserError
from lor2c_probe.record.outputs import check_output, mark, staged, writing

ANALYSIS_KEYS = ("runs", "methods", "source", "ks", "out", "overwrite", "quiet")
PHI_MAX = 8


@dataclass(frozen=True)
class SpectrumArgs:
    runs: list[Path]
    methods: list[str]
    source: str
    ks: tuple[int, ...]
    out: Path | None
    overwrite: bool
    quiet: bool
    train_options: dict[str, Any]

    @classmethod
    def from_options(cls, o: dict[str, Any]) -> SpectrumArgs:
        try:
            ks = tuple(int(k) for k in o["ks"].split(",") if k.strip())
        except ValueError:
            raise UserError(f"--ks must be a comma list of positive integers; got {o['ks']!r}") from None
        bad = [k for k in ks if k <= 0]
        if bad or not ks:
            raise UserError(f"k must be a positive integer; got {bad[0] if bad else 'nothing'} in --ks")
        methods = [m.strip() for m in o["methods"].split(",") if m.strip()]
        train = {k: v for k, v in o.items() if k not in ANALYSIS_KEYS}
        return cls(list(o["runs"] or []), methods, o["source"], ks, o["out"], o["overwrite"], o["quiet"], train)


def run_spectrum(args: SpectrumArgs) -> None:
    from lor2c_probe.cli import default_out

    if args.source not in ("weights", "features"):
        raise UserError(f"unknown --source {args.source!r}; choose weights or features")
    out = args.out or default_out("spectrum")
    if args.runs:
        reject_training_options(args.train_options)
        runs = recorded_runs(args.runs, "spectra", "spectra")
    else:
        planned = plan_methods(args.methods, {**args.train_options, "probes": "spectra"})
    rep = check_output(out, "spectrum", args.overwrite, inputs=args.runs)
    with writing(out, rep, "spectrum output"):
        if not args.runs:
            runs = train_planned(planned, out, quiet=args.quiet)
        results = analyse(runs, args.source, args.ks)
        _write(out, results, args)
    typer.echo(results["summary"])
    typer.echo(f"outputs: {out}")


def analyse(runs: list[RunRef], source: str, ks: tuple[int, ...], *, strict_phi: bool = True) -> dict[str, Any]:
    """Low-rank evidence per run, and phi between the first two runs (a layer mismatch is an error when ``strict_phi``)."""
    import pandas as pd

    from lor2c_probe.analysis.low_rank import low_rank_evidence
    from lor2c_probe.record.store import read_table

    summaries, curves = [], []
    for r in runs:
        spectra = read_table(r.path, "spectra")
        spectra = spectra[spectra.module.str.startswith("lor2c.")]  # residual maps only (not LoRA's q/v deltas)
        if spectra.empty:
            raise UserError(f"run {r.path} has no LoR2C residual-map spectra (its method is {r.manifest.get('method', {}).get('name')}); "
                            "analyse runs of the LoR2C family or full-rank-residual")
        try:
            s, c = low_rank_evidence(spectra, source=source, ks=ks)
        except ValueError as e:
            raise UserError(f"run {r.path}: {e}") from None
        summaries.append(s.assign(run=r.label))
        curves.append(c.assign(run=r.label))
    summary = pd.concat(summaries, ignore_index=True)
    curve = pd.concat(curves, ignore_index=True)
    grid, phi_note = _subspace(runs, strict_phi) if len(runs) >= 2 else (None, "phi: needs two runs")
    text = _text(summary, grid, runs, source, ks, phi_note)
    return {"summary_table": summary, "curves": curve, "grid": grid, "summary": text}


def _subspace(runs: list[RunRef], strict: bool = True) -> tuple[Any, str]:
    """phi between the first two runs' maps at their last checkpoint, per common layer."""
    import pandas as pd

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
            raise UserError(why)
        return None, f"phi skipped: {why}"
    frames = []
    for module in sorted(ma, key=lambda m: module_span(m) or (0, 0)):
        U, _ = left_singular_vectors(ma[module])
        V, _ = left_singular_vectors(mb[module])
        frames.append(subspace_similarity(U, V, PHI_MAX, PHI_MAX).assign(module=module, layer=(module_span(module) or (-1,))[0]))
    return pd.concat(frames, ignore_index=True), ""


def _text(summary: Any, grid: Any, runs: list[RunRef], source: str, ks: tuple[int, ...], phi_note: str) -> str:
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


def _write(out: Path, res: dict[str, Any], args: SpectrumArgs) -> None:
    from lor2c_probe.analysis.spectral import DEFINITIONS
    from lor2c_probe.plots.spectra import low_rank_html, low_rank_png, subspace_png

    title = f"Learned residual maps: {args.source} spectra vs a same-norm Gaussian control"
    with staged(out) as d:
        res["curves"].to_parquet(d / "low_rank.parquet", index=False)
        res["summary_table"].to_parquet(d / "low_rank_summary.parquet", index=False)
        low_rank_png(res["curves"], d / "low_rank.png", title=title)
        low_rank_html(res["curves"], d / "low_rank.html", title=title)
        if res["grid"] is not None:
            res["grid"].to_parquet(d / "subspace.parquet", index=False)
            subspace_png(res["grid"], d / "subspace.png", title="phi(i, j): top-i directions of the first run vs top-j of the second")
        (d / "summary.txt").write_text(res["summary"] + "\n")
        meta = {"source": args.source, "ks": list(args.ks), "definitions": DEFINITIONS,
                "control": "n x n standard Gaussian matrix (seeded) rescaled to the learned map's Frobenius norm",
                "phi": "||U_i^T V_j||_F^2 / min(i, j), left singular vectors, last checkpoint"}
        (d / "spectrum.json").write_text(json.dumps(mark(meta), indent=2) + "\n")
