"""Step time of every probe and every live sink against no probes, in one process, interleaved (issue 19's table).

Variants (built-in ``Trainer`` on one shape and method, identically initialised): none; each probe alone (grads,
activations, histograms, spectra); all four; all four plus each live sink (tensorboard, wandb offline, mlflow file
store). A repetition is ``flush_every`` optimizer steps and one flush (the default interval: every row built, written
to Parquet and sent to the sinks). The epoch-end work (the spectral reading, and the figures the sinks draw from it)
is timed apart, in interleaved repetitions too, and amortized over an epoch of ``epoch_steps`` steps:

    ratio = (step time of the variant + epoch-end time / epoch_steps) / step time without probes

Recording volume: bytes on disk per adapter module per recorded step, with histograms (every table the probes write).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from lor2c_probe.bench.harness import Bench, make_bench
from lor2c_probe.bench.timing import interleaved, paired, summary, synchronizer
from lor2c_probe.config import ProbeConfig
from lor2c_probe.record.store import read_table, shard_paths
from lor2c_probe.record.schema import TABLES

ALL = ProbeConfig(grads=True, activations=True, spectra=True, extra=("histograms",))
VARIANTS: dict[str, tuple[ProbeConfig, tuple[str, ...]]] = {
    "none": (ProbeConfig(grads=False, activations=False, spectra=False), ()),
    "grads": (ProbeConfig(grads=True, activations=False, spectra=False), ()),
    "activations": (ProbeConfig(grads=False, activations=True, spectra=False), ()),
    "histograms": (ProbeConfig(grads=False, activations=False, spectra=False, extra=("histograms",)), ()),
    "spectra": (ProbeConfig(grads=False, activations=False, spectra=True), ()),
    "all": (ALL, ()),
    "all+tensorboard": (ALL, ("tensorboard",)),
    "all+wandb": (ALL, ("wandb",)),
    "all+mlflow": (ALL, ("mlflow",)),
}


def _bench(shape: str, method: str, variant: str, root: Path, *, device: torch.device, precision: str, rank: int, batch_size: int,
           seq_len: int) -> Bench:
    from lor2c_probe.sinks.live import attach_sinks

    probes, sinks = VARIANTS[variant]
    b = make_bench(shape, method, probes, root / variant, device=device, precision=precision, rank=rank, batch_size=batch_size,
                   seq_len=seq_len)
    b.sinks = attach_sinks(b.trainer.store, sinks, root / variant, {"method": {"name": method}, "config": {"variant": variant}})
    return b


def volume(root: Path, modules: int, steps: int) -> dict[str, Any]:
    by_table = {t: sum(p.stat().st_size for _, p in shard_paths(root, t)) for t in TABLES}
    by_table = {t: b for t, b in by_table.items() if b}
    total = sum(v for t, v in by_table.items() if t not in ("spectra", "sfs"))  # per-step tables; spectra are per epoch
    return {"bytes": by_table, "modules": modules, "steps": steps, "bytes_per_module_step": total / (modules * steps) if modules else None}


def measure_probe_sets(shape: str, method: str, device: torch.device, precision: str, *, rank: int = 8, batch_size: int = 16,
                       seq_len: int = 64, flush_every: int = 50, reps: int = 5, epoch_reps: int = 3, epoch_steps: int = 359,
                       variants: tuple[str, ...] = tuple(VARIANTS), log: Any = print) -> dict[str, Any]:
    sync = synchronizer(device)
    with tempfile.TemporaryDirectory() as tmp:
        benches: dict[str, Bench] = {}
        for v in variants:
            benches[v] = _bench(shape, method, v, Path(tmp), device=device, precision=precision, rank=rank, batch_size=batch_size,
                                seq_len=seq_len)
            benches[v].run(2)  # warm-up, untimed
        t0 = time.perf_counter()
        times = interleaved({v: (lambda b=b: b.run(flush_every)) for v, b in benches.items()}, reps, sync)
        per_step = {v: [t / flush_every for t in ts] for v, ts in times.items()}

        def epoch_end(b: Bench) -> None:
            b.epoch_end()
            b.trainer.flush()

        with_epoch = [v for v in variants if VARIANTS[v][0].spectra]
        epoch = interleaved({v: (lambda b=benches[v]: epoch_end(b)) for v in with_epoch}, epoch_reps, sync) if with_epoch else {}
        out: dict[str, Any] = {"shape": shape, "method": method, "flush_every": flush_every, "epoch_steps": epoch_steps,
                               "batch_size": batch_size, "seq_len": seq_len, "variants": {}}
        none = per_step["none"]
        for v in variants:
            e_end = summary(epoch[v])["median"] if v in epoch else 0.0
            amortized = [(s + e_end / epoch_steps) / n for s, n in zip(per_step[v], none)]
            entry = {"seconds_per_step": summary(per_step[v]), "epoch_end_seconds": summary(epoch[v]) if v in epoch else None,
                     "step_ratio": paired(per_step[v], none), "amortized_ratio": summary(amortized)}
            grads = read_table(benches[v].trainer.store.root, "grads") if VARIANTS[v][0].grads else None
            if v in ("all", "histograms", "all+tensorboard"):
                modules = int(grads.loc[grads["module"] != "global", "module"].nunique()) if grads is not None else len(
                    benches[v].trainer.callbacks[0].modules) if benches[v].trainer.callbacks else 0
                entry["recording"] = volume(benches[v].trainer.store.root, modules, 2 + reps * flush_every)
            out["variants"][v] = entry
            log(f"  {shape} {method} {v:<16} {summary(per_step[v])['median'] * 1e3:8.1f} ms/step  step x{entry['step_ratio']['median']:.3f}"
                f"  amortized x{entry['amortized_ratio']['median']:.3f}"
                + (f"  epoch end {e_end:.2f} s" if v in epoch else "")
                + (f"  {entry['recording']['bytes_per_module_step']:.0f} B/module/step" if "recording" in entry else ""))
        for b in benches.values():
            if b.sinks is not None:
                b.sinks.close()
        out["seconds"] = time.perf_counter() - t0
        return out


__all__ = ["VARIANTS", "measure_probe_sets"]
