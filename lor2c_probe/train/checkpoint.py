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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lor2c_probe.errors import UserError

_CKPT = re.compile(r"^epoch-(\d{4})$")


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy saved tensors into the trainable parameters; the name sets must match exactly."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
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
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_adapters(model, tmp / "adapter.safetensors")
    opt = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in opt["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optim.{idx}.{key}"] = val.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = val
    save_file(tensors, str(tmp / "state.safetensors"))
    py_state = random.getstate()
    state = {
        "epoch": epoch,
        "optimizer_param_groups": opt["param_groups"],
        "optimizer_scalars": scalars,
        "scheduler": scheduler.state_dict(),
        "rng_python": [py_state[0], list(py_state[1]), py_state[2]],
        "rng_numpy": _numpy_state(),
        **extra,
    }
    (tmp / "state.json").write_text(json.dumps(state, default=_jsonable))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def _numpy_state() -> list[Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _jsonable(o: Any) -> Any:
    if isinstance(o, tuple):
        return list(o)
    if torch.is_tensor(o):
        return o.item()
    raise TypeError(f"cannot store {type(o).__name__} in state.json")


def latest_checkpoint(run_dir: Path) -> Path | None:
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return None
    found = sorted(p for p in folder.iterdir() if _CKPT.match(p.name) and (p / "state.json").is_file())
    return found[-1] if found else None


def load_checkpoint(ckpt: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
    """Restore model/optimizer/scheduler/RNG from ``ckpt``; returns state.json's content."""
    load_trainable_state(model, load_file(str(ckpt / "adapter.safetensors")))
    state = json.loads((ckpt / "state.json").read_text())
    tensors = load_file(str(ckpt / "state.safetensors"))
    opt_state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            opt_state.setdefault(int(idx), {})[key] = t
    for idx, vals in state["optimizer_scalars"].items():
        opt_state.setdefault(int(idx), {}).update(vals)
    groups = state["optimizer_param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
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
