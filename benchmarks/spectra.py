"""Adapter spectra from the factors (QR route) vs a dense SVD of the d x d product, and the spectral
probe's cost at its default schedule.

    python -m benchmarks.spectra --out benchmarks/results/spectra_cpu.json

Part 1: for each (d, r), the median time of ``lowrank_svdvals(B, A)`` and of
``torch.linalg.svdvals(B @ A)`` (the product formed inside the timing, as a dense-SVD tool does),
float32, and the maximum relative difference of the r leading singular values (exactness).
Part 2: one ``SpectralProbe.record`` (weights + features on the 64-example probe batch) on MiniLM with
LoR2C and with the full-rank map, as a share of an epoch at two schedules.
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

from lor2c_probe.spectra import lowrank_svdvals


def timeit(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def svd_table(dims: list[int], ranks: list[int], reps: int) -> list[dict]:
    rows = []
    for d in dims:
        for r in ranks:
            g = torch.Generator().manual_seed(d + r)
            B, A = torch.randn(d, r, generator=g), torch.randn(r, d, generator=g)
            fast = timeit(lambda: lowrank_svdvals(B, A), reps)
            dense = timeit(lambda: torch.linalg.svdvals(B @ A), max(3, reps // 10) if d >= 4096 else reps)
            ref = torch.linalg.svdvals(B.double() @ A.double())[:r]
            got32, dense32 = lowrank_svdvals(B, A).double(), torch.linalg.svdvals(B @ A).double()[:r]
            rows.append({
                "d": d, "r": r, "factor_qr_seconds": fast, "dense_svd_seconds": dense, "speedup": dense / fast,
                "factor_qr_max_rel_err_vs_float64": float(((got32 - ref).abs() / ref[0]).max()),
                "dense_svd_max_rel_err_vs_float64": float(((dense32 - ref).abs() / ref[0]).max()),
            })
            print(f"d={d:5d} r={r:3d}  QR {fast * 1e3:8.3f} ms  dense {dense * 1e3:9.1f} ms  x{dense / fast:8.0f}  "
                  f"err QR {rows[-1]['factor_qr_max_rel_err_vs_float64']:.1e} dense {rows[-1]['dense_svd_max_rel_err_vs_float64']:.1e}")
    return rows


def probe_cost(reps: int) -> list[dict]:
    from benchmarks.probe_overhead import make_trainer  # same construction as the overhead benchmark
    from lor2c_probe.config import AdapterConfig, ProbeConfig, RunConfig, TrainConfig
    from lor2c_probe.data.load import load_task
    from lor2c_probe.config import DataConfig
    from lor2c_probe.probes.spectral import SpectralProbe
    from lor2c_probe.train.batches import encode
    from lor2c_probe.train.session import build_model, make_probes
    import tempfile

    out = []
    train_ex, _, spec, _ = load_task(DataConfig(task="rotten-tomatoes"))
    for method in ("lor2c", "full-rank-residual"):
        cfg = RunConfig(adapter=AdapterConfig(method=method), train=TrainConfig(batch_size=16, device="cpu"),
                        probes=ProbeConfig(grads=False, activations=False))
        built = build_model(cfg, spec)
        enc = encode(built.tokenizer, train_ex, cfg.train.max_length, False)
        probe = next(p for p in make_probes(cfg, built.backbone, enc) if isinstance(p, SpectralProbe))
        from lor2c_probe.train.hooks import TrainState

        state = TrainState(built.model.train(), None, None, lambda t, r: None, torch.device("cpu"), "x")
        record = timeit(lambda: probe.record(state), reps)

        class A:
            rank, batch_size, seq_len = 8, 16, 64
        with tempfile.TemporaryDirectory() as tmp:
            trainer, batch = make_trainer(method, ProbeConfig(grads=False, activations=False, spectra=False), None, A, Path(tmp), torch.device("cpu"))
            step = timeit(lambda: trainer.train_step([batch]), 5)
        full_epoch = -(-len(enc) // 32)  # the train command's default batch 32
        out.append({
            "method": method, "record_seconds": record, "step_seconds_batch16_len64": step,
            "ratio_per_100_step_epoch": 1 + record / (100 * step),
            "ratio_per_full_epoch_359_steps": 1 + record / (full_epoch * step),
            "probe_batch_examples": len(probe.data) if probe.data is not None else 0,
        })
        print(f"{method}: record {record:.3f} s, step {step:.3f} s -> x{out[-1]['ratio_per_100_step_epoch']:.4f} per 100-step epoch, "
              f"x{out[-1]['ratio_per_full_epoch_359_steps']:.4f} per full epoch")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", default="384,768,4096")
    ap.add_argument("--ranks", default="8,64")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--skip-probe", action="store_true")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    result = {
        "benchmark": "spectra",
        "environment": {"device": "cpu", "device_name": platform.processor() or "cpu", "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()},
        "svd": svd_table([int(x) for x in a.dims.split(",")], [int(x) for x in a.ranks.split(",")], a.reps),
    }
    if not a.skip_probe:
        result["spectral_probe"] = probe_cost(5)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
