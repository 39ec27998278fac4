"""What durability costs: fsync of every shard, manifest and checkpoint (and their folders), and the run lock.

Two identical trainers (LoR2C, gradient + activation-gradient probes, the most rows per step) each record
``flush_every`` steps (the default interval: 50) and then flush, in interleaved repetitions, one with the atomic
writer's fsyncs on and one with them off. What durability adds is the difference of the flush times (timed on
their own: a 1% effect drowns in step-time noise otherwise), per step, over the median step time; a checkpoint
is timed the same way and amortized over an epoch, and the lock (taken once per run) over the epoch too. The
paired per-repetition ratio of the whole repetitions is reported beside it as ``direct_step_ratio``.
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
        steps: dict[str, list[float]] = {f"fsync={on}": [] for on in benches}
        flushes: dict[str, list[float]] = {f"fsync={on}": [] for on in benches}
        for _ in range(cfg.reps):
            for on, b in benches.items():
                sync()
                t0 = time.perf_counter()
                b.steps(flush_every)
                sync()
                t1 = time.perf_counter()
                _durable(on, b.trainer.flush)()
                t2 = time.perf_counter()
                steps[f"fsync={on}"].append((t1 - t0) / flush_every)
                flushes[f"fsync={on}"].append(t2 - t1)
        per_step = {k: [s + f / flush_every for s, f in zip(steps[k], flushes[k])] for k in steps}
        direct = paired(per_step["fsync=True"], per_step["fsync=False"])
        t_step = summary(steps["fsync=True"] + steps["fsync=False"])["median"]
        extra_flush = summary(flushes["fsync=True"])["median"] - summary(flushes["fsync=False"])["median"]

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
    per_flush_ratio = 1 + extra_flush / (flush_every * t_step)
    amortized = per_flush_ratio + (extra_ckpt + lock_s) / (epoch_steps * t_step)
    log(f"  {shape} durability: {t_step * 1e3:.0f} ms/step; flush +{extra_flush * 1e3:.2f} ms with fsync (x{per_flush_ratio:.5f} at flush every "
        f"{flush_every}); checkpoint +{extra_ckpt * 1e3:.1f} ms; lock {lock_s * 1e3:.2f} ms; over a {epoch_steps}-step epoch "
        f"x{amortized:.5f} (direct paired ratio x{direct['median']:.3f}, IQR {direct['iqr']:.3f})")
    return {"method": METHOD, "probes": PROBES, "flush_every": flush_every, "step_seconds": summary(steps["fsync=False"] + steps["fsync=True"]),
            "flush_seconds": {k: summary(v) for k, v in flushes.items()}, "flush_extra_seconds": extra_flush,
            "per_flush_ratio": per_flush_ratio, "direct_step_ratio": direct,
            "checkpoint_seconds": {k: summary(v) for k, v in ck.items()}, "checkpoint_extra_seconds": extra_ckpt,
            "lock_seconds": summary(lock_times), "epoch_steps": epoch_steps, "amortized_ratio": amortized}
