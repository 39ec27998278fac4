"""``lor2c-probe sfs``: IMLoR2C with its SFS scheduler, and SFS traces across merge/inject events.

With no run directory it trains ``im-lor2c`` on the embedded default in step mode with several merges and
injections (spectra every 10 steps so the traces resolve the events). Outputs in ``--out``:
``sfs.parquet`` (traces), ``events.parquet`` (each event with SFS before/after and loss windows),
``sfs_traces.html`` (offline), ``sfs_traces.png`` and ``summary.txt``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from lor2c_probe.commands.common import parse_seeds, plan_methods, reject_training_options, train_planned
from lor2c_probe.compare.sfs import SfsTrace, across_seeds, sfs_trace
from lor2c_probe.record.runs import recorded_runs
from lor2c_probe.adapters import METHODS
from lor2c_probe.errors import UserError
from lor2c_probe.options import SFS_DEFAULTS, given
from lor2c_probe.record.outputs import check_output, mark, staged, writing

ANALYSIS_KEYS = ("runs", "k", "source", "seeds", "out", "overwrite", "quiet")


@dataclass(frozen=True)
class SfsArgs:
    runs: list[Path]
    k: int
    source: str | None
    seeds: list[int] | None
    out: Path | None
    overwrite: bool
    quiet: bool
    train_options: dict[str, Any]

    @classmethod
    def from_options(cls, o: dict[str, Any]) -> SfsArgs:
        if o["k"] <= 0:
            raise UserError(f"k must be a positive integer; got {o['k']}")
        return cls(list(o["runs"] or []), o["k"], o["source"], parse_seeds(o.get("seeds")), o["out"], o["overwrite"], o["quiet"],
                   {k: v for k, v in o.items() if k not in ANALYSIS_KEYS})


def run_sfs(args: SfsArgs) -> None:
    from lor2c_probe.commands.common import default_out
    from lor2c_probe.record.store import read_manifest

    out = args.out or default_out("sfs")
    if args.runs:
        if args.seeds is not None:
            raise UserError("--seeds trains runs; to analyse recorded runs pass every seed's run directory instead")
        reject_training_options(args.train_options)
        runs = [(r.path.name, r.path) for r in recorded_runs(args.runs, "sfs", "spectra")]
    else:
        method = args.train_options.get("method") or SFS_DEFAULTS["method"]
        able = [m.name for m in METHODS.values() if m.can_merge or m.can_inject]
        if method not in able:
            raise UserError(f"sfs traces merges and injections: --method must be one of {', '.join(able)}; got {method}")
        cap = METHODS[method]
        defaults = {"merges": SFS_DEFAULTS["merges"] if cap.can_merge else 0, "injections": SFS_DEFAULTS["injections"] if cap.can_inject else 0,
                    "schedule": SFS_DEFAULTS["schedule"], "spectra_every": SFS_DEFAULTS["spectra_every"], "probes": "grads,spectra"}
        opts = {**defaults, **given(args.train_options)}
        opts.pop("method", None)
        planned = plan_methods([method], opts, args.seeds)
    rep = check_output(out, "sfs", args.overwrite, inputs=args.runs)
    with writing(out, rep, "sfs output"):
        if not args.runs:
            runs = [(r.label, r.path) for r in train_planned(planned, out, quiet=args.quiet)]
        source = args.source
        frames = []
        for label, path in runs:
            src = source or ("weights" if read_manifest(path).get("policy", {}).get("name") == "reference" else "features")
            frames.append(sfs_trace(label, path, args.k, src))
        across = across_seeds(frames)
        _write(out, frames, args.k, across)
    text = "\n\n".join([f.summary for f in frames] + ([across] if across else []))
    typer.echo(text)
    typer.echo(f"outputs: {out}")


def _write(out: Path, frames: list[SfsTrace], k: int, across: str) -> None:
    import pandas as pd

    from lor2c_probe.plots.spectra import sfs_traces_html, sfs_traces_png

    with staged(out) as d:
        pd.concat([f.all_traces for f in frames], ignore_index=True).to_parquet(d / "sfs.parquet", index=False)  # both sources
        evs = [f.events for f in frames if f.events is not None]
        if evs:
            ev = pd.concat(evs, ignore_index=True)
            ev["sfs_before"] = ev["sfs_before"].map(lambda x: ",".join(f"{k}={v}" for k, v in x.items()))
            ev.to_parquet(d / "events.parquet", index=False)
        else:
            pd.DataFrame(columns=["step", "kind"]).to_parquet(d / "events.parquet", index=False)
        f = frames[0]
        title = f"{f.label}: SFS_{f.k} of each LoR2C module; dashed lines = events"
        sfs_traces_png(f.traces, f.raw_events, d / "sfs_traces.png", title=title)
        sfs_traces_html(f.traces, f.raw_events, d / "sfs_traces.html", title=title)
        (d / "summary.txt").write_text("\n\n".join([fr.summary for fr in frames] + ([across] if across else [])) + "\n")
        meta = {"runs": [fr.label for fr in frames], "k": k, "sources": "features and weights (sfs.parquet); traces drawn from each run's score source"}
        (d / "sfs.json").write_text(json.dumps(mark(meta), indent=2) + "\n")
