"""Peak memory of training with all probes (grads, activations, spectra at the epoch end) vs none.

Each measurement is a fresh child process, so one run's peak never hides another's. Next to each
figure without probes stands what ``lor2c-probe params --memory`` plans for the same run, to check the planner:
    python -m lor2c_probe.bench.memory '{"shape": "minilm", "method": "lor2c", "probes": "all", ...}'
The child builds the model, trains ``steps`` optimizer steps, runs the epoch-end callbacks (the
spectral reading) and flushes, then prints one JSON line. On CUDA the figure is
``torch.cuda.max_memory_allocated`` (tensors only). On the CPU it is the process's peak RSS minus its
RSS after imports, i.e. the memory the run itself added (model, optimizer state, activations, probes),
with glibc's mmap threshold fixed (see ``_run_child``) so that the figure is live memory, not allocator history.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any

from lor2c_probe.bench.config import BenchConfig


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` figure in KiB: VmRSS (now) or VmHWM (peak). VmHWM starts afresh at exec;
    ``getrusage``'s ru_maxrss does not (Linux carries it across exec from the forking parent)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}; peak memory on the CPU needs Linux")


def child(spec: dict[str, Any]) -> dict[str, Any]:
    import tempfile
    from pathlib import Path

    import peft  # noqa: F401 - imported before the baseline, like everything a run imports
    import torch
    import transformers  # noqa: F401

    from lor2c_probe.bench.harness import make_bench

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    base = _status_kib("VmRSS")
    with tempfile.TemporaryDirectory() as tmp:
        bench = make_bench(spec["shape"], spec["method"], spec["probes"], Path(tmp) / "run", device=device,
                           precision=spec["precision"], rank=spec["rank"], batch_size=spec["batch_size"], seq_len=spec["seq_len"])
        # Weights loaded from safetensors are memory-mapped and page in on first read. A real epoch reads nearly
        # every embedding row; 3 steps on one batch do not, and the spectral reading's own batch then paged in
        # ~30 MiB of MiniLM's rows and was charged for it. Reading every tensor once makes the model resident in both.
        with torch.no_grad():
            for t in [*bench.trainer.model.parameters(), *bench.trainer.model.buffers()]:
                t.sum()
        bench.run(spec["steps"])
        bench.epoch_end()
        bench.trainer.flush()
        if device.type == "cuda":
            torch.cuda.synchronize()
    out = {"rss_base_kib": base, "rss_peak_kib": _status_kib("VmHWM")}
    if device.type == "cuda":
        out |= {"cuda_max_allocated": torch.cuda.max_memory_allocated(), "cuda_max_reserved": torch.cuda.max_memory_reserved()}
    return out


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    # A fixed glibc mmap threshold: every tensor above 128 KiB is mapped on allocation and unmapped on free,
    # so peak RSS follows live memory. With glibc's default (a threshold that rises after frees) freed
    # tensors stay in the heap and identical runs measured 268-298 MiB on MiniLM.
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "MALLOC_MMAP_THRESHOLD_": "131072"}
    proc = subprocess.run([sys.executable, "-m", "lor2c_probe.bench.memory", json.dumps(spec)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"memory benchmark child failed for {spec['shape']}/{spec['method']}/{spec['probes']}: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_memory(cfg: BenchConfig, shape: str, device_type: str, precision: str, threads: int, log: Any = print,
                   sets: tuple[str, ...] = ("none", "all")) -> dict[str, Any]:
    """Peak memory of each method without probes and with all of them (``sets``: ("none",) for the first alone)."""
    out = {}
    for m in cfg.methods:
        runs: dict[str, list[dict[str, Any]]] = {s: [] for s in sets}
        for _ in range(cfg.memory_reps):
            for probes in runs:  # alternated, so drift in the machine's state hits both
                runs[probes].append(_run_child({"shape": shape, "method": m, "probes": probes, "device": device_type,
                                                "precision": precision, "rank": cfg.rank, "batch_size": cfg.batch_size,
                                                "seq_len": cfg.seq_len, "steps": cfg.memory_steps, "threads": threads}))
        if device_type == "cuda":
            used = {p: [r["cuda_max_allocated"] for r in v] for p, v in runs.items()}
            measure = "torch.cuda.max_memory_allocated (bytes)"
        else:
            used = {p: [1024 * (r["rss_peak_kib"] - r["rss_base_kib"]) for r in v] for p, v in runs.items()}
            measure = "peak RSS minus RSS after imports (bytes; glibc mmap threshold fixed at 128 KiB)"
        plan = planned_bytes(cfg, shape, m, precision)
        if "all" not in used:
            out[m] = {"measure": measure, "bytes": used, "raw": runs, "plan_bytes": plan}
            continue
        ratios = [a / b for a, b in zip(used["all"], used["none"])]
        out[m] = {"measure": measure, "bytes": used, "raw": runs, "ratio": statistics.median(ratios), "ratios": ratios,
                  "plan_bytes": plan, "plan_over_measured": plan / statistics.median(used["none"])}
        log(f"  {shape} {m:<12} peak memory {statistics.median(used['none']) / 2**20:8.1f} MiB without probes, "
            f"{statistics.median(used['all']) / 2**20:8.1f} MiB with all  x{out[m]['ratio']:.4f}; "
            f"`params --memory` plans {plan / 2**20:.1f} MiB (x{out[m]['plan_over_measured']:.3f} of measured)")
    return out


def planned_bytes(cfg: BenchConfig, shape: str, method: str, precision: str) -> float:
    """What ``lor2c-probe params --memory`` plans for this measurement (same model, batch, length, precision)."""
    from lor2c_probe.bench.shapes import SHAPES
    from lor2c_probe.planning import MemoryPlan, arch_config, plan_memory

    config = SHAPES[shape].config() if SHAPES[shape].config is not None else arch_config("minilm")
    return float(plan_memory(config, MemoryPlan(method, cfg.rank, cfg.batch_size, cfg.seq_len, precision))["total"])


if __name__ == "__main__":
    print(json.dumps(child(json.loads(sys.argv[1]))))
