"""What every training loop that records shares: the probes called at the loop points, and the step's scalars.

The built-in loop (``train.loop.Trainer``) and ``lor2c_probe.Recorder`` (any other loop, and the HF Trainer and
Lightning integrations over it) both drive a ``ProbeDriver``: they differ only in how they learn where a step is.
Scalars are kept as they come (device tensors or floats) and moved to the host in one transfer per flush.
"""

from __future__ import annotations

from typing import Any

import torch

from lor2c_probe.train.hooks import TrainerCallback, TrainState


class ProbeDriver:
    def __init__(self, state: TrainState, callbacks: list[TrainerCallback], store: Any) -> None:
        self.state, self.callbacks, self.store = state, callbacks, store
        self._scalars: list[tuple[int, int, str, str, Any]] = []

    def emit(self, point: str) -> None:
        """Call ``point`` (a ``TrainerCallback`` method name) on every callback, in order."""
        for cb in self.callbacks:
            getattr(cb, point)(self.state)

    def scalar(self, split: str, name: str, value: Any, step: int | None = None, epoch: int | None = None) -> None:
        """Queue one ``metrics`` row (at the current step and epoch unless given)."""
        st = self.state
        self._scalars.append((st.step if step is None else step, st.epoch if epoch is None else epoch, split, name, value))

    def hand_over(self) -> list[dict[str, Any]]:
        """Before a write: every callback hands its rows to the store (``on_flush``), then the queued scalars go as
        ``metrics`` rows (one host transfer for all tensor values). Returns those rows."""
        self.emit("on_flush")
        if not self._scalars:
            return []
        tensors = [v.detach().float().reshape(()).to(self.state.device) for *_, v in self._scalars if torch.is_tensor(v)]
        host = iter(torch.stack(tensors).tolist()) if tensors else iter(())
        rows = []
        for step, epoch, split, name, v in self._scalars:
            value = next(host) if torch.is_tensor(v) else float(v)
            rows.append({"step": step, "epoch": epoch, "split": split, "name": name, "value": value})
        self.store.append("metrics", rows)
        self._scalars.clear()
        return rows

    def manifest_entries(self) -> list[dict[str, Any]]:
        return [e for cb in self.callbacks if (e := cb.manifest_entry()) is not None]
