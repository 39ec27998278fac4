"""The shapes parameter formulas read, taken from a model (any device, meta included) with PEFT's target matching."""

from __future__ import annotations

from typing import Any

from lor2c_probe.adapters.base import ArchShape, Target
from lor2c_probe.models import Backbone, find_layers


def _matches(name: str, keys: tuple[str, ...]) -> bool:
    """PEFT's rule for a list of target names: the module's name is the key or ends with ``.key``."""
    return any(name == k or name.endswith("." + k) for k in keys)


def _fans(module: Any) -> tuple[int, int] | None:
    """(in, out) of a Linear, or of transformers' Conv1D (GPT-2; weight stored (in, out))."""
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return int(module.in_features), int(module.out_features)
    if type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None:
        return int(module.weight.shape[0]), int(module.weight.shape[1])
    return None


def block_targets(block: Any, keys: tuple[str, ...], feedforward: tuple[str, ...] = ()) -> tuple[Target, ...]:
    """The layers of one block that ``keys`` select, with their fans."""
    out = []
    for name, module in block.named_modules():
        if name and _matches(name, keys) and (fans := _fans(module)) is not None:
            out.append(Target(name, *fans, feedforward=_matches(name, feedforward)))
    return tuple(out)


def ia3_keys(model_type: str, user_targets: tuple[str, ...] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(targets, feed-forward targets) IA3 uses: PEFT's defaults, or the user's targets with none feed-forward."""
    if user_targets:
        return tuple(user_targets), ()
    from peft.utils.constants import (TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FF,
                                      TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as IA3)

    return tuple(IA3.get(model_type, ())), tuple(FF.get(model_type, ()))


def shape_of(model: Any, bb: Backbone, name: str, user_targets: tuple[str, ...] | None = None) -> ArchShape:
    """ArchShape of a (task) model: d, depth, and the per-block targets of the LoRA family and of IA3."""
    _, layers = find_layers(model, bb.layers_path)
    block = layers[0]
    lora = block_targets(block, tuple(bb.targets))
    ia3 = block_targets(block, *ia3_keys(bb.model_type, user_targets))
    q = lora[0] if lora else Target("q", bb.hidden_size, bb.hidden_size)
    v = lora[-1] if lora else q
    return ArchShape(name, bb.hidden_size, bb.num_layers, q.fan_in, q.fan_out, v.fan_in, v.fan_out, targets={"lora": lora, "ia3": ia3})
