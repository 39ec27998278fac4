"""The end of a backward pass, as a point frameworks do not expose: after autograd's last gradient and after DDP's
reducer wrote the averaged gradients into ``.grad``.

A post-accumulate-grad hook on the trainable parameters queues an autograd-engine callback once per backward; that
callback queues a second one. Final callbacks run in queue order, and DDP queues its finalisation during the
backward (when its last bucket is ready), so the second callback runs after it: the gradients it sees are the ones
the optimizer will see, before any clipping.
"""

from __future__ import annotations

from typing import Any, Callable

import torch


class BackwardEnd:
    """Calls ``fn()`` once at the end of every backward pass that reaches ``params``."""

    def __init__(self, params: list[torch.nn.Parameter], fn: Callable[[], None]) -> None:
        self.fn = fn
        self._queued = False
        self._handles: list[Any] = [p.register_post_accumulate_grad_hook(self._hook) for p in params if p.requires_grad]

    def _hook(self, p: torch.Tensor) -> None:
        if self._queued:
            return
        self._queued = True
        engine = torch.autograd.Variable._execution_engine
        engine.queue_callback(lambda: engine.queue_callback(self._fire))

    def _fire(self) -> None:
        self._queued = False
        self.fn()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
