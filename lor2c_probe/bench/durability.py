"""What durability costs: fsync of every shard, manifest and checkpoint (and their folders), and the run lock.

Two identical trainers (LoR2C, gradient + activation-gradient probes, the most rows per step) run interleaved
repetitions of ``flush_every`` steps plus one flush (the default interval: 50), one with the atomic writer's
fsyncs on and one with them off; the paired per-repetition ratio is the step-time cost. A checkpoint is timed
the same way and amortized over an epoch; the lock is timed on its own (taken once per run).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from lor2c_probe.bench.config import BenchConfig
from lor2c_probe.bench.harness import make_bench
from lor2c_probe.bench.timing import interleaved, paired, summary, synchronizer
from lor2c_probe.record import atomic

METHOD, PROBES = "lor2c", "grads+activations"


def _durable(on: bool, fn: Any) -> Any:
    def run() -> None:
        atomic.DURABLE = on
        try:
            fn()
        finally:
            atomic.DURABLE = True
    return run


def measure_durability(cfg: BenchConfig, shape: str, device: torch.device, precision: str, epoch_steps: int,
                       log: Any = print) -> dict[str, Any]:
    from lor2c_probe.record.lock import DirLock
    from lor2c_probe.train.checkpoint import save_checkpoint

    sync = synchronizer(device)
    flush_every = cfg.durability_flush_every
    with tempfile.TemporaryDirectory() as tmp:
        benches = {on: make_bench(shape, METHOD, PROBES, Path(tmp) / f"durable-{on}", device=device, precision=precision,
                                  rank=cfg.rank, batch_size=cfg.batch_size, seq_len=cfg.seq_len) for on in (True, False)}
        for b in benches.values():
            b.run(cfg.warmup)
        times = interleaved({f"fsync={on}": _durable(on, lambda b=b: b.run(flush_every)) for on, b in benches.items()}, cfg.reps, sync)
        per_step = {k: [t / flush_every for t in v] for k, v in times.items()}
        step = paired(per_step["fsync=True"], per_step["fsync=False"])
        t_step = summary(per_step["fsync=False"])["median"]

        def ckpt(on: bool) -> Any:
            b = benches[on]
            tr = b.trainer
            return _durable(on, lambda: save_checkpoint(Path(tmp) / f"ckpt-{on}", 0, model=tr.model, optimizer=tr.optimizer,
                                                        scheduler=tr.scheduler, extra={"step": 0}))

        ck = interleaved({f"fsync={on}": ckpt(on) for on in (True, False)}, cfg.reps, sync)
        extra_ckpt = summary(ck["fsync=True"])["median"] - summary(ck["fsync=False"])["median"]
        lock_times = []
        for i in range(cfg.reps):
            t0 = time.perf_counter()
            with DirLock(Path(tmp) / f"lock-{i}"):
                pass
            lock_times.append(time.perf_counter() - t0)
    lock_s = summary(lock_times)["median"]
    run_s = epoch_steps * t_step
    amortized = step["median"] + (extra_ckpt + lock_s) / run_s
    log(f"  {shape} durability: steps x{step['median']:.4f} at flush every {flush_every}; checkpoint +{extra_ckpt * 1e3:.1f} ms; "
        f"lock {lock_s * 1e3:.2f} ms; over a {epoch_steps}-step epoch x{amortized:.4f}")
    return {"method": METHOD, "probes": PROBES, "flush_every": flush_every, "seconds_per_step": {k: summary(v) for k, v in per_step.items()},
            "step_ratio": step, "checkpoint_seconds": {k: summary(v) for k, v in ck.items()}, "checkpoint_extra_seconds": extra_ckpt,
            "lock_seconds": summary(lock_times), "epoch_steps": epoch_steps, "amortized_ratio": amortized}
