"""``bench --peers`` part 4: what a recording costs on disk, and how long a Fig. 7 surface takes to compute from it.

A real recording: ``volume_record_steps`` steps of our gradient probe on a LoR2C run and a LoRA run (same batch). It is
extended to ``volume_steps`` steps by repeating its steps with values jittered by 1% (log-normal, seeded), so that the
files compress like distinct measurements. The same rows (the ``grads`` table's factor-``all`` rows: what the sinks carry,
and what Fig. 7 reads) are then written three ways: our Parquet shards (one per 50 steps, the default flush),
TensorBoard event files and an offline W&B run (our sinks, the tags ``export`` writes); our full table (factors A and B
too) is measured beside them. Volume: bytes per adapter module per logged step. Analysis: wall time from the files on disk to the
Fig. 7 surface (ratio per epoch and layer): ours through ``read_table``; TensorBoard through its ``EventAccumulator``;
W&B offline runs have no public reader (the public API reads a server's copy after ``wandb sync``), which is recorded.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lor2c_probe.bench.config import BenchConfig
from lor2c_probe.bench.harness import make_bench
from lor2c_probe.bench.peer_monitors import folder_bytes, missing, scratch
from lor2c_probe.config import ProbeConfig
from lor2c_probe.record.store import RunStore, read_table

GRADS = ProbeConfig(grads=True, activations=False, spectra=False)


def _record(cfg: BenchConfig, shape: str, method: str, root: Path, device: torch.device, precision: str) -> pd.DataFrame:
    b = make_bench(shape, method, GRADS, root, device=device, precision=precision, rank=cfg.rank, batch_size=cfg.batch_size,
                   seq_len=cfg.seq_len)
    b.run(cfg.volume_record_steps)
    return read_table(root, "grads")


def extend(grads: pd.DataFrame, steps: int, steps_per_epoch: int, seed: int = 0) -> pd.DataFrame:
    """``grads`` rows repeated to ``steps`` steps (step numbers continued, epochs of ``steps_per_epoch``), values x a
    seeded log-normal factor (sigma 0.01) so that no two steps are byte-identical."""
    recorded = int(grads["step"].max())
    reps = -(-steps // recorded)
    rng = np.random.default_rng(seed)
    frames = [grads.assign(step=grads["step"] + k * recorded) for k in range(reps)]
    out = pd.concat(frames, ignore_index=True)
    out = out[out["step"] <= steps].reset_index(drop=True)
    out["epoch"] = (out["step"] - 1) // steps_per_epoch
    jitter = rng.lognormal(0.0, 0.01, len(out))
    keep = out["stat"].isin(["numel", "scaling"])  # sizes and scalings are constants, not measurements
    out["value"] = np.where(keep, out["value"], out["value"] * jitter)
    return out


def _write_ours(grads: pd.DataFrame, root: Path, flush_every: int = 50) -> None:
    store = RunStore(root)
    for _, chunk in grads.groupby((grads["step"] - 1) // flush_every):
        store.append("grads", chunk.to_dict("records"))
        store.flush()


def _write_sink(name: str, grads: pd.DataFrame, folder: Path, run_name: str) -> None:
    from lor2c_probe.sinks.base import open_sink, scalar_rows

    sink = open_sink(name, folder, run_name=run_name, config={"bench": "peers"})
    try:
        sink.scalars(scalar_rows("grads", grads))
    finally:
        sink.close()


def _grads_from_tensorboard(folders: tuple[Path, Path]) -> list[pd.DataFrame]:
    """The grads rows back from TensorBoard's event files (EventAccumulator), one frame per run."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    frames = []
    for folder in folders:
        acc = EventAccumulator(str(folder), size_guidance={SCALARS: 0})
        acc.Reload()
        rows = []
        for tag in acc.Tags()["scalars"]:
            parts = tag.split("/")  # grads/<module>/<stat>: factor ``all``, the tag our sinks write
            if len(parts) != 3 or parts[0] != "grads":
                continue
            rows += [(e.step, parts[1], "all", parts[2], e.value) for e in acc.Scalars(tag)]
        frames.append(pd.DataFrame(rows, columns=["step", "module", "factor", "stat", "value"]))
    return frames


