"""Full-rank residual: LoR2C's path with a dense trainable d x d map (the experiment behind paper Fig. 2)."""

from __future__ import annotations

from torch import nn

from lor2c_probe.adapters.base import ArchShape
from lor2c_probe.adapters.residual import DensePath, ResidualBank, attach_bank
from lor2c_probe.config import AdapterConfig
from lor2c_probe.models import Backbone


class FullRankResidualMethod:
    name = "full-rank-residual"

    def attach(self, model: nn.Module, backbone: Backbone, cfg: AdapterConfig) -> nn.Module:
        # Same scaling s = alpha / r and dropout as LoR2C, so only the rank constraint differs.
        bank = ResidualBank(scaling=cfg.scaling, dropout=cfg.dropout)
        for i in range(backbone.num_layers):
            bank.add_path(DensePath(i, i, backbone.hidden_size))
        return attach_bank(model, backbone, bank)

    def count_params(self, shape: ArchShape, cfg: AdapterConfig) -> int:
        return shape.hidden_size**2 * shape.num_layers
