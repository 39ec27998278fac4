"""Adapter spectra from the factors vs a dense SVD, and the spectral probe's cost at its default schedule.

- ``svd_table``: for each (d, r), ``lowrank_svdvals(B, A)`` (QR of B and A^T, then an r x r SVD) against
  ``torch.linalg.svdvals(B @ A)`` with the product formed inside the timing, as a dense-SVD tool does;
  float32, on the benchmark device; exactness as the largest deviation of the r leading values from a
  float64 dense reference, relative to sigma_max.
- ``spectral_probe_cost``: one ``SpectralProbe.record`` (weights + features on the 64-example probe
  batch, rows handed to the store) against the no-probe step time; the probe runs once per epoch by
  default, so its step-time ratio over an epoch of n steps is 1 + record / (n * step).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from lor2c_probe.bench.config import BenchConfig
from lor2c_probe.bench.harness import make_bench
from lor2c_probe.bench.timing import summary, synchronizer, time_call
from lor2c_probe.probes.spectral import SpectralProbe
from lor2c_probe.record.store import shard_paths
from lor2c_probe.spectra import lowrank_svdvals


def svd_table(cfg: BenchConfig, device: torch.device, log: Any = print) -> list[dict[str, Any]]:
    sync = synchronizer(device)
    rows = []
    for d in cfg.svd_dims:
        for r in cfg.svd_ranks:
            g = torch.Generator().manual_seed(d + r)
            B, A = torch.randn(d, r, generator=g).to(device), torch.randn(r, d, generator=g).to(device)
            fast = summary(time_call(lambda: lowrank_svdvals(B, A), cfg.svd_reps, sync))
            dense_reps = max(3, cfg.svd_reps // 10) if d >= 2048 and device.type == "cpu" else cfg.svd_reps
            dense = summary(time_call(lambda: torch.linalg.svdvals(B @ A), dense_reps, sync))
            ref = torch.linalg.svdvals(B.double().cpu() @ A.double().cpu())[:r]
            got, dense32 = lowrank_svdvals(B, A).double().cpu(), torch.linalg.svdvals(B @ A).double().cpu()[:r]
            rows.append({
                "d": d, "r": r, "factor_qr_seconds": fast, "dense_svd_seconds": dense,
                "speedup": dense["median"] / fast["median"],
                "factor_qr_max_rel_err_vs_float64": float(((got - ref).abs() / ref[0]).max()),
                "dense_svd_max_rel_err_vs_float64": float(((dense32 - ref).abs() / ref[0]).max()),
            })
            log(f"  svd d={d:5d} r={r:3d}  QR {fast['median'] * 1e3:8.3f} ms  dense {dense['median'] * 1e3:9.2f} ms  "
                f"x{rows[-1]['speedup']:.0f}")
    return rows


def spectral_probe_cost(cfg: BenchConfig, shape: str, device: torch.device, precision: str,
                        step_seconds: dict[str, float], log: Any = print) -> dict[str, Any]:
    """Per method: record time, rows' bytes, and the amortised ratio for each epoch length in ``cfg.epoch_steps``."""
    sync = synchronizer(device)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for m in cfg.methods:
            bench = make_bench(shape, m, "all", Path(tmp) / m, device=device, precision=precision, rank=cfg.rank,
                               batch_size=cfg.batch_size, seq_len=cfg.seq_len)
            bench.steps(1)  # adapters away from their init (B = 0 would make every spectrum zero)
            probe = next(cb for cb in bench.trainer.callbacks if isinstance(cb, SpectralProbe))
            times = time_call(lambda: probe.record(bench.trainer.state), cfg.spectra_reps, sync)
            readings = cfg.spectra_reps + 1
            bench.trainer.flush()
            n_modules = len(probe._modules or [])
            written = sum(p.stat().st_size for t in ("spectra", "sfs") for _, p in shard_paths(bench.trainer.store.root, t))
            record = statistics.median(times)
            step = step_seconds[m]
            out[m] = {
                "record_seconds": summary(times), "step_seconds": step, "modules": n_modules,
                "probe_examples": len(bench.probe_data),
                "probe_tokens": int(sum(map(len, bench.probe_data.features["input_ids"]))),
                "bytes_per_module_reading": written / (n_modules * readings) if n_modules else None,
                "amortized_ratio": {str(n): 1 + record / (n * step) for n in cfg.epoch_steps},
            }
            log(f"  {shape} {m:<12} spectral record {record * 1e3:8.1f} ms = {record / step:.2f} steps; "
                + "  ".join(f"{n}-step epoch x{v:.4f}" for n, v in out[m]["amortized_ratio"].items()))
    return out
