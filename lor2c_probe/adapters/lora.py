"""LoRA through PEFT: kept as an import path; the method lives with the other PEFT methods (peft_family.py)."""

from __future__ import annotations

from lor2c_probe.adapters.peft_family import LoraMethod
from lor2c_probe.models import Backbone

__all__ = ["LoraMethod", "targets"]


def targets(backbone: Backbone) -> list[str]:
    """The LoRA family's target modules: PEFT's default for the model type, or --target-modules."""
    if not backbone.targets:
        from lor2c_probe.errors import UserError

        raise UserError(f"PEFT has no default LoRA target modules for {backbone.model_type!r}: pass --target-modules NAMES")
    return list(backbone.targets)
