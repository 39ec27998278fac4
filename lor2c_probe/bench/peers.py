"""``bench --peers``: our tools against the ones users would otherwise pick, on the same model, batch, loop and machine,
in one process, interleaved (issue 21). Four parts:

1. ``monitors``: per-step gradient monitoring. Variants of the built-in loop on one (shape, method): no monitoring; our
   gradient probe every step and every 10th; an offline W&B run logging its loss (the reference for the next two);
   ``wandb.watch(log="gradients")`` at log_freq 1 and 10; TensorBoard ``add_histogram`` of every trainable gradient every
   step and every 10th; BackPACK where it attaches. A repetition is ``steps`` optimizer steps and a flush of our store.
   Statistic for all: the median over repetitions of the paired ratio to no monitoring.
2. ``spectra``: the singular values of every LoRA update ΔW = s·B·A of a PEFT model, by our exact factor route, by
   WeightWatcher (``peers_spectra.py``) and by a dense SVD: time, and agreement on the shared quantity.
3. ``train_step``: LoR2C, ShareLoR2C, ResLoRA against PEFT LoRA, DoRA and VeRA: step time, tokens/s, peak memory.
4. ``volume``: bytes per module per logged step of our Parquet tables, and of the same rows written as TensorBoard
   events and as an offline W&B run; and the time to turn a recording into a Fig. 7 surface from each.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from lor2c_probe.bench.config import BenchConfig
from lor2c_probe.bench.harness import Bench, make_bench
from lor2c_probe.bench.peer_monitors import TensorBoardHistograms, WandbMonitor, missing, scratch
from lor2c_probe.bench.timing import interleaved, paired, summary, synchronizer
from lor2c_probe.config import ProbeConfig

NONE = ProbeConfig(grads=False, activations=False, spectra=False)
GRADS = ProbeConfig(grads=True, activations=False, spectra=False)
GRADS_10 = ProbeConfig(grads=True, activations=False, spectra=False, every=10)
# variant -> (our probes, the peer's callback factory (folder) or None, the module the peer needs)
MONITORS: dict[str, tuple[ProbeConfig, Callable[[Path], Any] | None, str | None]] = {
    "none": (NONE, None, None),
    "ours (grads probe, every step)": (GRADS, None, None),
    "ours (grads probe, every 10th)": (GRADS_10, None, None),
    "wandb (loss only)": (NONE, lambda f: WandbMonitor(f, watch_every=None), "wandb"),
    "wandb.watch(log_freq=1)": (NONE, lambda f: WandbMonitor(f, watch_every=1), "wandb"),
    "wandb.watch(log_freq=10)": (NONE, lambda f: WandbMonitor(f, watch_every=10), "wandb"),
    "tensorboard add_histogram (every step)": (NONE, lambda f: TensorBoardHistograms(f, every=1), "torch.utils.tensorboard"),
    "tensorboard add_histogram (every 10th)": (NONE, lambda f: TensorBoardHistograms(f, every=10), "torch.utils.tensorboard"),
}


def _monitor_bench(cfg: BenchConfig, shape: str, method: str, variant: str, root: Path, device: torch.device, precision: str) -> Bench:
    probes, peer, _ = MONITORS[variant]
    b = make_bench(shape, method, probes, root / _slug(variant) / "store", device=device, precision=precision, rank=cfg.rank,
                   batch_size=cfg.batch_size, seq_len=cfg.seq_len)
    if peer is not None:
        cb = peer(root / _slug(variant) / "peer")
        b.trainer.callbacks.append(cb)
        cb.on_train_start(b.trainer.state)
        b.sinks = cb  # closed at the end (``close``)
    return b


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")


def measure_monitors(cfg: BenchConfig, shape: str, method: str, device: torch.device, precision: str, log: Any = print) -> dict[str, Any]:
    sync = synchronizer(device)
    out: dict[str, Any] = {"shape": shape, "method": method, "steps_per_repetition": cfg.steps, "reps": cfg.reps, "variants": {},
                           "unavailable": {}}
    variants = []
    for v, (_, _, module) in MONITORS.items():
        why = missing(module) if module else None
        if why:
            out["unavailable"][v] = why
            log(f"  {v}: skipped: {why}")
        else:
            variants.append(v)
    from lor2c_probe.bench.peers_backpack import backpack_variant

    bp = backpack_variant(shape, method)  # attached last, to a no-monitoring bench of its own
    with scratch() as tmp:
        root = Path(tmp)
        benches = {v: _monitor_bench(cfg, shape, method, v, root, device, precision) for v in variants}
        if bp.get("attach") is not None:
            try:
                benches[bp["name"]] = bp["attach"](_monitor_bench(cfg, shape, method, "none", root / "backpack", device, precision))
            except Exception as e:  # noqa: BLE001 - a peer that cannot attach is reported, not fatal
                out["unavailable"][bp["name"]] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        for name, why in bp.get("unavailable", {}).items():
            out["unavailable"][name] = why
        for name, b in list(benches.items()):
            try:
                b.run(cfg.warmup)
            except Exception as e:  # noqa: BLE001 - e.g. BackPACK meeting a module it does not support
                out["unavailable"][name] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                benches.pop(name)
        t0 = time.perf_counter()
        times = interleaved({v: (lambda b=b: b.run(cfg.steps)) for v, b in benches.items()}, cfg.reps, sync)
        per_step = {v: [t / cfg.steps for t in ts] for v, ts in times.items()}
        none = per_step["none"]
        for v in benches:
            entry = {"seconds_per_step": summary(per_step[v]), "ratio_to_none": paired(per_step[v], none)}
            if v.startswith("wandb.watch") and "wandb (loss only)" in per_step:
                entry["ratio_to_wandb_loss_only"] = paired(per_step[v], per_step["wandb (loss only)"])
            out["variants"][v] = entry
            log(f"  {shape} {method} {v:<40} {summary(per_step[v])['median'] * 1e3:8.1f} ms/step  x{entry['ratio_to_none']['median']:.3f}")
        for b in benches.values():
            if b.sinks is not None:
                b.sinks.close()
        out["seconds"] = time.perf_counter() - t0
    out["ours_vs_watch_overhead"] = _overhead_ratio(out["variants"], "ours (grads probe, every step)", "wandb.watch(log_freq=1)")
    return out


def _overhead_ratio(variants: dict[str, Any], ours: str, theirs: str) -> dict[str, Any] | None:
    """How many times our added step time fits in theirs: (their ratio - 1) / (our ratio - 1), from the medians. Our
    overhead is a percent or two, inside the noise of one repetition: the number is then a lower bound, stated so."""
    if ours not in variants or theirs not in variants:
        return None
    a, b = variants[ours]["ratio_to_none"]["median"] - 1, variants[theirs]["ratio_to_none"]["median"] - 1
    return {"ours_added": a, "theirs_added": b, "times_cheaper": b / a if a > 0 else None,
            "note": "ours added no measurable time: the factor is unbounded" if a <= 0 else ""}


def peer_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("wandb", "tensorboard", "weightwatcher", "backpack-for-pytorch", "peft"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def run_peers(cfg: BenchConfig, device: torch.device, precision: str, log: Callable[[str], None] = print) -> dict[str, Any]:
    from lor2c_probe.bench.peers_spectra import measure_spectra
    from lor2c_probe.bench.peers_steps import measure_train_steps
    from lor2c_probe.bench.peers_volume import measure_volume

    out: dict[str, Any] = {"parts": list(cfg.peer_parts), "peer_versions": peer_versions(), "monitors": {}, "spectra": None,
                           "train_step": {}, "volume": {}}
    for shape in cfg.shapes if "monitors" in cfg.peer_parts else ():
        for method in cfg.peer_methods:
            log(f"{shape} {method}: gradient monitoring, ours vs wandb.watch vs TensorBoard histograms vs BackPACK")
            out["monitors"][f"{shape}|{method}"] = measure_monitors(cfg, shape, method, device, precision, log)
    if "spectra" in cfg.peer_parts:
        log("adapter spectra: our factor route vs WeightWatcher vs a dense SVD")
        out["spectra"] = measure_spectra(cfg, device, log)
    for shape in cfg.shapes:
        if "train_step" in cfg.peer_parts:
            log(f"{shape}: train step of {', '.join(cfg.step_methods)}")
            out["train_step"][shape] = measure_train_steps(cfg, shape, device, precision, log)
        if "volume" in cfg.peer_parts:
            log(f"{shape}: recording volume and Fig. 7 analysis time, ours vs TensorBoard vs W&B files")
            out["volume"][shape] = measure_volume(cfg, shape, device, precision, log)
    return out


__all__ = ["MONITORS", "measure_monitors", "run_peers"]
