"""``bench --peers`` part 3: the train step of LoR2C, ShareLoR2C and ResLoRA against PEFT's LoRA, DoRA and VeRA on the
same backbone, batch and rank, no probes: step time (interleaved, paired ratio to the first method), tokens/s, and
peak memory (each method in a fresh child process, as ``bench`` measures it)."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from lor2c_probe.bench.config import BenchConfig
from lor2c_probe.bench.harness import make_bench
from lor2c_probe.bench.timing import interleaved, paired, summary, synchronizer


def measure_train_steps(cfg: BenchConfig, shape: str, device: torch.device, precision: str, log: Any = print) -> dict[str, Any]:
    from lor2c_probe.bench.memory import measure_memory

    sync = synchronizer(device)
    methods = cfg.step_methods
    with tempfile.TemporaryDirectory() as tmp:
        benches = {m: make_bench(shape, m, "none", Path(tmp) / m, device=device, precision=precision, rank=cfg.rank,
                                 batch_size=cfg.batch_size, seq_len=cfg.seq_len) for m in methods}
        for b in benches.values():
            b.run(cfg.warmup)
        times = interleaved({m: (lambda b=b: b.run(cfg.steps)) for m, b in benches.items()}, cfg.reps, sync)
        per_step = {m: [t / cfg.steps for t in ts] for m, ts in times.items()}
        tokens = cfg.batch_size * benches[methods[0]].batch["input_ids"].shape[1]
        params = {m: sum(p.numel() for p in b.trainer.model.parameters() if p.requires_grad) for m, b in benches.items()}
    memory = measure_memory(replace(cfg, methods=methods), shape, device.type, precision, torch.get_num_threads(), log=lambda _: None,
                            sets=("none",))
    out: dict[str, Any] = {"baseline": methods[0], "tokens_per_step": tokens, "methods": {}}
    for m in methods:
        peak = summary([float(x) for x in memory[m]["bytes"]["none"]])["median"]
        out["methods"][m] = {"trainable_params": params[m], "seconds_per_step": summary(per_step[m]),
                             "tokens_per_second": tokens / summary(per_step[m])["median"],
                             "ratio_to_baseline": paired(per_step[m], per_step[methods[0]]),
                             "peak_memory_bytes": peak, "peak_memory_measure": memory[m]["measure"]}
        e = out["methods"][m]
        log(f"  {shape} {m:<12} {e['seconds_per_step']['median'] * 1e3:8.1f} ms/step  x{e['ratio_to_baseline']['median']:.3f} vs "
            f"{methods[0]}  {e['tokens_per_second']:8.0f} tok/s  peak {peak / 2**20:8.1f} MiB  {params[m]:,} trainable")
    return out
