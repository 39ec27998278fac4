"""Adapter maps from a run's checkpoints (safetensors read as numpy: no torch, nothing unpickled)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from lor2c_probe.record.naming import classify


def checkpoint_dir(run: Path, epoch: int | None = None) -> Path:
    folder = Path(run) / "checkpoints"
    found = sorted(folder.glob("epoch-*")) if folder.is_dir() else []
    found = [p for p in found if (p / "adapter.safetensors").is_file()]
    if not found:
        raise ValueError(f"run {run} has no checkpoint with adapter.safetensors")
    if epoch is None:
        return found[-1]
    want = folder / f"epoch-{epoch:04d}"
    if want not in found:
        raise ValueError(f"run {run} has no checkpoint for epoch {epoch}")
    return want


def residual_maps(run: Path, scaling: float, epoch: int | None = None) -> dict[str, np.ndarray | tuple[np.ndarray, np.ndarray]]:
    """LoR2C-family maps by module id: a dense s*W, or the factors (s*B, A) of s*B A (shared A resolved)."""
    tensors = load_file(str(checkpoint_dir(run, epoch) / "adapter.safetensors"))
    parts: dict[str, dict[str, np.ndarray]] = {}
    roles = {name: classify(name) for name in tensors}
    shared = next((tensors[k] for k, r in roles.items() if r.kind == "lor2c-shared"), None)
    for name, value in tensors.items():
        if roles[name].kind == "lor2c":
            parts.setdefault(roles[name].module, {})[roles[name].factor] = value.astype(np.float64)
    maps: dict[str, np.ndarray | tuple[np.ndarray, np.ndarray]] = {}
    for module, p in parts.items():
        if "W" in p:
            maps[module] = scaling * p["W"]
        else:
            maps[module] = (scaling * p["B"], p["A"] if "A" in p else shared.astype(np.float64))
    return maps
