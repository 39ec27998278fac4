"""Adapter maps from a run's checkpoints (safetensors read as numpy: no torch, nothing unpickled)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

_PATH = re.compile(r"(?:^|\.)lor2c\.paths\.(\d+(?:-\d+)?)\.([ABW])$")


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
    shared = next((v for k, v in tensors.items() if k.endswith("lor2c.shared_A")), None)
    for name, value in tensors.items():
        if m := _PATH.search(name):
            parts.setdefault(f"lor2c.{m.group(1)}", {})[m.group(2)] = value.astype(np.float64)
    maps: dict[str, np.ndarray | tuple[np.ndarray, np.ndarray]] = {}
    for module, p in parts.items():
        if "W" in p:
            maps[module] = scaling * p["W"]
        else:
            maps[module] = (scaling * p["B"], p["A"] if "A" in p else shared.astype(np.float64))
    return maps
