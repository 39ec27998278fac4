"""LoR2C: a rank-r residual connection across each transformer block (paper Eq. 1)."""

from __future__ import annotations

from torch import nn

from lor2c_probe.adapters.base import ArchShape
from lor2c_probe.adapters.residual import LowRankPath, ResidualBank, attach_bank
from lor2c_probe.config import AdapterConfig
from lor2c_probe.models import Backbone


class Lor2cMethod:
    name = "lor2c"

    def attach(self, model: nn.Module, backbone: Backbone, cfg: AdapterConfig) -> nn.Module:
        bank = ResidualBank(scaling=cfg.scaling, dropout=cfg.dropout)
        for i in range(backbone.num_layers):
            bank.add_path(LowRankPath(i, i, backbone.hidden_size, cfg.rank))
        return attach_bank(model, backbone, bank)

    def count_params(self, shape: ArchShape, cfg: AdapterConfig) -> int:
        return 2 * cfg.rank * shape.hidden_size * shape.num_layers  # A (r x d) + B (d x r) per block
