"""A toy method, a toy probe and a toy report section, registered from the tests folder (docs/extending.md walks
through the same three): LoR2C on the top block only; the L2 norm of every trainable adapter tensor per step; a
section drawing that norm over training."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import torch

from lor2c_probe.adapters.base import ArchShape
from lor2c_probe.adapters.residual import LowRankPath, ResidualBank, attach_bank
from lor2c_probe.record.naming import classify
from lor2c_probe.train.hooks import TrainerCallback, TrainState

TABLE = pa.schema([("step", pa.int64()), ("epoch", pa.int64()), ("value", pa.float64())])


class TopOnlyMethod:
    """LoR2C across the last block only: 2 r d parameters."""

    name = "toy-top"

    def attach(self, model: torch.nn.Module, backbone: Any, cfg: Any) -> torch.nn.Module:
        bank = ResidualBank(scaling=cfg.scaling, dropout=cfg.dropout)
        top = backbone.num_layers - 1
        bank.add_path(LowRankPath(top, top, backbone.hidden_size, cfg.rank))
        return attach_bank(model, backbone, bank)

    def count_params(self, shape: ArchShape, cfg: Any) -> int:
        return 2 * cfg.rank * shape.hidden_size


class AdapterNormProbe(TrainerCallback):
    """||theta|| over every trainable adapter tensor after each step: reduced on the device, copied once per flush."""

    def __init__(self) -> None:
        self._pending: list[tuple[int, int, torch.Tensor]] = []

    def on_step_end(self, state: TrainState) -> None:
        params = [p for n, p in state.model.named_parameters() if p.requires_grad and classify(n).adapter]
        self._pending.append((state.step, state.epoch, torch.linalg.vector_norm(torch.stack([p.detach().norm() for p in params]))))

    def on_flush(self, state: TrainState) -> None:
        if self._pending:
            values = torch.stack([v for *_, v in self._pending]).tolist()
            state.record("toy_norms", [{"step": s, "epoch": e, "value": v} for (s, e, _), v in zip(self._pending, values)])
            self._pending.clear()

    def manifest_entry(self) -> dict[str, Any]:
        return {"name": "toy-norms", "table": "toy_norms"}


def build(ctx: Any) -> AdapterNormProbe:
    return AdapterNormProbe()


def norm_section(runs: list[Any], opts: Any = None) -> Any:
    import matplotlib.pyplot as plt

    from lor2c_probe.report.sections import Fig, Section

    s = Section("toy_norms", "Adapter norm over training (toy section)")
    with_table = [r for r in runs if r.has("toy_norms")]
    if not with_table:
        s.note = "no run recorded the toy-norms probe"
        return s

    def draw() -> Any:
        fig, ax = plt.subplots(figsize=(6, 3))
        for r in with_table:
            t = r.table("toy_norms")
            ax.plot(t.step, t.value, label=r.label)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("||adapter||")
        ax.legend()
        return fig

    s.blocks.append(Fig("toy_norms", "L2 norm of all trainable adapter tensors after each step.", draw))
    return s
