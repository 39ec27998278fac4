"""The end of a backward pass, as a point frameworks do not expose: after autograd's last gradient and after DDP's
reducer wrote the averaged gradients into ``.grad``.

A hook on the training forward's output (its ``loss``, and its ``logits`` in case the loss is recomputed from them)
fires when the backward starts, inside the outermost backward (a parameter's hook would fire inside the nested
backward a reentrant gradient checkpoint runs); it queues an autograd-engine callback, which queues a second one.
Final callbacks run in queue order, and DDP queues its finalisation during the backward (when its last bucket is
ready), so the second callback runs after it: the gradients it sees are the ones the optimizer will see, before any
clipping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import torch


class BackwardEnd:
    """Calls ``fn()`` once at the end of every backward pass through a watched output."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self._queued = False

    def watch(self, output: Any) -> None:
        """Hook the loss and logits of one training forward's output (a ModelOutput or a dict)."""
        for key in ("loss", "logits"):
            t = output.get(key) if isinstance(output, Mapping) else getattr(output, key, None)
            if torch.is_tensor(t) and t.requires_grad:
                t.register_hook(self._hook)

    def _hook(self, grad: torch.Tensor) -> None:
        if not self._queued:
            self._queued = True
            engine = torch.autograd.Variable._execution_engine
            engine.queue_callback(lambda: engine.queue_callback(self._fire))

    def _fire(self) -> None:
        self._queued = False
        self.fn()
