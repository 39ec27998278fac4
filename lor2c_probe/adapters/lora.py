"""LoRA on the query and value projections, through PEFT (the baseline every comparison uses)."""

from __future__ import annotations

import warnings

from torch import nn

from lor2c_probe.adapters.base import ArchShape
from lor2c_probe.config import AdapterConfig
from lor2c_probe.models import Backbone


def targets(backbone: Backbone) -> list[str]:
    """The q and v projections of the family: ``query``/``value`` (BERT, RoBERTa), ``q_proj``/``v_proj`` (LLaMA-style)."""
    return [backbone.q_name, backbone.v_name]


class LoraMethod:
    name = "lora"

    def attach(self, model: nn.Module, backbone: Backbone, cfg: AdapterConfig) -> nn.Module:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=cfg.rank,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=targets(backbone),
            bias="none",
            # SEQ_CLS wraps the classifier head as a trainable copy (modules_to_save); a causal LM's head stays frozen.
            task_type="CAUSAL_LM" if backbone.causal else "SEQ_CLS",
        )
        with warnings.catch_warnings():
            # PEFT calls transformers' deprecated is_gradient_checkpointing; harmless, and not the user's to fix.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return get_peft_model(model, config)

    def count_params(self, shape: ArchShape, cfg: AdapterConfig) -> int:
        per_layer = cfg.rank * (shape.q_in + shape.q_out) + cfg.rank * (shape.v_in + shape.v_out)
        return per_layer * shape.num_layers
