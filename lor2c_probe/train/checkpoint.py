"""Per-epoch checkpoints: tensors in safetensors, everything else in JSON; loading unpickles nothing.

``checkpoints/epoch-<e>/`` holds ``adapter.safetensors`` (trainable parameters by name: adapters + head),
``state.safetensors`` (optimizer moments, RNG states) and ``state.json`` (step, scheduler, optimizer
hyper-parameters, the run store's shard counter). A checkpoint is written to a hidden folder and
renamed into place, so a listed checkpoint is always complete.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lor2c_probe.errors import StorageError, UserError
from lor2c_probe.record.naming import classify
from lor2c_probe.record.atomic import fsync_dir, fsync_file, sha256

FILES = ("adapter.safetensors", "state.safetensors", "state.json")
CHECKSUMS = "checksums.json"

_CKPT = re.compile(r"^epoch-(\d{4})$")


def _saved(name: str, p: torch.nn.Parameter) -> bool:
    """Trainable parameters, plus adapter parameters that are frozen for now (a LoR2C path frozen by the
    reference-bug ablation, a dormant LoRA) — they act in the forward pass or may, so they are state."""
    return p.requires_grad or classify(name).adapter


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if _saved(n, p)}


def load_trainable_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy saved tensors into the adapter and head parameters; the name sets must match exactly."""
    params = {n: p for n, p in model.named_parameters() if _saved(n, p)}
    missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    if missing or unexpected:
        raise UserError(f"checkpoint does not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    with torch.no_grad():
        for n, p in params.items():
            if p.shape != tensors[n].shape:
                raise UserError(f"checkpoint tensor {n} has shape {tuple(tensors[n].shape)}, model has {tuple(p.shape)}")
            p.copy_(tensors[n].to(p.device, p.dtype))


def save_adapters(model: torch.nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    save_file(trainable_state(model), str(path), metadata=metadata)


def save_checkpoint(
    run_dir: Path, epoch: int, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, extra: dict[str, Any]
) -> Path:
    final = run_dir / "checkpoints" / f"epoch-{epoch:04d}"
    tmp = final.with_name(f".{final.name}.tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _write(tmp, model, optimizer, scheduler, epoch, extra)
        fsync_dir(tmp)
        old = final.with_name(f".{final.name}.old")
        if final.exists():  # a re-written epoch (after a resume): the old one stays until the new one is in place
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        fsync_dir(final.parent)
        shutil.rmtree(old, ignore_errors=True)
    except (OSError, SafetensorError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StorageError(f"cannot write checkpoint {final}: {getattr(e, 'strerror', None) or e}") from e
    return final


def _write(tmp: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, epoch: int, extra: dict[str, Any]) -> None:
    save_adapters(model, tmp / "adapter.safetensors")
    # Optimizer state keyed by parameter *name*: positions shift when merges/injections change the model,
    # names do not (and many tensors share a shape, so a position mix-up would pass unnoticed).
    names = {id(p): n for n, p in model.named_parameters()}
    tensors: dict[str, torch.Tensor] = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    scalars: dict[str, dict[str, Any]] = {}
    groups = []
    for g in optimizer.param_groups:
        groups.append({**{k: v for k, v in g.items() if k != "params"}, "param_names": [names[id(p)] for p in g["params"]]})
        for p in g["params"]:
            for key, val in optimizer.state.get(p, {}).items():
                if torch.is_tensor(val):
                    tensors[f"optim.{names[id(p)]}::{key}"] = val.detach().cpu().contiguous()
                else:
                    scalars.setdefault(names[id(p)], {})[key] = val
    save_file(tensors, str(tmp / "state.safetensors"))
    py_state = random.getstate()
    state = {
        "epoch": epoch,
        "optimizer_groups": groups,
        "optimizer_scalars": scalars,
        "scheduler": scheduler.state_dict(),
        "rng_python": [py_state[0], list(py_state[1]), py_state[2]],
        "rng_numpy": _numpy_state(),
        **extra,
    }
    (tmp / "state.json").write_text(json.dumps(state, default=_jsonable))
    sums = {}
    for name in FILES:
        fsync_file(tmp / name)
        sums[name] = sha256(tmp / name)
    (tmp / CHECKSUMS).write_text(json.dumps(sums, indent=2) + "\n")
    fsync_file(tmp / CHECKSUMS)


def _numpy_state() -> list[Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _jsonable(o: Any) -> Any:
    if isinstance(o, tuple):
        return list(o)
    if torch.is_tensor(o):
        return o.item()
    raise TypeError(f"cannot store {type(o).__name__} in state.json")


def checkpoints(run_dir: Path) -> list[Path]:
    """Every listed checkpoint, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _CKPT.fullmatch(p.name))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def damage(ckpt: Path) -> str | None:
    """Why ``ckpt`` cannot be used (a missing file, a checksum mismatch), or None when it is intact.
    A checkpoint written before checksums existed is checked by reading its files."""
    missing = [n for n in FILES if not (ckpt / n).is_file()]
    if missing:
        return f"{missing[0]} is missing"
    sums_path = ckpt / CHECKSUMS
    if not sums_path.is_file():
        try:
            json.loads((ckpt / "state.json").read_text())
            for n in FILES[:2]:
                load_file(str(ckpt / n))
        except (OSError, ValueError, SafetensorError) as e:
            return f"it cannot be read ({e})"
        return None
    try:
        sums = json.loads(sums_path.read_text())
    except (OSError, ValueError) as e:
        return f"{CHECKSUMS} is damaged ({e})"
    for n in FILES:
        if sums.get(n) != sha256(ckpt / n):
            return f"{n} does not match its checksum"
    return None


@dataclass(frozen=True)
class Choice:
    path: Path | None  # the newest intact checkpoint
    skipped: list[tuple[str, str]]  # (newer checkpoint, why it was not used)


def newest_intact(run_dir: Path) -> Choice:
    skipped = []
    for ckpt in reversed(checkpoints(run_dir)):
        why = damage(ckpt)
        if why is None:
            return Choice(ckpt, skipped)
        skipped.append((ckpt.name, why))
    return Choice(None, skipped)


def load_checkpoint(ckpt: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
    """Restore model/optimizer/scheduler/RNG from ``ckpt``; returns state.json's content. Every file is read
    before anything is changed, so a damaged file is a StorageError naming it and the model stays as it was."""
    try:
        adapter = load_file(str(ckpt / "adapter.safetensors"))
        state = json.loads((ckpt / "state.json").read_text())
        tensors = load_file(str(ckpt / "state.safetensors"))
    except (OSError, ValueError, SafetensorError) as e:
        raise StorageError(f"checkpoint {ckpt} cannot be read ({e})") from None
    load_trainable_state(model, adapter)
    by_name = dict(model.named_parameters())
    saved = state["optimizer_groups"]
    if len(saved) != len(optimizer.param_groups):
        raise UserError(f"checkpoint has {len(saved)} optimizer groups, the optimizer {len(optimizer.param_groups)}")
    missing = sorted({n for g in saved for n in g["param_names"]} - set(by_name))
    if missing:
        raise UserError(f"checkpoint optimizer state names parameters the model lacks: {missing[:3]}")
    for group, g in zip(optimizer.param_groups, saved):
        group.update({k: (tuple(v) if k == "betas" else v) for k, v in g.items() if k != "param_names"})
        group["params"] = [by_name[n] for n in g["param_names"]]
    optimizer.state.clear()
    for key_name, t in tensors.items():
        if key_name.startswith("optim."):
            name, key = key_name[len("optim."):].split("::", 1)
            p = by_name[name]
            optimizer.state[p][key] = t if key == "step" else t.to(p.device, p.dtype)  # AdamW keeps step on the CPU
    for name, vals in state["optimizer_scalars"].items():
        optimizer.state[by_name[name]].update(vals)
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(tensors["rng.torch_cpu"])
    if torch.cuda.is_available():
        cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
        if cuda_states:
            torch.cuda.set_rng_state_all(cuda_states)
    v, keys, pos = state["rng_python"]
    random.setstate((v, tuple(keys), pos))
    name, keys, pos, has_gauss, cached = state["rng_numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    return state
