"""Adapter registry: one line per method, ``name -> "module:Class"``, imported lazily.

Lazy so that config validation and ``lor2c-probe --help`` never import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lor2c_probe.adapters.base import Method

METHODS: dict[str, str] = {
    "lora": "lor2c_probe.adapters.lora:LoraMethod",
    "lor2c": "lor2c_probe.adapters.lor2c:Lor2cMethod",
    "share-lor2c": "lor2c_probe.adapters.share_lor2c:ShareLor2cMethod",
    "full-rank-residual": "lor2c_probe.adapters.full_rank:FullRankResidualMethod",
    "merge-lor2c": "lor2c_probe.adapters.structured:MergeLor2cMethod",
    "inject-lor2c": "lor2c_probe.adapters.structured:InjectLor2cMethod",
    "im-lor2c": "lor2c_probe.adapters.structured:ImLor2cMethod",
    "im-share-lor2c": "lor2c_probe.adapters.structured:ImShareLor2cMethod",
    "reslora-is": "lor2c_probe.adapters.reslora:ResLoraIsMethod",
    "reslora-bs": "lor2c_probe.adapters.reslora:ResLoraBsMethod",
    "reslora-ms": "lor2c_probe.adapters.reslora:ResLoraMsMethod",
}


def markers(method: Method) -> tuple[str, ...]:
    """Name markers of a method's adapter parameters (one for most methods; LoR2C + LoRA for injection)."""
    return tuple(getattr(method, "param_markers", (method.param_marker,)))


def get_method(name: str) -> Method:
    """The registered method ``name`` (an instance of its class)."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
