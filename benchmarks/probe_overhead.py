"""Step-time overhead of the probes, measured side by side in one process.

    python -m benchmarks.probe_overhead --out benchmarks/results/probe_overhead_cpu.json

For each method, three identically initialised models train on the same fixed batch: no probes,
the gradient probe, and gradient + activation-gradient probes. Repetitions are interleaved
(none, grads, both, none, ...); each repetition runs ``--steps`` full optimizer steps through the
real loop (``Trainer.train_step``) and then flushes the run store, so the reported time includes the
host transfer, row building and Parquet writing of everything recorded. Ratios are medians over
repetitions relative to the no-probe model. (A flush per repetition is more often than the default
of every 50 steps, so this overstates the recording cost.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lor2c_probe.config import AdapterConfig, DataConfig, ProbeConfig, RunConfig, TrainConfig
from lor2c_probe.data.examples import Examples
from lor2c_probe.data.tasks import TASKS
from lor2c_probe.record.store import RunStore
from lor2c_probe.train.batches import encode
from lor2c_probe.train.loop import Trainer
from lor2c_probe.train.session import build_model, make_probes

# Spectra run at epoch ends only, so they are measured separately (benchmarks/spectra.py).
CONFIGS = {"none": ProbeConfig(grads=False, activations=False, spectra=False),
           "grads": ProbeConfig(grads=True, activations=False, spectra=False),
           "grads+activations": ProbeConfig(grads=True, activations=True, spectra=False)}


def make_trainer(method: str, probes: ProbeConfig, model: str | None, a, store_dir: Path, device: torch.device) -> tuple[Trainer, dict]:
    cfg = RunConfig(model=model, adapter=AdapterConfig(method=method, rank=a.rank, alpha=2.0 * a.rank, dropout=0.1),
                    train=TrainConfig(batch_size=a.batch_size, lr=1e-4, device=device.type, flush_every=10**9), probes=probes)
    spec = TASKS["rotten-tomatoes"]
    built = build_model(cfg, spec)
    g = np.random.default_rng(0)
    words = [f"token{i}" for i in range(400)]
    texts = [" ".join(g.choice(words, size=a.seq_len)) for _ in range(a.batch_size)]
    enc = encode(built.tokenizer, Examples(texts, None, [int(x) for x in g.integers(0, 2, a.batch_size)]), a.seq_len, False)
    trainer = Trainer(model=built.model.to(device), cfg=cfg.train, spec=spec, train=enc, eval=enc, store=RunStore(store_dir),
                      device=device, precision="fp32", param_marker="", callbacks=make_probes(cfg, built.backbone), progress=False)
    from lor2c_probe.train.batches import collate

    batch = collate(enc, list(range(a.batch_size)))
    for cb in trainer.callbacks:
        cb.on_train_start(trainer.state)
    return trainer, batch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="default: the embedded all-MiniLM-L6-v2")
    ap.add_argument("--methods", default="lor2c,lora")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    device = torch.device(a.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in a.methods.split(","):
            trainers = {name: make_trainer(method, p, a.model, a, Path(tmp) / f"{method}-{name}", device) for name, p in CONFIGS.items()}
            for tr, batch in trainers.values():
                for _ in range(a.warmup):
                    tr.train_step([batch])
                tr.flush()
            times: dict[str, list[float]] = {n: [] for n in trainers}
            for _ in range(a.reps):
                for name, (tr, batch) in trainers.items():
                    sync()
                    t0 = time.perf_counter()
                    for _ in range(a.steps):
                        tr.train_step([batch])
                    tr.flush()
                    sync()
                    times[name].append((time.perf_counter() - t0) / a.steps)
            med = {n: statistics.median(v) for n, v in times.items()}
            ratios = {n: [t / b for t, b in zip(times[n], times["none"])] for n in times}  # per-repetition ratios
            volume = {}
            for name, (tr, _) in trainers.items():
                for table in ("grads", "activation_grads"):
                    folder = tr.store.root / "tables" / table
                    if folder.is_dir():
                        volume[f"{name}:{table}"] = sum(f.stat().st_size for f in folder.iterdir())
            results[method] = {
                "seconds_per_step": {n: {"median": med[n], "all": times[n]} for n in times},
                "ratio_to_no_probe": {n: med[n] / med["none"] for n in times},
                "median_of_paired_ratios": {n: statistics.median(r) for n, r in ratios.items()},
                "recorded_bytes": volume,
            }
            for n in times:
                print(f"{method:<8} {n:<18} {med[n] * 1000:8.1f} ms/step  ratio {med[n] / med['none']:.4f}  paired {statistics.median(ratios[n]):.4f}")
    out = {
        "benchmark": "probe_overhead",
        "environment": {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
                        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()},
        "setup": {k: v for k, v in vars(a).items() if k != "out"} | {"model": a.model or "all-MiniLM-L6-v2 (embedded)"},
        "results": results,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
