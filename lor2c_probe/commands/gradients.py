"""``lor2c-probe gradients``: train methods side by side with the gradient probes (or read existing runs),
then write the gradient-ratio surface (paper Fig. 7), the activation-gradient maps and a text summary.

Outputs in ``--out``: ``runs/<method>/`` (when training), ``gradient_ratio.parquet``, ``gradient_ratio.html``
(works offline), ``gradient_ratio.png``, ``activation_grads.parquet``, ``activation_grad_ratio.parquet``,
``activation_grads.png``, ``activation_profile.png`` (every method's last-epoch ||dL/dh_i|| in one plot),
``gradient_ratio_seeds.parquet`` (each numerator run over the baseline run of its seed), ``gradient_trend.parquet``
(the trend test per method and epoch), ``summary.txt``, ``gradients.json`` (what was compared, with which settings) and ``report/`` (the HTML report of the runs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from lor2c_probe.commands.common import parse_seeds, plan_methods, reject_training_options, train_planned
from lor2c_probe.compare.gradients import GradientComparison, compare_gradients, pick_baseline
from lor2c_probe.record.runs import RecordedRun, recorded_runs
from lor2c_probe.errors import UserError
from lor2c_probe.record.outputs import check_output, mark, staged, writing
ANALYSIS_KEYS = ("methods", "baseline", "from_runs", "stat", "factor", "seeds", "out", "overwrite", "quiet")
MARKER = "gradients.json"
STATS = ("mean_abs", "l2", "max_abs")
FACTORS = ("all", "A", "B", "W")


@dataclass(frozen=True)
class GradientsArgs:
    methods: list[str]
    baseline: str | None
    from_runs: list[Path]
    stat: str
    factor: str
    seeds: list[int] | None
    out: Path | None
    overwrite: bool
    quiet: bool
    train_options: dict[str, Any]

    @classmethod
    def from_options(cls, o: dict[str, Any]) -> GradientsArgs:
        methods = [m.strip() for m in o["methods"].split(",") if m.strip()]
        train = {k: v for k, v in o.items() if k not in ANALYSIS_KEYS}
        return cls(methods, o["baseline"], list(o["from_runs"] or []), o["stat"], o["factor"], parse_seeds(o.get("seeds")), o["out"],
                   o["overwrite"], o["quiet"], train)


def run_gradients(args: GradientsArgs) -> None:
    from lor2c_probe.commands.common import default_out

    if args.stat not in STATS:
        raise UserError(f"unknown --stat {args.stat!r}; choose one of: {', '.join(STATS)}")
    if args.factor not in FACTORS:
        raise UserError(f"unknown --factor {args.factor!r}; choose one of: {', '.join(FACTORS)}")
    out = args.out or default_out("gradients")
    if args.from_runs:
        if args.seeds is not None:
            raise UserError("--seeds trains runs; with --from-runs pass every seed's run directory instead")
        reject_training_options(args.train_options)
        if len(args.from_runs) < 2:
            raise UserError("--from-runs needs at least two run directories (e.g. a lor2c run and a lora run)")
        runs = recorded_runs(args.from_runs, "grads", "grads,activations")
    else:
        if len(args.methods) < 2:
            raise UserError("--methods needs at least two different methods, e.g. lor2c,lora")
        pick_baseline([RecordedRun(m, Path(m), {}) for m in args.methods], args.baseline)
        planned = plan_methods(args.methods, {**args.train_options, "probes": "grads,activations"}, args.seeds)
    rep = check_output(out, "gradients", args.overwrite, inputs=args.from_runs)
    with writing(out, rep, "gradients output"):
        if not args.from_runs:
            runs = train_planned(planned, out, quiet=args.quiet)
        baseline = pick_baseline(runs, args.baseline)
        tables = compare_gradients(runs, baseline, args.stat, args.factor)
        _write_outputs(out, runs, baseline, tables, args)
        report = _report(out, runs, baseline, args)
    typer.echo(tables.summary)
    typer.echo(f"outputs: {out}")
    typer.echo(f"report: {report}")


def _report(out: Path, runs: list[RecordedRun], baseline: list[RecordedRun], args: GradientsArgs) -> Path:
    """The runs' report in ``out/report``: the ratio surface, block-input gradients, training curves, the comparison."""
    from lor2c_probe.report.build import build_report
    from lor2c_probe.report.sections import Options

    den = baseline[0].group
    title = f"Gradient flow: {', '.join(dict.fromkeys(r.group for r in runs if r.group != den))} vs {den}"
    res = build_report([r.path for r in runs], out / "report", title=title, overwrite=True, groups={r.path: r.group for r in runs},
                       options=Options(baseline=den, stat=args.stat, factor=args.factor))  # the command's groups
    return res.html


def _write_outputs(out: Path, runs: list[RecordedRun], baseline: list[RecordedRun], t: GradientComparison, args: GradientsArgs) -> None:
    """Write everything into a hidden folder first, then move the files into ``out`` (nothing half-written)."""
    from lor2c_probe.plots.gradients import activation_heatmaps_png, ratio_surface_html, ratio_surface_png
    from lor2c_probe.plots.report import activation_profile_figure

    with staged(out) as d:
        den = baseline[0].group
        t.surface.to_parquet(d / "gradient_ratio.parquet", index=False)
        t.per_seed.to_parquet(d / "gradient_ratio_seeds.parquet", index=False)
        t.trend.to_parquet(d / "gradient_trend.parquet", index=False)
        ratio_surface_html(t.surface, d / "gradient_ratio.html", denominator=den, stat=args.stat)
        ratio_surface_png(t.surface, d / "gradient_ratio.png", denominator=den, stat=args.stat)
        if t.act_profile is not None:
            t.act_profile.to_parquet(d / "activation_grads.parquet", index=False)
            activation_heatmaps_png(t.profiles, d / "activation_grads.png", stat="l2")
            activation_profile_figure(t.act_profile, stat="l2").savefig(d / "activation_profile.png", bbox_inches="tight")
        if t.act_ratio is not None:
            t.act_ratio.to_parquet(d / "activation_grad_ratio.parquet", index=False)
        (d / "summary.txt").write_text(t.summary + "\n")
        meta = {
            "numerators": [r.label for r in runs if all(r is not b for b in baseline)],
            "baseline": den,
            "baseline_runs": [b.label for b in baseline],
            "seeds": sorted({r.seed for r in runs if r.seed is not None}),
            "intervals": "95%: Student t of the log ratio over seeds, exponentiated, around the geometric mean (two or more seeds), else a moving-block bootstrap over the epoch's steps",
            "runs": {r.label: str(r.path) for r in runs},
            "stat": args.stat,
            "factor": args.factor,
            "epoch_value": "mean over the recorded steps of the epoch",
        }
        (d / MARKER).write_text(json.dumps(mark(meta), indent=2) + "\n")
