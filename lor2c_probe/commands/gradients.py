"""``lor2c-probe gradients``: train methods side by side with the gradient probes (or read existing runs),
then write the gradient-ratio surface (paper Fig. 7), the activation-gradient maps and a text summary.

Outputs in ``--out``: ``runs/<method>/`` (when training), ``gradient_ratio.parquet``, ``gradient_ratio.html``
(works offline), ``gradient_ratio.png``, ``activation_grads.parquet``, ``activation_grad_ratio.parquet``,
``activation_grads.png``, ``activation_profile.png`` (every method's last-epoch ||dL/dh_i|| in one plot),
``summary.txt`` and ``gradients.json`` (what was compared, with which settings).
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
ANALYSIS_KEYS = ("methods", "baseline", "from_runs", "stat", "factor", "out", "overwrite", "quiet")
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
    out: Path | None
    overwrite: bool
    quiet: bool
    train_options: dict[str, Any]

    @classmethod
    def from_options(cls, o: dict[str, Any]) -> GradientsArgs:
        methods = [m.strip() for m in o["methods"].split(",") if m.strip()]
        train = {k: v for k, v in o.items() if k not in ANALYSIS_KEYS}
        return cls(methods, o["baseline"], list(o["from_runs"] or []), o["stat"], o["factor"], o["out"], o["overwrite"], o["quiet"], train)


def run_gradients(args: GradientsArgs) -> None:
    from lor2c_probe.cli import default_out

    if args.stat not in STATS:
        raise UserError(f"unknown --stat {args.stat!r}; choose one of: {', '.join(STATS)}")
    if args.factor not in FACTORS:
        raise UserError(f"unknown --factor {args.factor!r}; choose one of: {', '.join(FACTORS)}")
    out = args.out or default_out("gradients")
    if args.from_runs:
        reject_training_options(args.train_options)
        if len(args.from_runs) < 2:
            raise UserError("--from-runs needs at least two run directories (e.g. a lor2c run and a lora run)")
        runs = recorded_runs(args.from_runs, "grads", "grads,activations")
    else:
        if len(args.methods) < 2:
            raise UserError("--methods needs at least two different methods, e.g. lor2c,lora")
        _pick_baseline([RunRef(m, Path(m), {}) for m in args.methods], args.baseline)
        planned = plan_methods(args.methods, {**args.train_options, "probes": "grads,activations"})
    rep = check_output(out, "gradients", args.overwrite, inputs=args.from_runs)
    with writing(out, rep, "gradients output"):
        if not args.from_runs:
            runs = train_planned(planned, out, quiet=args.quiet)
        baseline = _pick_baseline(runs, args.baseline)
        tables = analyse(runs, baseline, args.stat, args.factor)
        _write_outputs(out, runs, baseline, tables, args)
    typer.echo(tables["summary"])
    typer.echo(f"outputs: {out}")


def _pick_baseline(runs: list[RunRef], baseline: str | None) -> RunRef:
    labels = [r.label for r in runs]
    if baseline is None:
        baseline = "lora" if "lora" in labels else labels[-1]
    if baseline not in labels:
        raise UserError(f"--baseline {baseline!r} is not among the compared runs ({', '.join(labels)})")
    return runs[labels.index(baseline)]


def analyse(runs: list[RunRef], baseline: RunRef, stat: str, factor: str) -> dict[str, Any]:
    import pandas as pd

    from lor2c_probe.analysis.gradients import (
        AlignmentError,
        activation_grad_profile,
        activation_grad_ratio,
        check_alignment,
        gradient_ratio_surface,
        summarize,
    )
    from lor2c_probe.record.store import read_table

    grads = {r.label: read_table(r.path, "grads") for r in runs}
    acts = {r.label: read_table(r.path, "activation_grads") for r in runs}
    layers = {r.label: r.manifest.get("model", {}).get("num_layers") for r in runs}
    surfaces, act_ratios, summaries = [], [], []
    for r in runs:
        if r is baseline:
            continue
        if layers[r.label] != layers[baseline.label]:
            raise UserError(f"runs {r.path} and {baseline.path} come from models with {layers[r.label]} and {layers[baseline.label]} layers")
        try:
            check_alignment(grads[r.label], grads[baseline.label], (r.label, baseline.label))
            s = gradient_ratio_surface(grads[r.label], grads[baseline.label], stat=stat, factor=factor)
        except AlignmentError as e:
            raise UserError(f"runs {r.path} and {baseline.path} cannot be compared: {e}") from None
        except ValueError as e:
            raise UserError(f"{r.label} vs {baseline.label}: {e}") from None
        surfaces.append(s.assign(method=r.label))
        summaries.append(summarize(s, numerator=r.label, denominator=baseline.label, stat=stat, factor=factor))
        if not acts[r.label].empty and not acts[baseline.label].empty:
            act_ratios.append(activation_grad_ratio(acts[r.label], acts[baseline.label]).assign(method=r.label))
    profiles = {label: activation_grad_profile(a) for label, a in acts.items() if not a.empty}
    order = ["method", "epoch", "layer"]
    surface = pd.concat(surfaces, ignore_index=True)
    surface = surface[order + [c for c in surface.columns if c not in order]]
    act_profile = pd.concat([p.assign(method=m) for m, p in profiles.items()], ignore_index=True) if profiles else None
    act_ratio = pd.concat(act_ratios, ignore_index=True) if act_ratios else None
    if act_profile is not None:
        summaries.append(_activation_summary(profiles, act_ratio, baseline.label))
    return {"surface": surface, "profiles": profiles, "act_profile": act_profile, "act_ratio": act_ratio, "summary": "\n\n".join(summaries)}


def _activation_summary(profiles: dict[str, Any], act_ratio: Any, baseline: str) -> str:
    lines = ["Activation gradients ||dL/dh_i|| (epoch mean, last epoch), bottom block input vs encoder output (layer L):"]
    for method, p in profiles.items():
        last = p[p.epoch == p.epoch.max()].set_index("layer")["value"]
        top, bottom = last.index.max(), last.index.min()
        lines.append(f"  {method}: ||dL/dh_{bottom}|| = {last[bottom]:.3g}, ||dL/dh_{top}|| = {last[top]:.3g} (bottom/top {last[bottom] / last[top]:.3g})")
    if act_ratio is not None:
        for method, r in act_ratio.groupby("method"):
            last = r[(r.epoch == r.epoch.max()) & (r.status == "ok")]
            below = int((last.ratio < 1).sum())
            lines.append(
                f"  {method} / {baseline}: ||dL/dh_i|| ratio {last.ratio.min():.3g} to {last.ratio.max():.3g} across layers in the last epoch; "
                f"{method} delivers less gradient than {baseline} to {below} of {len(last)} block inputs"
            )
    return "\n".join(lines)


def _write_outputs(out: Path, runs: list[RunRef], baseline: RunRef, t: dict[str, Any], args: GradientsArgs) -> None:
    """Write everything into a hidden folder first, then move the files into ``out`` (nothing half-written)."""
    from lor2c_probe.plots.gradients import activation_heatmaps_png, ratio_surface_html, ratio_surface_png
    from lor2c_probe.plots.report import activation_profile_figure

    with staged(out) as d:
        t["surface"].to_parquet(d / "gradient_ratio.parquet", index=False)
        ratio_surface_html(t["surface"], d / "gradient_ratio.html", denominator=baseline.label, stat=args.stat)
        ratio_surface_png(t["surface"], d / "gradient_ratio.png", denominator=baseline.label, stat=args.stat)
        if t["act_profile"] is not None:
            t["act_profile"].to_parquet(d / "activation_grads.parquet", index=False)
            activation_heatmaps_png(t["profiles"], d / "activation_grads.png", stat="l2")
            activation_profile_figure(t["act_profile"], stat="l2").savefig(d / "activation_profile.png", bbox_inches="tight")
        if t["act_ratio"] is not None:
            t["act_ratio"].to_parquet(d / "activation_grad_ratio.parquet", index=False)
        (d / "summary.txt").write_text(t["summary"] + "\n")
        meta = {
            "numerators": [r.label for r in runs if r is not baseline],
            "baseline": baseline.label,
            "runs": {r.label: str(r.path) for r in runs},
            "stat": args.stat,
            "factor": args.factor,
            "epoch_value": "mean over the recorded steps of the epoch",
        }
        (d / MARKER).write_text(json.dumps(mark(meta), indent=2) + "\n")
