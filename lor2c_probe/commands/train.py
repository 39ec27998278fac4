"""``lor2c-probe train``: options -> RunConfig (policy applied) -> a recorded run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from lor2c_probe.errors import RunDiverged, UserError
from lor2c_probe.options import config_from_options, given

@dataclass(frozen=True)
class TrainArgs:
    options: dict[str, Any]  # every config option; None = not given
    out: Path | None
    overwrite: bool
    resume: bool
    quiet: bool
    report: bool = True


def run_train(args: TrainArgs) -> None:
    from lor2c_probe.commands.common import default_out
    from lor2c_probe.train import distributed
    from lor2c_probe.train.session import resume_training, run_training

    if args.resume:
        named = sorted(given(args.options))
        if args.out is None:
            raise UserError("--resume needs --out RUN_DIR (the run to continue)")
        if named:
            flags = ", ".join("--" + k.replace("_", "-") for k in named)
            raise UserError(f"--resume takes its configuration from {args.out}/manifest.json; drop {flags}")
        if args.overwrite:
            raise UserError("--resume and --overwrite contradict each other; pick one")
        finished_before = _status(args.out) == "completed"
        manifest = resume_training(args.out, progress=not args.quiet)
        if finished_before:
            return  # already complete: nothing was changed, the report included
    else:
        cfg, sources = config_from_options(args.options)
        if args.out is None and distributed.launched_world_size() > 1:
            raise UserError("a distributed launch needs --out RUN_DIR (ranks would each pick a different default folder)")
        out = args.out or default_out(cfg.adapter.method)
        args = TrainArgs(args.options, out, args.overwrite, args.resume, args.quiet, args.report)
        try:
            manifest = run_training(cfg, out, overwrite=args.overwrite, policy_sources=sources, progress=not args.quiet)
        except RunDiverged:
            if args.report and distributed.is_main():
                _report(args.out)  # the rows up to the divergence, under a banner
            raise
    if not distributed.is_main():
        return  # rank 0 prints and writes the report
    _summary(manifest, args.out)
    if args.report and args.out is not None:
        _report(args.out)


def _status(out: Path) -> str | None:
    from lor2c_probe.record.store import MANIFEST, read_manifest

    return read_manifest(out).get("status") if (out / MANIFEST).is_file() else None


def _report(out: Path) -> None:
    from lor2c_probe.report.build import build_report

    res = build_report([out], out / "report", overwrite=True)
    typer.echo(f"report: {res.html}")


def _summary(manifest: dict[str, Any], out: Path | None) -> None:
    res = manifest.get("results") or {}
    p = manifest["params"]
    typer.echo(
        f"method {manifest['method']['name']}: {p['adapter_params']:,} adapter + {p['head_params']:,} head parameters"
    )
    final, best = res.get("final_eval"), res.get("best_eval")
    if final:
        head = res["headline_metric"]
        typer.echo(f"eval {head}: final {final[head]:.4f} (epoch {final['epoch']}), best {best[head]:.4f} (epoch {best['epoch']})")
    typer.echo(f"run directory: {out}")
