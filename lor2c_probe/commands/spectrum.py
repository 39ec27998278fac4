"""``lor2c-probe spectrum``: is the learned residual map low rank? (paper Fig. 2) and does LoR2C learn its directions?

With no run directories it trains ``--methods`` (default: full-rank-residual, lor2c) on the same data and
seed, recording spectra at each epoch end. Outputs in ``--out``: ``low_rank.parquet`` (run, module, layer,
epoch, kind, index, sigma, ...), ``low_rank_summary.parquet``, ``low_rank.png``, ``low_rank.html``,
``subspace.parquet`` + ``subspace.png`` (phi between the first two runs' maps, last epoch),
``low_rank_claims.parquet`` (per method: top-k energy and ranks with 95% intervals, the low-rank test),
``phi_chance.parquet`` (phi(8, 8) per seed and layer against random subspaces), ``summary.txt`` and ``spectrum.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from lor2c_probe.commands.common import parse_seeds, plan_methods, reject_training_options, train_planned
from lor2c_probe.compare.spectrum import SpectrumComparison, compare_spectra
from lor2c_probe.record.runs import recorded_runs
from lor2c_probe.errors import UserError
from lor2c_probe.record.outputs import check_output, mark, staged, writing

ANALYSIS_KEYS = ("runs", "methods", "source", "ks", "seeds", "out", "overwrite", "quiet")


@dataclass(frozen=True)
class SpectrumArgs:
    runs: list[Path]
    methods: list[str]
    source: str
    ks: tuple[int, ...]
    seeds: list[int] | None
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
        return cls(list(o["runs"] or []), methods, o["source"], ks, parse_seeds(o.get("seeds")), o["out"], o["overwrite"], o["quiet"], train)


def run_spectrum(args: SpectrumArgs) -> None:
    from lor2c_probe.commands.common import default_out

    if args.source not in ("weights", "features"):
        raise UserError(f"unknown --source {args.source!r}; choose weights or features")
    out = args.out or default_out("spectrum")
    if args.runs:
        if args.seeds is not None:
            raise UserError("--seeds trains runs; to analyse recorded runs pass every seed's run directory instead")
        reject_training_options(args.train_options)
        runs = recorded_runs(args.runs, "spectra", "spectra")
    else:
        planned = plan_methods(args.methods, {**args.train_options, "probes": "spectra"}, args.seeds)
    rep = check_output(out, "spectrum", args.overwrite, inputs=args.runs)
    with writing(out, rep, "spectrum output"):
        if not args.runs:
            runs = train_planned(planned, out, quiet=args.quiet)
        results = compare_spectra(runs, args.source, args.ks)
        _write(out, results, args, runs)
    typer.echo(results.summary)
    typer.echo(f"outputs: {out}")


def _write(out: Path, res: SpectrumComparison, args: SpectrumArgs, runs: list) -> None:
    from lor2c_probe.analysis.spectral import DEFINITIONS
    from lor2c_probe.plots.spectra import low_rank_html, low_rank_png, subspace_png

    title = f"Learned residual maps: {args.source} spectra vs a same-norm Gaussian control"
    with staged(out) as d:
        res.curves.to_parquet(d / "low_rank.parquet", index=False)
        res.summary_table.to_parquet(d / "low_rank_summary.parquet", index=False)
        if res.claims is not None:
            res.claims.to_parquet(d / "low_rank_claims.parquet", index=False)
        if res.phi is not None:
            res.phi.to_parquet(d / "phi_chance.parquet", index=False)
        low_rank_png(res.curves, d / "low_rank.png", title=title)
        low_rank_html(res.curves, d / "low_rank.html", title=title)
        if res.grid is not None:
            res.grid.to_parquet(d / "subspace.parquet", index=False)
            subspace_png(res.grid, d / "subspace.png", title="phi(i, j): top-i directions of the first run vs top-j of the second")
        (d / "summary.txt").write_text(res.summary + "\n")
        meta = {"source": args.source, "ks": list(args.ks), "definitions": DEFINITIONS, "seeds": sorted({r.seed for r in runs if r.seed is not None}),
                "control": "n x n standard Gaussian matrix (seeded) rescaled to the learned map's Frobenius norm",
                "phi": "||U_i^T V_j||_F^2 / min(i, j), left singular vectors, last checkpoint"}
        (d / "spectrum.json").write_text(json.dumps(mark(meta), indent=2) + "\n")
