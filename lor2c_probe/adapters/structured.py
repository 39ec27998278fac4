"""MergeLoR2C, InjectLoR2C and IMLoR2C: LoR2C whose structure changes during training (lor2c_probe.structure).

Inject-capable methods also carry a dormant LoRA of rank r/2 on q and v of every block (frozen, B = 0, so
it contributes nothing), registered with the optimizer from the start; an injection switches one block's on.
Parameter counts here are at the start of training; each merge removes 2rd, an injection is neutral.
"""

from __future__ import annotations

from torch import nn

from lor2c_probe.adapters.base import ArchShape
from lor2c_probe.adapters.lora import targets
from lor2c_probe.adapters.lor2c import Lor2cMethod
from lor2c_probe.adapters.share_lor2c import ShareLor2cMethod
from lor2c_probe.config import AdapterConfig
from lor2c_probe.errors import ConfigError
from lor2c_probe.models import Backbone


class MergeLor2cMethod(Lor2cMethod):
    name = "merge-lor2c"


class InjectLor2cMethod(Lor2cMethod):
    name = "inject-lor2c"

    residual = Lor2cMethod  # the LoR2C flavour underneath (ShareLoR2C for im-share-lor2c)

    def attach(self, model: nn.Module, backbone: Backbone, cfg: AdapterConfig) -> nn.Module:
        import warnings

        from peft import LoraConfig, get_peft_model

        if cfg.rank % 2:
            raise ConfigError(f"injection replaces a rank-r module by LoRA of rank r/2, so rank must be even; got {cfg.rank}")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            peft_model = get_peft_model(model, LoraConfig(r=cfg.rank // 2, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets(backbone), bias="none"))
        inner = peft_model.base_model.model
        self.residual().attach(inner, backbone, cfg)  # freezes everything (the LoRA too: dormant), adds the bank, unfreezes the head
        return peft_model


class ImLor2cMethod(InjectLor2cMethod):
    name = "im-lor2c"


class ImShareLor2cMethod(ImLor2cMethod):
    """ShareLoR2C (one A for all blocks) with merges and injections: every block is scored from B_i A_shared;
    a merge keeps the shared A and the survivor's B; an injection removes that block's B."""

    name = "im-share-lor2c"
    residual = ShareLor2cMethod

    def count_params(self, shape: ArchShape, cfg: AdapterConfig) -> int:
        return ShareLor2cMethod().count_params(shape, cfg)

    def merge_saving(self, shape: ArchShape, cfg: AdapterConfig) -> int:
        """A merge removes one module's B (d x r); the shared A stays."""
        return cfg.rank * shape.hidden_size


def _count(self, shape: ArchShape, cfg: AdapterConfig) -> int:
    return 2 * cfg.rank * shape.hidden_size * shape.num_layers


def _merge_saving(self, shape: ArchShape, cfg: AdapterConfig) -> int:
    """A merge removes one module: its A (r x d) and B (d x r)."""
    return 2 * cfg.rank * shape.hidden_size


for _cls in (MergeLor2cMethod, InjectLor2cMethod, ImLor2cMethod):
    _cls.count_params = _count
    _cls.merge_saving = _merge_saving