def measure_volume(cfg: BenchConfig, shape: str, device: torch.device, precision: str, log: Any = print) -> dict[str, Any]:
    from lor2c_probe.analysis.gradients import gradient_ratio_surface

    steps, per_epoch = cfg.volume_steps, max(1, cfg.volume_steps // 4)
    out: dict[str, Any] = {"recorded_steps": cfg.volume_record_steps, "steps": steps, "steps_per_epoch": per_epoch, "formats": {},
                           "analysis_seconds": {}, "unavailable": {}}
    with scratch() as tmp:
        root = Path(tmp)
        tables = {m: extend(_record(cfg, shape, m, root / "rec" / m, device, precision), steps, per_epoch) for m in ("lor2c", "lora")}
        modules = {m: int(t.loc[t["module"] != "global", "module"].nunique()) for m, t in tables.items()}
        unit = sum(modules.values()) * steps
        for m, t in tables.items():
            _write_ours(t, root / "ours-all" / m)
            _write_ours(t[t["factor"] == "all"], root / "ours" / m)  # the rows the sinks carry (factor all)
        out["formats"]["ours (Parquet, the same rows)"] = _per(folder_bytes(root / "ours"), unit)
        out["formats"]["ours (Parquet, every grads row: factors A, B too)"] = _per(folder_bytes(root / "ours-all"), unit)
        for name, module in (("tensorboard", "tensorboard"), ("wandb", "wandb")):
            if (why := missing(module)) is not None:
                out["unavailable"][name] = why
                continue
            for m, t in tables.items():
                _write_sink(name, t, root / name / m, m)
            out["formats"][f"{name} ({'event files' if name == 'tensorboard' else 'offline run'})"] = _per(folder_bytes(root / name), unit)
        out["modules"] = modules

        def ours() -> pd.DataFrame:
            return gradient_ratio_surface(read_table(root / "ours" / "lor2c", "grads"), read_table(root / "ours" / "lora", "grads"))

        reference = ours()
        out["analysis_seconds"]["ours (Parquet, read_table)"] = _best_of(ours, 3)
        if "tensorboard" not in out["unavailable"]:
            def tb() -> pd.DataFrame:
                num, den = _grads_from_tensorboard((root / "tensorboard" / "lor2c", root / "tensorboard" / "lora"))
                for f in (num, den):
                    f["epoch"], f["layer"] = (f["step"] - 1) // per_epoch, -1
                return gradient_ratio_surface(num, den)

            got = tb()
            out["analysis_seconds"]["tensorboard (EventAccumulator)"] = _best_of(tb, 3)
            out["tensorboard_surface_max_relative_difference"] = float(
                np.nanmax(np.abs(got["ratio"].to_numpy() / reference["ratio"].to_numpy() - 1)))  # float32 event values
        out["unavailable"]["wandb analysis"] = ("wandb 0.2x/0.3x ships no reader of offline .wandb run files; its public API reads "
                                                "a server's copy after `wandb sync`, which this offline benchmark cannot reach")
    for name, f in out["formats"].items():
        log(f"  {shape} {name:<28} {f['bytes_per_module_step']:8.1f} B/module/step ({f['bytes'] / 2**20:.2f} MiB)")
    for name, s in out["analysis_seconds"].items():
        log(f"  {shape} Fig. 7 surface from {name:<30} {s:8.3f} s ({steps} steps, lor2c and lora)")
    return out


def _per(total: int, unit: int) -> dict[str, Any]:
    return {"bytes": total, "bytes_per_module_step": total / unit if unit else None}


def _best_of(fn: Any, n: int) -> float:
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
