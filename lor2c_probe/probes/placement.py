"""Where each trainable adapter tensor sits: (layer, module, factor), from PEFT's own tuner layers, not from names.

PEFT methods: every ``BaseTunerLayer`` in the model owns its adapter tensors (LoRA's A and B, DoRA's magnitude,
AdaLoRA's E, VeRA's λ vectors, IA3's scaling vector, LoHa and LoKr factors); its module path says which block it is
in (``blocks.layer_of``). lor2c-probe's own modules (LoR2C bank, ResLoRA bank) are named by this package and parsed
by ``record.naming.classify``. A tensor that is neither, or a tuner layer outside the block stack, is *unplaced*:
it keeps its own row (module ``unplaced:<name>``, layer -1) and its reason, and the analyses say so in one line.

Module ids: ``<kind>.<layer>`` with every adapted projection of a block together (``lora.3`` = q and v), as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from lor2c_probe.record.naming import SHORT, ParamRole, classify, is_head

# PEFT attribute -> factor name in the tables. Anything else keeps its attribute name.
FACTORS = {
    "lora_A": "A", "lora_B": "B", "lora_E": "E", "lora_magnitude_vector": "m",
    "vera_lambda_b": "lambda_b", "vera_lambda_d": "lambda_d", "ia3_l": "l",
    "hada_w1_a": "w1_a", "hada_w1_b": "w1_b", "hada_w2_a": "w2_a", "hada_w2_b": "w2_b", "hada_t1": "t1", "hada_t2": "t2",
    "lokr_w1": "w1", "lokr_w1_a": "w1_a", "lokr_w1_b": "w1_b", "lokr_w2": "w2", "lokr_w2_a": "w2_a", "lokr_w2_b": "w2_b", "lokr_t2": "t2",
}
UNPLACED = "unplaced:"


@dataclass(frozen=True)
class TunerSite:
    """One PEFT tuner layer: its module path, kind (lora, vera, ...), block and short projection name."""

    path: str
    kind: str
    layer: int | None
    proj: str


@dataclass
class Placement:
    roles: dict[str, ParamRole] = field(default_factory=dict)  # every selected tensor -> its role
    unplaced: dict[str, str] = field(default_factory=dict)  # tensor name -> why it has no (layer, module)

    def warning(self) -> str | None:
        """One line naming how many tensors are unplaced and the first reason; None when all are placed."""
        if not self.unplaced:
            return None
        name, why = next(iter(self.unplaced.items()))
        more = f" (and {len(self.unplaced) - 1} more)" if len(self.unplaced) > 1 else ""
        return f"{len(self.unplaced)} trainable tensor(s) have no layer and stay off per-layer surfaces: {name}: {why}{more}"


def tuner_kind(layer: torch.nn.Module) -> str:
    """lora (LoRA, DoRA, PiSSA, AdaLoRA), vera, ia3, loha, lokr; another PEFT tuner: its class name, shortened."""
    from peft.tuners.ia3.layer import IA3Layer
    from peft.tuners.loha.layer import LoHaLayer
    from peft.tuners.lokr.layer import LoKrLayer
    from peft.tuners.lora.layer import LoraLayer
    from peft.tuners.vera.layer import VeraLayer

    for cls, kind in ((LoraLayer, "lora"), (VeraLayer, "vera"), (IA3Layer, "ia3"), (LoHaLayer, "loha"), (LoKrLayer, "lokr")):
        if isinstance(layer, cls):
            return kind
    for base in type(layer).__mro__:
        if base.__name__.endswith("Layer") and base.__name__ != "BaseTunerLayer" and base.__module__.startswith("peft."):
            return base.__name__[: -len("Layer")].lower()
    return type(layer).__name__.lower()


def tuner_sites(model: torch.nn.Module, layers_path: str) -> list[TunerSite]:
    """Every PEFT tuner layer of ``model`` (none if PEFT is not installed or not used)."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # pragma: no cover - peft is a core dependency; kept for a minimal install
        return []
    from lor2c_probe.blocks import layer_of

    found = [(path, module, layer_of(path, layers_path)) for path, module in model.named_modules() if isinstance(module, BaseTunerLayer)]
    # Short names (q, v, c_attn) where the leaf is unique in its block; else the path inside the block (BERT's IA3
    # adapts attention.output.dense and output.dense, whose leaves are both "dense").
    leaves: dict[tuple[int | None, str], int] = {}
    for path, _, layer in found:
        leaf = path.rsplit(".", 1)[-1]
        leaves[(layer, leaf)] = leaves.get((layer, leaf), 0) + 1
    out = []
    for path, module, layer in found:
        leaf = path.rsplit(".", 1)[-1]
        inside = re.split(rf"(?:^|\.){re.escape(layers_path)}\.\d+\.", path)[-1] if layer is not None else path
        proj = SHORT.get(leaf, leaf) if leaves[(layer, leaf)] == 1 else inside
        out.append(TunerSite(path, tuner_kind(module), layer, proj))
    return out


def roles_of(model: torch.nn.Module, names: list[str], layers_path: str | None) -> Placement:
    """``place`` inside the block stack at ``layers_path``; by names alone (``classify``) when there is none."""
    if layers_path is None:
        return Placement(roles={n: classify(n) for n in names})
    return place(model, names, layers_path)


def place(model: torch.nn.Module, names: list[str], layers_path: str) -> Placement:
    """Roles of the named (selected, trainable) tensors of ``model``."""
    owner: dict[str, tuple[TunerSite, str]] = {}
    for site in tuner_sites(model, layers_path):
        for local, _ in model.get_submodule(site.path).named_parameters():
            if not local.startswith("base_layer."):
                owner[f"{site.path}.{local}"] = (site, local.split(".", 1)[0])
    out = Placement()
    for name in names:
        role = classify(name)
        if role.kind in ("lor2c", "lor2c-shared", "reslora"):  # lor2c-probe's own modules, named by this package
            out.roles[name] = role
        elif name in owner:
            site, attr = owner[name]
            factor = FACTORS.get(attr, attr)
            if site.layer is None:
                out.unplaced[name] = f"its {site.kind} layer {site.path} is outside the block stack {layers_path}"
                out.roles[name] = ParamRole(UNPLACED + name, -1, factor, site.kind, -1, site.proj, site.path)
            else:
                out.roles[name] = ParamRole(f"{site.kind}.{site.layer}", site.layer, factor, site.kind, site.layer, site.proj, site.path)
        else:
            why = "a head tensor" if is_head(name) else "not in any PEFT tuner layer or lor2c-probe module (a trainable base-model tensor)"
            out.unplaced[name] = why
            out.roles[name] = ParamRole(UNPLACED + name, -1, "all")
    return out
