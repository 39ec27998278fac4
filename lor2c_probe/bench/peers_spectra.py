"""``bench --peers`` part 2: the spectra of a PEFT model's LoRA updates, ours against WeightWatcher and a dense SVD.

The model: the ``spectra_shape`` backbone (roberta-base shape by default: 12 layers, d = 768, random weights) with PEFT
LoRA on query and value at rank r, every ``lora_B`` drawn at random (PEFT initialises it to 0, where WeightWatcher's
ARPACK call fails: "Starting vector is zero"). Three ways to the singular values of every ΔW = s·B·A:
- ours: what the spectral probe runs, ``updates.svdvals_many([update_of(layer), ...])``: the exact factor route (QR of
  B and Aᵀ, then an r x r SVD), batched over the updates of one shape;
- WeightWatcher 0.7.x: ``WeightWatcher(model).analyze(peft=True, min_evals=1, plot=False, ...)``, the call a user makes
  (it forms B·A densely and runs ARPACK ``svds`` for the top r values, then its power-law fits); its eigenvalues are
  read through the same layer iterator ``analyze`` uses. WeightWatcher leaves out PEFT's scaling s = alpha / r, so its
  singular values are multiplied by s before comparing (the shared quantity);
- a dense SVD: ``torch.linalg.svdvals`` of each d x d ΔW (built outside the timing).
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from typing import Any

import numpy as np
import torch

from lor2c_probe.bench.config import BenchConfig
from lor2c_probe.bench.peer_monitors import missing


def _peft_model(shape: str, rank: int, seed: int = 0) -> tuple[torch.nn.Module, list[tuple[str, torch.nn.Module]]]:
    from peft import LoraConfig, get_peft_model

    from lor2c_probe.bench.shapes import load_shape

    torch.manual_seed(seed)
    model, backbone = load_shape(shape)
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(backbone.targets), lora_dropout=0.0))
    gen = torch.Generator().manual_seed(seed + 1)
    layers = []
    with torch.no_grad():
        for name, mod in model.named_modules():
            if hasattr(mod, "lora_B") and "default" in getattr(mod, "lora_B", {}):
                b = mod.lora_B["default"].weight
                b.copy_(torch.randn(b.shape, generator=gen) * 0.02)
                layers.append((name, mod))
    return model, layers


def _weightwatcher(model: torch.nn.Module) -> tuple[float, dict[str, np.ndarray]]:
    """(seconds of the user's ``analyze`` call, {longname: singular values, descending}) from WeightWatcher."""
    import weightwatcher as ww
    from weightwatcher.constants import DEFAULT_PARAMS, MIN_EVALS, MP_FIT, PEFT, PLOT, RANDOMIZE, SAVEFIG

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    watcher = ww.WeightWatcher(model=model)
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        watcher.analyze(peft=True, min_evals=1, plot=False, randomize=False, mp_fit=False, savefig=False)
        seconds = time.perf_counter() - t0
        params = DEFAULT_PARAMS.copy()
        params.update({PEFT: True, MIN_EVALS: 1, PLOT: False, SAVEFIG: False, RANDOMIZE: False, MP_FIT: False})
        values = {}
        for layer in watcher.make_layer_iterator(model=model, params=params):  # the path analyze() takes
            if layer.skipped or not layer.has_weights:
                continue
            watcher.apply_normalize_Wmats(layer, params)
            watcher.apply_esd(layer, params)
            values[layer.longname] = np.sqrt(np.asarray(layer.evals, dtype=np.float64))[::-1]
    return seconds, values


def measure_spectra(cfg: BenchConfig, device: torch.device, log: Any = print) -> dict[str, Any]:
    from lor2c_probe.updates import svdvals_many, update_of

    shape = "tiny" if cfg.smoke else "roberta-base"
    model, layers = _peft_model(shape, cfg.rank)
    reps = 3 if cfg.smoke else 5
    d = int(layers[0][1].lora_B["default"].weight.shape[0])
    out: dict[str, Any] = {"shape": shape, "d": d, "rank": cfg.rank, "adapters": len(layers), "unavailable": {}}
    with torch.no_grad():
        ours = {name: v.double().cpu().numpy() for (name, _), v in zip(layers, svdvals_many([update_of(mod) for _, mod in layers]))}
        dense = {name: update_of(mod).dense().float().contiguous() for name, mod in layers}

        def ours_all() -> None:
            svdvals_many([update_of(mod) for _, mod in layers])

        def dense_all() -> None:
            for w in dense.values():
                torch.linalg.svdvals(w)

        out["ours_seconds"] = _median(ours_all, reps)
        out["dense_svd_seconds"] = _median(dense_all, reps)
        ref = {name: torch.linalg.svdvals(w.double()).numpy()[: cfg.rank] for name, w in dense.items()}
    out["ours_vs_dense"] = {"speedup": out["dense_svd_seconds"] / out["ours_seconds"],
                            "max_relative_error": _max_rel({n: v[: cfg.rank] for n, v in ours.items()}, ref)}
    log(f"  {len(layers)} LoRA updates, d = {d}, r = {cfg.rank}: ours {out['ours_seconds'] * 1e3:.2f} ms, dense SVD "
        f"{out['dense_svd_seconds'] * 1e3:.1f} ms (x{out['ours_vs_dense']['speedup']:.0f}), max rel. difference "
        f"{out['ours_vs_dense']['max_relative_error']:.1e}")
    why = missing("weightwatcher")
    if why:
        out["unavailable"]["weightwatcher"] = why
        out["weightwatcher"] = None
        log(f"  WeightWatcher: skipped: {why}")
        return out
    import weightwatcher

    times, values = [], {}
    for _ in range(max(2, reps // 2)):
        s, values = _weightwatcher(model)
        times.append(s)
    scaling = {name: float(mod.scaling["default"]) for name, mod in layers}
    theirs = {}
    for name in ours:
        hit = [v for k, v in values.items() if k.startswith(name + ".lora_BA")]
        if hit:
            theirs[name] = hit[0][: cfg.rank] * scaling[name]
    compared = f"{len(theirs)} of {len(ours)} updates; WeightWatcher's values x PEFT's scaling (it leaves it out)"
    ww_s = float(np.median(times))
    out["weightwatcher"] = {"version": weightwatcher.__version__, "analyze_seconds": ww_s, "speedup": ww_s / out["ours_seconds"],
                            "max_relative_error": _max_rel({n: ours[n][: cfg.rank] for n in theirs}, theirs) if theirs else None,
                            "compared": compared,
                            "what_it_computes": "dense B @ A, top-r ARPACK svds in float64, then power-law fits and norms per layer"}
    log(f"  WeightWatcher {weightwatcher.__version__} analyze(peft=True): {ww_s:.3f} s (x{out['weightwatcher']['speedup']:.0f} ours), "
        f"max rel. difference {out['weightwatcher']['max_relative_error']:.1e} ({compared})")
    return out


def _max_rel(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return float(max(np.max(np.abs(a[k] - b[k]) / np.maximum(np.abs(b[k]), 1e-300)) for k in b))


def _median(fn: Any, reps: int) -> float:
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))
