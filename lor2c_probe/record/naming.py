"""The parameter-naming contract between adapters, probes and analyses: name -> (module, layer, factor).

- LoR2C family: ``lor2c.paths.<start>[-<end>].<factor>`` -> module ``lor2c.<start>[-<end>]``, layer = start
  (a merged module covers start..end), factor A, B or W; ``lor2c.shared_A`` -> module ``lor2c.shared``,
  layer -1 (it serves every layer), factor A.
- LoRA (PEFT): ``...<stack>.<l>.<...>.{query,value,q_proj,v_proj,c_attn,...}.lora_{A,B}.<adapter>.weight`` ->
  module ``lora.<l>`` (the q and v adapters of layer l together), layer l, factor A or B.
- ResLoRA: ``reslora.adapters.<q|v>.<l>.{A,B}`` -> module ``reslora.<l>`` (q and v of layer l, as for LoRA).
- Anything else selected: module = the parameter name, layer -1, factor "all".

``classify`` is the only parser of adapter parameter names: probes, analyses, checkpoints and structural
changes all go through it (a test classifies every trainable parameter of every registered method).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# What a sequence-classification model creates fresh on top of its backbone, as top-level modules: the classifier
# (BERT, RoBERTa, ELECTRA, MPNet, XLM-R, DistilBERT, DeBERTa), the score (decoders), DistilBERT's pre_classifier and
# DeBERTa-v2's pooler. BERT's own pooler sits inside the backbone (bert.pooler) and is pretrained: not a head.
HEAD_MODULES = {"classifier", "score", "pre_classifier", "pooler"}
_WRAPPERS = ("base_model.model.", "module.", "_orig_mod.")  # PEFT, DDP and torch.compile prefixes


def strip_wrappers(name: str) -> str:
    """A parameter or module path without PEFT's, DDP's and torch.compile's prefixes (in any nesting)."""
    stripped = True
    while stripped:
        stripped = False
        for w in _WRAPPERS:
            if name.startswith(w):
                name, stripped = name[len(w):], True
    return name


def is_head(name: str) -> bool:
    """Trainable head parameters: plain (classifier.weight) or PEFT's copy (classifier.modules_to_save...).

    PEFT also keeps the frozen original under ``classifier.original_module``; that one is not the head.
    """
    parts = strip_wrappers(name).split(".")
    return parts[0] in HEAD_MODULES and "original_module" not in parts


_LOR2C = re.compile(r"(?:^|\.)lor2c\.paths\.(\d+)(?:-(\d+))?\.([A-Za-z]+)$")
_SHARED = re.compile(r"(?:^|\.)lor2c\.shared_A$")
# The first "<name>.<index>." of the path is the block (layer.3, layers.3, GPT-2's h.3); probes place PEFT tensors
# by PEFT's tuner layers instead (probes/placement.py), this is the name-only fallback for checkpoints and the loop.
_LORA = re.compile(r"(?:^|\.)[A-Za-z_][A-Za-z0-9_]*\.(\d+)\..*\.lora_([AB])\.")
_SPAN = re.compile(r"\.(\d+)(?:-(\d+))?$")


SHORT = {"query": "q", "value": "v", "key": "k", "q_proj": "q", "v_proj": "v", "k_proj": "k", "o_proj": "o", "dense": "o"}
# lor2c-probe's own kinds, PEFT's (placed by probes/placement.py from PEFT's tuner layers; another PEFT tuner gets
# its own name), and other.
KINDS = ("lor2c", "lor2c-shared", "lora", "reslora", "vera", "ia3", "loha", "lokr", "other")


@dataclass(frozen=True)
class ParamRole:
    module: str
    layer: int  # first block the module covers; -1 when it serves all layers
    factor: str
    kind: str = "other"  # one of KINDS (or another PEFT tuner's name)
    last: int = -1  # last block a LoR2C module covers (a merged module spans layer..last)
    proj: str = ""  # LoRA / ResLoRA: the adapted projection, short (q, v, ...)
    path: str = ""  # LoRA: the wrapped projection's module path; ResLoRA: the bank's module path

    @property
    def adapter(self) -> bool:
        return self.kind != "other"


_RESLORA_FULL = re.compile(r"^(?P<owner>(?:.*\.)?reslora)\.adapters\.(?P<t>[a-z]+)\.(?P<l>\d+)\.(?P<f>[AB])$")
_LORA_FULL = re.compile(r"^(?P<path>.*)\.lora_(?P<f>[AB])\.[^.]+\.weight$")


def classify(name: str) -> ParamRole:
    if m := _LOR2C.search(name):
        start, end, factor = m.groups()
        return ParamRole(f"lor2c.{start}" + (f"-{end}" if end else ""), int(start), factor, "lor2c", int(end or start))
    if _SHARED.search(name):
        return ParamRole("lor2c.shared", -1, "A", "lor2c-shared")
    if m := _RESLORA_FULL.match(name):
        layer = int(m.group("l"))
        return ParamRole(f"reslora.{layer}", layer, m.group("f"), "reslora", layer, m.group("t"), m.group("owner"))
    if (m := _LORA.search(name)) and (full := _LORA_FULL.match(name)):
        proj = full.group("path").rsplit(".", 1)[-1]
        return ParamRole(f"lora.{m.group(1)}", int(m.group(1)), m.group(2), "lora", int(m.group(1)), SHORT.get(proj, proj),
                         full.group("path"))
    return ParamRole(name, -1, "all")


def module_span(module: str) -> tuple[int, int] | None:
    """(first, last) block of a module id such as ``lor2c.3`` or ``lor2c.3-5``; None if it has no layer (an
    ``unplaced:<tensor>`` id never has one, whatever its name ends with)."""
    if module.startswith("unplaced:"):
        return None
    m = _SPAN.search(module)
    if m is None:
        return None
    start = int(m.group(1))
    return start, int(m.group(2) or start)
