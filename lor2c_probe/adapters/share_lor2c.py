"""ShareLoR2C: one down-projection A shared by every block, a private up-projection B per block."""

from __future__ import annotations

import math

import torch
from torch import nn

from lor2c_probe.adapters.base import ArchShape
from lor2c_probe.adapters.residual import ResidualBank, SharedALowRankPath, attach_bank
from lor2c_probe.config import AdapterConfig
from lor2c_probe.models import Backbone


class ShareLor2cMethod:
    name = "share-lor2c"

    def attach(self, model: nn.Module, backbone: Backbone, cfg: AdapterConfig) -> nn.Module:
        bank = ResidualBank(scaling=cfg.scaling, dropout=cfg.dropout)
        # One tensor, so the gradients of all L uses accumulate into it; named lor2c.shared_A.
        bank.shared_A = nn.Parameter(torch.empty(cfg.rank, backbone.hidden_size, dtype=torch.float32))
        nn.init.kaiming_uniform_(bank.shared_A, a=math.sqrt(5))
        for i in range(backbone.num_layers):
            bank.add_path(SharedALowRankPath(i, i, backbone.hidden_size, cfg.rank))
        return attach_bank(model, backbone, bank)

    def count_params(self, shape: ArchShape, cfg: AdapterConfig) -> int:
        return (shape.num_layers + 1) * cfg.rank * shape.hidden_size  # L private B + one shared A
