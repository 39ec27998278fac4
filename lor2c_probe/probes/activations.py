"""Gradient with respect to the hidden state entering each block: the direct measure of vanishing gradients.

For every block i it records ``l2`` = ||dL/dh_i|| over all tokens of the optimizer step (micro-batches
combined: sqrt of the summed squares) and ``mean_abs`` = mean |dL/dh_i| over non-pad token elements,
plus layer L = the encoder output (the head's input), so ``l2[0] / l2[L]`` is the end-to-end attenuation.
dL/dh_i is the total gradient of h_i, through the block and through any residual path that reads it.
With frozen embeddings h_0 does not require grad, and training never needs dL/dh_0: for LoR2C the
backward pass does not even enter block 0. To measure it the probe makes h_0 a leaf that requires grad,
which costs block 0's backward (about 1/L of the stack's); so it does that only on every
``bottom_every``-th recorded step (default 10). Layer 0 then has fewer samples per epoch, not biased
ones. A layer that was not measured at a step has no row for that step (never a 0).

Mechanics: a forward pre-hook on each block (and a forward hook on the last) registers a tensor hook on
the hidden state when the step is scheduled and gradients are on; the attention mask is read from the
model call's keyword arguments. Works for any method, and inside a Hugging Face Trainer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from lor2c_probe.probes.schedule import Every
from lor2c_probe.train import distributed
from lor2c_probe.train.hooks import TrainerCallback, TrainState


def _get(model: torch.nn.Module, dotted: str) -> Any:
    obj = model
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def find_block_stack(model: torch.nn.Module, layers_path: str) -> torch.nn.ModuleList:
    """The blocks at ``layers_path``, also through a PEFT wrapper (base_model.model.<path>)."""
    for prefix in ("", "base_model.model."):
        try:
            return _get(model, prefix + layers_path)
        except AttributeError:
            continue
    raise ValueError(f"activation probe: no block stack at {layers_path!r} in {type(model).__name__}")


if TYPE_CHECKING:
    from lor2c_probe.probes import ProbeContext


class ActivationGradProbe(TrainerCallback):
    """||dL/dh_i|| and mean |dL/dh_i| per block input (and the encoder output), per optimizer step."""

    def __init__(self, layers_path: str, *, schedule: Every = Every(1), bottom_every: int = 10) -> None:
        if bottom_every <= 0:
            raise ValueError(f"bottom_every must be a positive integer; got {bottom_every}")
        self.layers_path = layers_path
        self.schedule = schedule
        self.bottom_every = bottom_every
        self._force_leaf = False
        self._handles: list[Any] = []
        self._armed = False
        self._mask: torch.Tensor | None = None
        self._acc: torch.Tensor | None = None  # (L + 1, 3): sum g^2, sum |g| on non-pad, non-pad elements
        self._pending: list[tuple[int, int, torch.Tensor]] = []

    # -- hooks ---------------------------------------------------------------------------------------
    def attach(self, model: torch.nn.Module) -> None:
        self.detach()
        blocks = find_block_stack(model, self.layers_path)
        self.num_layers = len(blocks)
        self._handles.append(model.register_forward_pre_hook(self._capture_mask, with_kwargs=True))
        for i, block in enumerate(blocks):
            self._handles.append(block.register_forward_pre_hook(self._input_hook(i), with_kwargs=True))
        self._handles.append(blocks[-1].register_forward_hook(self._output_hook(len(blocks))))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _capture_mask(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        self._mask = kwargs.get("attention_mask")

    def _active(self) -> bool:
        return self._armed and torch.is_grad_enabled()

    def _watch(self, h: torch.Tensor, layer: int) -> None:
        if not (self._active() and h.requires_grad):
            return
        mask = self._mask

        def hook(g: torch.Tensor) -> None:  # g: (batch, seq, d)
            g = g.float()
            tok = g.abs().sum(-1)  # (batch, seq)
            if mask is not None and mask.shape == tok.shape:
                m = mask.to(tok.dtype)
                vals = torch.stack([g.pow(2).sum(), (tok * m).sum(), m.sum() * g.shape[-1]])
            else:
                vals = torch.stack([g.pow(2).sum(), tok.sum(), torch.full((), float(g.numel()), device=g.device)])  # a fill, no host copy
            if self._acc is None:
                self._acc = torch.zeros(self.num_layers + 1, 3, device=g.device)
            self._acc[layer] += vals.to(self._acc.device)

        h.register_hook(hook)

    def _input_hook(self, layer: int):
        def pre(module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
            h = args[0] if args else kwargs["hidden_states"]
            if self._active() and not h.requires_grad and self._force_leaf:
                # Frozen embeddings: autograd would never form dL/dh_0. Make the block input a leaf that
                # requires grad (costs the input-gradient matmuls of this one block).
                h = h.detach().requires_grad_(True)
                self._watch(h, layer)
                return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})
            self._watch(h, layer)
            return None

        return pre

    def _output_hook(self, layer: int):
        def post(module: torch.nn.Module, args: tuple, output: Any) -> None:
            self._watch(output[0] if isinstance(output, tuple) else output, layer)

        return post

    # -- loop points -------------------------------------------------------------------------------------
    def on_train_start(self, state: TrainState) -> None:
        if not self._handles:
            self.attach(state.model)

    def on_step_begin(self, state: TrainState) -> None:
        if not self._handles:  # resumed runs skip on_train_start
            self.attach(state.model)
        step = state.step + 1
        self._armed = self.schedule(step)
        self._force_leaf = self._armed and (step // self.schedule.n) % self.bottom_every == 0
        self._acc = None
        if self._armed and distributed.enabled():  # every rank must bring a tensor to the all-reduce
            self._acc = torch.zeros(self.num_layers + 1, 3, device=next(state.model.parameters()).device)

    def before_clip(self, state: TrainState) -> None:
        if self._armed and self._acc is not None:
            acc = self._acc
            if distributed.enabled():  # sum the ranks' parts of the global batch
                acc = distributed.all_reduce_sum_(acc)
            # Each rank's gradients are grad_scale times the global loss's (DDP averaging) and carry AMP's loss scale:
            # squares scale by k^2, |g| by k.
            k = float(getattr(state, "grad_scale", 1.0)) * getattr(state, "loss_scale", 1.0)
            if not (isinstance(k, float) and k == 1.0):
                acc[:, 0] /= k * k
                acc[:, 1] /= k
            self._pending.append((state.step + 1, state.epoch, acc))
        self._armed, self._acc = False, None

    def on_flush(self, state: TrainState) -> None:
        if not self._pending:
            return
        host = torch.stack([t for *_, t in self._pending]).cpu().numpy()  # one transfer: (steps, L+1, 3)
        rows = []
        for (step, epoch, _), h in zip(self._pending, host):
            for layer, (sq, ab, n) in enumerate(h):
                if n == 0:  # not measured at this step (h_0 between bottom_every steps)
                    continue
                rows.append({"step": step, "epoch": epoch, "layer": layer, "stat": "l2", "value": float(sq) ** 0.5})
                rows.append({"step": step, "epoch": epoch, "layer": layer, "stat": "mean_abs", "value": float(ab / n)})
        self._pending.clear()
        state.record("activation_grads", rows)

    def on_train_end(self, state: TrainState) -> None:
        self.detach()

    def manifest_entry(self) -> dict[str, Any]:
        return {
            "name": "activation_gradients",
            "table": "activation_grads",
            "reads_at": "backward, via tensor hooks on each block's input hidden state; layer L = encoder output",
            "layers_path": self.layers_path,
            "schedule": self.schedule.to_dict(),
            "block0_input_every": f"every {self.bottom_every}th recorded step (forcing dL/dh_0 costs block 0's backward)",
            "stats": ["l2", "mean_abs"],
        }


def build(ctx: ProbeContext) -> ActivationGradProbe:
    """The registry's factory: dL/dh_i at the input of every block of the stack."""
    return ActivationGradProbe(ctx.layers_path, schedule=ctx.schedule(), bottom_every=ctx.bottom_every)
