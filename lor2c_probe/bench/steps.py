"""Step time of every (method, probe set) on one shape, all interleaved in one process.

From one round-robin over {lora, lor2c} x {none, grads, grads+activations}:
- probe overhead: per-repetition ratio of a probe set's time to the same method's no-probe time;
- LoR2C vs LoRA: per-repetition ratio of the methods' no-probe times (same model, batch, rank);
- tokens/s of each method without probes;
- recording volume: the bytes each run store wrote, per adapter module per recorded step.
Each repetition is ``steps`` optimizer steps plus a flush, so host transfer, row building and Parquet
writing of everything recorded are inside the timing (flushing this often overstates their cost:
the default is every 50 steps).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from lor2c_probe.bench.config import BenchConfig
from lor2c_probe.bench.harness import Bench, make_bench
from lor2c_probe.bench.timing import interleaved, paired, summary, synchronizer
from lor2c_probe.record.store import read_table, shard_paths

TIMED_SETS = ("none", "grads", "grads+activations")
PER_STEP_TABLES = ("grads", "activation_grads", "metrics")


def _bytes(root: Path, table: str) -> int:
    return sum(p.stat().st_size for _, p in shard_paths(root, table))


def recording_volume(bench: Bench, steps_recorded: int) -> dict[str, Any]:
    """Bytes on disk per adapter module per recorded step (all per-step tables together), and per table."""
    root = bench.trainer.store.root
    grads = read_table(root, "grads")
    modules = int(grads.loc[grads["module"] != "global", "module"].nunique()) if len(grads) else 0
    by_table = {t: _bytes(root, t) for t in PER_STEP_TABLES}
    total = sum(by_table.values())
    return {
        "modules": modules, "steps": steps_recorded, "bytes": by_table, "layers": bench.backbone.num_layers,
        "bytes_per_module_step": total / (modules * steps_recorded) if modules else None,
        "grads_bytes_per_module_step": by_table["grads"] / (modules * steps_recorded) if modules else None,
        "activation_grads_bytes_per_layer_step": by_table["activation_grads"] / ((bench.backbone.num_layers + 1) * steps_recorded),
    }


def measure_steps(cfg: BenchConfig, shape: str, device: torch.device, precision: str, log: Any = print) -> dict[str, Any]:
    sync = synchronizer(device)
    with tempfile.TemporaryDirectory() as tmp:
        benches = {
            (m, p): make_bench(shape, m, p, Path(tmp) / f"{m}-{p}", device=device, precision=precision, rank=cfg.rank,
                               batch_size=cfg.batch_size, seq_len=cfg.seq_len)
            for m in cfg.methods for p in TIMED_SETS
        }
        for b in benches.values():
            b.run(cfg.warmup)
        times = interleaved({f"{m}|{p}": (lambda b=b: b.run(cfg.steps)) for (m, p), b in benches.items()}, cfg.reps, sync)
        per_step = {k: [t / cfg.steps for t in v] for k, v in times.items()}
        tokens = cfg.batch_size * benches[(cfg.methods[0], "none")].batch["input_ids"].shape[1]
        out: dict[str, Any] = {"tokens_per_step": tokens, "methods": {}}
        base = cfg.methods[0]
        for m in cfg.methods:
            none = per_step[f"{m}|none"]
            b0 = benches[(m, "none")]
            entry: dict[str, Any] = {
                "trainable_params": sum(p.numel() for p in b0.trainer.model.parameters() if p.requires_grad),
                "seconds_per_step": {p: summary(per_step[f"{m}|{p}"]) for p in TIMED_SETS},
                "tokens_per_second": tokens / summary(none)["median"],
                "probe_overhead": {p: paired(per_step[f"{m}|{p}"], none) for p in TIMED_SETS[1:]},
                "ratio_to_baseline": paired(none, per_step[f"{base}|none"]),
            }
            entry["recording"] = recording_volume(benches[(m, "grads+activations")], cfg.warmup + cfg.reps * cfg.steps)
            out["methods"][m] = entry
            log(f"  {shape} {m:<12} {summary(none)['median'] * 1e3:8.1f} ms/step  "
                + "  ".join(f"{p} x{entry['probe_overhead'][p]['median']:.3f}" for p in TIMED_SETS[1:])
                + f"  vs {base} x{entry['ratio_to_baseline']['median']:.3f}"
                + f"  {entry['recording']['bytes_per_module_step']:.0f} B/module/step")
        return out
