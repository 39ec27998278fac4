"""Adapter registry: one ``MethodSpec`` line per method, torch-free; the implementation is imported lazily.

A spec says what the rest of the package needs to know about a method without building it: the markers and
the ``classify`` kinds of its adapter parameter names, and its capabilities (merge, inject, a dormant LoRA,
folding for inference). Config validation, ``--help`` and the analyses read specs and never import torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lor2c_probe.adapters.base import Method


@dataclass(frozen=True)
class MethodSpec:
    name: str
    impl: str  # "module:Class" implementing adapters.base.Method
    markers: tuple[str, ...]  # every adapter parameter name contains one of these (probes select by them)
    kinds: frozenset[str]  # the record.naming.classify kinds its trainable adapter parameters take
    can_merge: bool = False  # adjacent LoR2C modules merge during training (--merges)
    can_inject: bool = False  # a LoR2C module is replaced by LoRA of rank r/2 on q, v (--injections)
    dormant_lora: bool = False  # carries a frozen LoRA on every block from the start, switched on by an injection
    foldable: bool = False  # extra training-time paths folded into plain weights for inference (evaluated both ways)
    lora_dropout: bool = False  # its dropout default is LoRA's under every policy (not the LoR2C residual's)
    peft: bool = False  # a PEFT tuner (--target-modules applies; ``markers`` "" selects every trainable non-head tensor)


_LOR2C, _LORA = frozenset({"lor2c"}), frozenset({"lora"})
_PEFT = "lor2c_probe.adapters.peft_family"
_SPECS = (
    MethodSpec("lora", f"{_PEFT}:LoraMethod", ("lora_",), _LORA, lora_dropout=True, peft=True),
    MethodSpec("lor2c", "lor2c_probe.adapters.lor2c:Lor2cMethod", ("lor2c.",), _LOR2C),
    MethodSpec("share-lor2c", "lor2c_probe.adapters.share_lor2c:ShareLor2cMethod", ("lor2c.",), frozenset({"lor2c", "lor2c-shared"})),
    MethodSpec("full-rank-residual", "lor2c_probe.adapters.full_rank:FullRankResidualMethod", ("lor2c.",), _LOR2C),
    MethodSpec("merge-lor2c", "lor2c_probe.adapters.structured:MergeLor2cMethod", ("lor2c.",), _LOR2C, can_merge=True),
    MethodSpec("inject-lor2c", "lor2c_probe.adapters.structured:InjectLor2cMethod", ("lor2c.", "lora_"), _LOR2C | _LORA,
               can_inject=True, dormant_lora=True),
    MethodSpec("im-lor2c", "lor2c_probe.adapters.structured:ImLor2cMethod", ("lor2c.", "lora_"), _LOR2C | _LORA,
               can_merge=True, can_inject=True, dormant_lora=True),
    MethodSpec("im-share-lor2c", "lor2c_probe.adapters.structured:ImShareLor2cMethod", ("lor2c.", "lora_"),
               frozenset({"lor2c", "lor2c-shared", "lora"}), can_merge=True, can_inject=True, dormant_lora=True),
    MethodSpec("reslora-is", "lor2c_probe.adapters.reslora:ResLoraIsMethod", ("reslora.",), frozenset({"reslora"}), foldable=True,
               lora_dropout=True),
    MethodSpec("reslora-bs", "lor2c_probe.adapters.reslora:ResLoraBsMethod", ("reslora.",), frozenset({"reslora"}), foldable=True,
               lora_dropout=True),
    MethodSpec("reslora-ms", "lor2c_probe.adapters.reslora:ResLoraMsMethod", ("reslora.",), frozenset({"reslora"}), foldable=True,
               lora_dropout=True),
    # PEFT's own methods (adapters/peft_family.py): placed by PEFT's tuner layers (probes/placement.py), not by names.
    MethodSpec("dora", f"{_PEFT}:DoraMethod", ("lora_",), _LORA, lora_dropout=True, peft=True),
    MethodSpec("pissa", f"{_PEFT}:PissaMethod", ("lora_",), _LORA, lora_dropout=True, peft=True),
    MethodSpec("adalora", f"{_PEFT}:AdaLoraMethod", ("lora_",), _LORA, lora_dropout=True, peft=True),
    MethodSpec("vera", f"{_PEFT}:VeraMethod", ("vera_lambda_",), frozenset({"vera"}), lora_dropout=True, peft=True),
    MethodSpec("ia3", f"{_PEFT}:Ia3Method", ("ia3_l",), frozenset({"ia3"}), peft=True),
    MethodSpec("loha", f"{_PEFT}:LohaMethod", ("hada_",), frozenset({"loha"}), peft=True),
    MethodSpec("lokr", f"{_PEFT}:LokrMethod", ("lokr_",), frozenset({"lokr"}), peft=True),
    MethodSpec("peft", f"{_PEFT}:PeftConfigMethod", ("",), frozenset({"lora", "vera", "ia3", "loha", "lokr", "peft"}), peft=True),
)
METHODS: dict[str, MethodSpec] = {s.name: s for s in _SPECS}


def spec(name: str) -> MethodSpec:
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[name]


def markers(name: str) -> tuple[str, ...]:
    """Name markers of a method's adapter parameters."""
    return spec(name).markers


def register(method_spec: MethodSpec) -> None:
    """Add a method (e.g. from a plugin or a test); its ``impl`` is imported when it is first built."""
    METHODS[method_spec.name] = method_spec


def get_method(name: str) -> Method:
    """The registered method ``name`` (an instance of its class)."""
    module, cls = spec(name).impl.split(":")
    return getattr(importlib.import_module(module), cls)()
