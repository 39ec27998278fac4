"""Residual connections across whole transformer blocks (LoR2C and its variants), attached with hooks.

A path from block ``start`` to block ``end`` reads the hidden state entering ``start`` and adds its
delta to the output of ``end`` (decisions.md): ``h_{end+1} = F_end(h_end) + delta(h_start)``.
The adapters live in one ``ResidualBank`` registered as ``model.lor2c`` (parameter names
``lor2c.paths.<id>.<factor>``), kept in float32, with the delta cast to the activation dtype.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lor2c_probe.record.naming import HEAD_MODULES
from lor2c_probe.models import Backbone

BANK_ATTR = "lor2c"


def path_id(start: int, end: int) -> str:
    """Module id: "3" for one block, "3-4" for a merged span (ModuleDict keys cannot hold dots)."""
    return str(start) if start == end else f"{start}-{end}"


class ResidualPath(nn.Module):
    """One residual connection; subclasses define ``delta`` (the map before scaling)."""

    def __init__(self, start: int, end: int) -> None:
        super().__init__()
        if not 0 <= start <= end:
            raise ValueError(f"path must satisfy 0 <= start <= end; got start={start}, end={end}")
        self.start, self.end = start, end

    def delta(self, x: Tensor, bank: ResidualBank) -> Tensor:  # x: (batch, seq, d), float32
        raise NotImplementedError


class LowRankPath(ResidualPath):
    """``B A x`` with A: (r, d) Kaiming-uniform like nn.Linear, B: (d, r) zeros, so the path starts at 0."""

    def __init__(self, start: int, end: int, d: int, rank: int) -> None:
        super().__init__(start, end)
        self.A = nn.Parameter(torch.empty(rank, d, dtype=torch.float32))
        self.B = nn.Parameter(torch.zeros(d, rank, dtype=torch.float32))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    def delta(self, x: Tensor, bank: ResidualBank) -> Tensor:
        return F.linear(F.linear(x, self.A), self.B)  # (b, t, d) -> (b, t, r) -> (b, t, d)


class SharedALowRankPath(ResidualPath):
    """``B_i A_shared x``: the down-projection lives on the bank, each path keeps its own B."""

    def __init__(self, start: int, end: int, d: int, rank: int) -> None:
        super().__init__(start, end)
        self.B = nn.Parameter(torch.zeros(d, rank, dtype=torch.float32))

    def delta(self, x: Tensor, bank: ResidualBank) -> Tensor:
        return F.linear(F.linear(x, bank.shared_A), self.B)


class DensePath(ResidualPath):
    """``W x`` with a full d x d matrix, zero-initialised: the Fig. 2 experiment (is the learned map low rank?)."""

    def __init__(self, start: int, end: int, d: int) -> None:
        super().__init__(start, end)
        self.W = nn.Parameter(torch.zeros(d, d, dtype=torch.float32))

    def delta(self, x: Tensor, bank: ResidualBank) -> Tensor:
        return F.linear(x, self.W)


class ResidualBank(nn.Module):
    """All residual paths of a model plus the hooks that run them.

    Hooks sit only on blocks where some path starts or ends. The pre-hook on ``start`` computes the
    delta right away (it keeps nothing autograd would not keep anyway); the forward hook on ``end``
    adds every pending delta ending there.
    """

    def __init__(self, *, scaling: float, dropout: float) -> None:
        super().__init__()
        self.scaling = float(scaling)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()  # p = 0: no copy of h
        self.paths = nn.ModuleDict()
        self._layers: list[nn.ModuleList] = []  # a plain list, so the blocks are not registered twice
        self._handles: list[Any] = []
        self._pending: dict[str, Tensor] = {}

    def add_path(self, path: ResidualPath) -> None:
        key = path_id(path.start, path.end)
        if key in self.paths:
            raise ValueError(f"a path {key} already exists")
        self.paths[key] = path
        if self._layers:
            self._install()

    def remove_path(self, key: str) -> ResidualPath:
        path = self.paths.pop(key)
        self._install()
        return path

    def attach_to(self, layers: nn.ModuleList) -> None:
        n = len(layers)
        for key, p in self.paths.items():
            if p.end >= n:
                raise ValueError(f"path {key} ends at block {p.end} but the model has {n} blocks")
        self._layers = [layers]
        self._install()

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._pending.clear()

    def _install(self) -> None:
        self.detach()
        layers = self._layers[0]
        starts: dict[int, list[str]] = {}
        ends: dict[int, list[str]] = {}
        for key, p in self.paths.items():
            starts.setdefault(p.start, []).append(key)
            ends.setdefault(p.end, []).append(key)
        for i, keys in starts.items():
            self._handles.append(layers[i].register_forward_pre_hook(self._pre_hook(keys), with_kwargs=True))
        for i, keys in ends.items():
            self._handles.append(layers[i].register_forward_hook(self._post_hook(keys), with_kwargs=True))

    def _pre_hook(self, keys: list[str]):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            h = args[0] if args else kwargs["hidden_states"]  # (batch, seq, d), the block's input
            x = self.drop(h.to(torch.float32))
            for key in keys:
                self._pending[key] = self.scaling * self.paths[key].delta(x, self)

        return hook

    def _post_hook(self, keys: list[str]):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
            hidden = output[0] if isinstance(output, tuple) else output
            total = self._pending.pop(keys[0])
            for key in keys[1:]:
                total = total + self._pending.pop(key)
            hidden = hidden + total.to(hidden.dtype)
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return hook


def attach_bank(model: nn.Module, backbone: Backbone, bank: ResidualBank) -> nn.Module:
    """Freeze the model, register ``bank`` as ``model.lor2c`` with its hooks, and unfreeze the head."""
    from lor2c_probe.models import find_layers

    model.requires_grad_(False)
    _, layers = find_layers(model, backbone.layers_path)
    model.add_module(BANK_ATTR, bank)
    bank.attach_to(layers)
    bank.requires_grad_(True)
    unfreeze_head(model, backbone.causal)
    return model


def unfreeze_head(model: nn.Module, causal: bool = False) -> None:
    """Train the fresh classification head. A causal LM has none: its LM head is pretrained and stays frozen."""
    from lor2c_probe.models import head_modules

    if causal:
        return
    heads = head_modules(model)
    if not heads:
        raise ValueError(f"{type(model).__name__} has no classification head ({', '.join(sorted(HEAD_MODULES))})")
    for name in heads:
        model.get_submodule(name).requires_grad_(True)
