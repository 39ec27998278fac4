"""``lor2c-probe train``: options -> RunConfig (policy applied) -> a recorded run."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import typer

from lor2c_probe.config import AdapterConfig, DataConfig, ProbeConfig, RunConfig, StructureConfig, TrainConfig, resolve_policy
from lor2c_probe.errors import RunDiverged, UserError

TRAIN_FIELDS = (
    "epochs", "steps_per_epoch", "batch_size", "grad_accum", "lr", "warmup_ratio", "max_length", "seed",
    "device", "precision", "base_dtype", "flush_every", "on_nonfinite",
)
DATA_FIELDS = ("task", "data_dir", "train_file", "eval_file", "max_train_examples", "max_eval_examples", "loss_on", "string_labels")


@dataclass(frozen=True)
class TrainArgs:
    options: dict[str, Any]  # every config option; None = not given
    out: Path | None
    overwrite: bool
    resume: bool
    quiet: bool
    report: bool = True


def config_from_options(o: dict[str, Any]) -> tuple[RunConfig, dict[str, str]]:
    """Build the validated RunConfig; unset policy fields come from the policy."""
    method = o.get("method") or "lor2c"
    policy = o.get("policy") or "paper"
    values, sources = resolve_policy(
        policy, method, dropout=o.get("dropout"), weight_decay=o.get("weight_decay"), head_lr_scale=o.get("head_lr_scale")
    )
    adapter = AdapterConfig(
        method=method,
        rank=o["rank"] if o.get("rank") is not None else AdapterConfig.rank,
        alpha=o["alpha"] if o.get("alpha") is not None else AdapterConfig.alpha,
        dropout=values["dropout"],
        pre_num=o["pre_num"] if o.get("pre_num") is not None else AdapterConfig.pre_num,
    )
    train_kw = {k: o[k] for k in TRAIN_FIELDS if o.get(k) is not None}
    if train_kw.get("steps_per_epoch") == 0:  # 0 = no cap: full epochs
        train_kw["steps_per_epoch"] = None
    if o.get("max_grad_norm") is not None:
        train_kw["max_grad_norm"] = o["max_grad_norm"] or None  # 0 disables clipping
    train = TrainConfig(**train_kw, weight_decay=values["weight_decay"], head_lr_scale=values["head_lr_scale"])
    data_kw = {k: (str(o[k]) if isinstance(o[k], Path) else o[k]) for k in DATA_FIELDS if o.get(k) is not None}
    data = DataConfig(**data_kw)
    structure = StructureConfig(
        merges=o.get("merges") or 0, injections=o.get("injections") or 0, schedule=o.get("schedule") or "epoch",
        source=o.get("sfs_source"), score=o.get("sfs_score"), k=o.get("sfs_k"), inject_rule=o.get("inject_rule"),
        merge_keep=o.get("merge_keep"), emulate_reference_bugs=bool(o.get("emulate_reference_bugs")),
    )
    probes = ProbeConfig.parse(o.get("probes") or "grads,activations,spectra", o.get("probe_every") or 1)
    if o.get("spectra_every") is not None:
        probes = replace(probes, spectra_every=o["spectra_every"])
    run = RunConfig(model=o.get("model"), adapter=adapter, train=train, data=data, policy=policy, probes=probes, structure=structure)
    run.structure_policy()  # validates the policy overrides now
    return run, sources


def run_train(args: TrainArgs) -> None:
    from lor2c_probe.cli import default_out
    from lor2c_probe.train import distributed
    from lor2c_probe.train.session import resume_training, run_training

    if args.resume:
        given = sorted(k for k, v in args.options.items() if v is not None)
        if args.out is None:
            raise UserError("--resume needs --out RUN_DIR (the run to continue)")
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
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
