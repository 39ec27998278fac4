"""``lor2c-probe export``: a recorded run into another tool's format, after the fact (TensorBoard, W&B offline, MLflow)."""

from __future__ import annotations

from pathlib import Path

import typer

from lor2c_probe.errors import UserError

TARGETS = ("tensorboard", "wandb", "mlflow")
HINTS = {"tensorboard": "tensorboard --logdir {out}", "wandb": "wandb sync {out}/wandb/offline-run-*",
         "mlflow": "mlflow ui --backend-store-uri {uri}"}


def run_export(run: Path, to: str, out: Path) -> None:
    from lor2c_probe.record.store import read_manifest
    from lor2c_probe.sinks.export import export_run

    if to not in TARGETS:
        raise UserError(f"unknown --to {to!r}; choose one of: {', '.join(TARGETS)}")
    if not (run / "manifest.json").is_file():
        raise UserError(f"{run} is not a run directory (no manifest.json)")
    read_manifest(run)  # a damaged manifest is a one-line error before anything is written
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty; give the export its own folder")
    counts = export_run(run, to, out)
    hint = HINTS[to].format(out=out, uri=out.resolve().as_uri())
    typer.echo(f"wrote {counts['scalars']:,} scalars, {counts['histograms']:,} histograms and {counts['images']} images to {out} ({hint})")
