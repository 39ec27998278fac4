"""Train-step time of each method on one model, measured side by side so machine noise cancels.

    python -m benchmarks.step_time --out benchmarks/results/step_time_cpu.json

All methods are built up front; repetitions are interleaved (A B C A B C ...), each repetition times
``--steps`` full optimizer steps (forward, backward, clip, AdamW) on fixed random token batches after
``--warmup`` untimed steps. Reports per-method median and IQR and each method's ratio to the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from lor2c_probe.adapters import get_method
from lor2c_probe.config import AdapterConfig, TrainConfig
from lor2c_probe.models import load_model
from lor2c_probe.train.loop import build_optimizer


def build(method: str, model: str | None, rank: int, device: torch.device):
    torch.manual_seed(0)
    m, _, bb = load_model(model, num_labels=2, problem_type="single_label_classification")
    m = get_method(method).attach(m, bb, AdapterConfig(method=method, rank=rank, alpha=2.0 * rank, dropout=0.1))
    m.to(device).train()
    return m, build_optimizer(m, TrainConfig(lr=1e-4)), bb


def step(model, opt, batch) -> None:
    loss = model(**batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="default: the embedded all-MiniLM-L6-v2")
    ap.add_argument("--methods", default="lora,lor2c,share-lor2c")
    ap.add_argument("--baseline", default="lora")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5, help="timed optimizer steps per repetition")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    device = torch.device(a.device)
    methods = a.methods.split(",")
    built = {m: build(m, a.model, a.rank, device) for m in methods}
    vocab = built[methods[0]][0].config.vocab_size
    g = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(1000, vocab, (a.batch_size, a.seq_len), generator=g).to(device),
        "attention_mask": torch.ones(a.batch_size, a.seq_len, dtype=torch.long, device=device),
        "labels": torch.randint(0, 2, (a.batch_size,), generator=g).to(device),
    }
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for m in methods:
        for _ in range(a.warmup):
            step(built[m][0], built[m][1], batch)
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(a.reps):
        for m in methods:
            model, opt, _ = built[m]
            sync()
            t0 = time.perf_counter()
            for _ in range(a.steps):
                step(model, opt, batch)
            sync()
            times[m].append((time.perf_counter() - t0) / a.steps)
    med = {m: statistics.median(v) for m, v in times.items()}

    def iqr(v: list[float]) -> float:
        q = statistics.quantiles(v, n=4)
        return q[2] - q[0]

    result = {
        "benchmark": "train_step_time",
        "environment": {
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
        },
        "setup": {k: v for k, v in vars(a).items() if k != "out"} | {"model": a.model or "all-MiniLM-L6-v2 (embedded)"},
        "trainable_params": {m: sum(p.numel() for p in built[m][0].parameters() if p.requires_grad) for m in methods},
        "seconds_per_step": {m: {"median": med[m], "iqr": iqr(times[m]), "all": times[m]} for m in methods},
        "ratio_to_baseline": {m: med[m] / med[a.baseline] for m in methods},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    for m in methods:
        print(f"{m:<14} median {med[m] * 1000:8.1f} ms/step  IQR {iqr(times[m]) * 1000:6.1f} ms  ratio {result['ratio_to_baseline'][m]:.3f}")


if __name__ == "__main__":
    main()
