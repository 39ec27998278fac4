"""Interleaved repetitions (A B C A B C ...) so that machine noise hits every variant alike."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def synchronizer(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def interleaved(fns: dict[str, Callable[[], None]], reps: int, sync: Callable[[], None]) -> dict[str, list[float]]:
    """Seconds of each ``fns[name]()`` call, ``reps`` times each, in round-robin order."""
    times: dict[str, list[float]] = {n: [] for n in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return times


def summary(values: list[float]) -> dict[str, float | list[float]]:
    """Median, IQR (0 with fewer than 2 values), min, max and all values."""
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "iqr": q[2] - q[0], "min": min(values), "max": max(values), "all": list(values)}


def paired(num: list[float], den: list[float]) -> dict[str, float | list[float]]:
    """Per-repetition ratios num/den (each pair timed back to back) summarised; ``median`` is the headline."""
    return summary([a / b for a, b in zip(num, den)])


def time_call(fn: Callable[[], None], reps: int, sync: Callable[[], None]) -> list[float]:
    """One untimed call, then ``reps`` timed ones."""
    fn()
    return interleaved({"f": fn}, reps, sync)["f"]
