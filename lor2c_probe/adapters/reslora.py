"""ResLoRA (reference-notes.md §12): LoRA on q and v with residual paths inside the adapters, folded away for inference.

With x_l the input of projection t in layer l, D dropout, s = alpha / r and p = ``pre_num`` (training time, §12.2):

- ``is`` (input shortcut):  y_l = W_l x_l + s B_l A_l D(x_l + x_{l-1}),  x_{-1} := x_0
- ``bs`` (block shortcut):  y_l = W_l x_l + sum_{k=0}^{min(p,l)} s B_{l-k} A_{l-k} D_k(x_l)   (own mask per term)
- ``ms`` (middle shortcut): y_l = W_l x_l + s B_l [A_l D(x_l) + sum_{k=1}^{min(p,l)} A_{l-k} D(x_{l-k})]

x_{l-1} and A_{l-k} D(x_{l-k}) are the live tensors of the same forward, so gradients flow into earlier layers
through them. All adapters live in one ``ResLoraBank`` (``model.reslora``; names ``reslora.<t>.<l>.<A|B>``): no
layer holds another as a child, and no frozen weight is ever touched. ``fold`` (§12.3) turns the extra paths
into plain per-layer LoRA factors for inference; ``bank.use(folded)`` evaluates with them.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lor2c_probe.adapters.base import ArchShape
from lor2c_probe.adapters.residual import unfreeze_head
from lor2c_probe.config import AdapterConfig
from lor2c_probe.errors import ConfigError
from lor2c_probe.models import Backbone

BANK_ATTR = "reslora"
TYPES = ("q", "v")
_DECODER = {"q": "self_attn.q_proj", "v": "self_attn.v_proj"}
TARGETS = {"bert": {"q": "attention.self.query", "v": "attention.self.value"},
           "roberta": {"q": "attention.self.query", "v": "attention.self.value"},
           "llama": _DECODER, "mistral": _DECODER, "qwen2": _DECODER}
WINDOW = 100  # forwards averaged for the norm statistics (the reference's merge_4_len)
# Which folds each variant offers, named by what they estimate (not by the reference's flag numbers).
ESTIMATORS = {"is": ("input-norm", "weight-norm"), "bs": ("exact",), "ms": ("input-norm", "activation-norm")}


class LoraFactor(nn.Module):
    """A (r x in) Kaiming-uniform, B (out x r) zeros, fp32: the adapter of one projection in one layer."""

    def __init__(self, d_in: int, d_out: int, rank: int) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.empty(rank, d_in, dtype=torch.float32))
        self.B = nn.Parameter(torch.zeros(d_out, rank, dtype=torch.float32))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))


@dataclass(frozen=True)
class Folded:
    """Per (type, layer) plain LoRA factors (B_eff: out x R, A_eff: R x in), already scaled by s; R may exceed r."""

    estimator: str
    factors: dict[tuple[str, int], tuple[Tensor, Tensor]]


class ResLoraBank(nn.Module):
    def __init__(self, variant: str, num_layers: int, shapes: dict[str, tuple[int, int]], *, rank: int, scaling: float,
                 dropout: float, pre_num: int) -> None:
        super().__init__()
        if variant not in ESTIMATORS:
            raise ValueError(f"ResLoRA variant must be one of {', '.join(ESTIMATORS)}; got {variant!r}")
        self.variant, self.num_layers, self.scaling = variant, num_layers, float(scaling)
        self.pre_num = num_layers if pre_num < 0 else pre_num  # -1: every earlier layer
        self.p_drop = float(dropout)
        self.adapters = nn.ModuleDict({t: nn.ModuleList(LoraFactor(*shapes[t], rank) for _ in range(num_layers)) for t in TYPES})
        # Running Frobenius norms of x_l and of the middle activation A_l D(x_l) over the last WINDOW training forwards.
        self.register_buffer("norm_x", torch.zeros(len(TYPES), num_layers, WINDOW))
        self.register_buffer("norm_mid", torch.zeros(len(TYPES), num_layers, WINDOW))
        self._count = [[0] * num_layers for _ in TYPES]  # training forwards recorded per (type, layer)
        self._ctx: dict[str, dict[int, tuple[Tensor, Tensor]]] = {t: {} for t in TYPES}  # per forward: l -> (x_l, mid_l)
        self._handles: list[Any] = []
        self.folded: Folded | None = None

    # -- hooks -------------------------------------------------------------------------------------------------
    def attach_to(self, layers: nn.ModuleList, paths: dict[str, str]) -> None:
        self.detach()
        self._handles.append(layers[0].register_forward_pre_hook(lambda *_: self._clear()))
        for layer in range(self.num_layers):
            for t in TYPES:
                target = layers[layer].get_submodule(paths[t])
                self._handles.append(target.register_forward_hook(self._hook(t, layer)))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _clear(self) -> None:
        for t in TYPES:
            self._ctx[t].clear()

    def use(self, folded: Folded | None) -> None:
        """Evaluate with folded factors (None: back to the training-time paths)."""
        self.folded = folded

    def _drop(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p_drop, self.training) if self.p_drop > 0 else x

    def _hook(self, t: str, layer: int):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
            x = args[0].to(torch.float32)  # (batch, seq, d_in)
            delta = self.delta(t, layer, x)
            return output + delta.to(output.dtype)

        return hook

    def delta(self, t: str, layer: int, x: Tensor) -> Tensor:
        """The adapter term added to projection t of ``layer``; records x_l and the middle activation."""
        if self.folded is not None:
            B, A = self.folded.factors[(t, layer)]
            return F.linear(F.linear(x, A), B)
        ad, s = self.adapters[t], self.scaling
        first = max(0, layer - self.pre_num)
        if self.variant == "is":
            prev = self._ctx[t][layer - 1][0] if layer > 0 else x
            mid = F.linear(self._drop(x + prev), ad[layer].A)
            out = s * F.linear(mid, ad[layer].B)
        elif self.variant == "bs":
            mid = F.linear(self._drop(x), ad[layer].A)
            out = F.linear(mid, ad[layer].B)
            for k in range(first, layer):
                out = out + F.linear(F.linear(self._drop(x), ad[k].A), ad[k].B)
            out = s * out
        else:  # ms
            mid = F.linear(self._drop(x), ad[layer].A)
            total = mid
            for k in range(first, layer):
                total = total + self._ctx[t][k][1]
            out = s * F.linear(total, ad[layer].B)
        self._ctx[t][layer] = (x, mid)
        if self.training:
            self._record(t, layer, x, mid)
        return out

    @torch.no_grad()
    def _record(self, t: str, layer: int, x: Tensor, mid: Tensor) -> None:
        # The ring-buffer slot comes from a host-side counter, so recording never synchronises with the device.
        ti = TYPES.index(t)
        slot = self._count[ti][layer] % WINDOW
        self.norm_x[ti, layer, slot] = torch.linalg.vector_norm(x)
        self.norm_mid[ti, layer, slot] = torch.linalg.vector_norm(mid)
        self._count[ti][layer] += 1

    # -- statistics and folding ------------------------------------------------------------------------------------
    def mean_norms(self) -> tuple[Tensor, Tensor]:
        """(n_bar, m_bar): mean over the recorded window of ||x_l||_F and ||A_l D(x_l)||_F, shape (types, layers)."""
        denom = torch.tensor(self._count, dtype=self.norm_x.dtype, device=self.norm_x.device).clamp(min=1, max=WINDOW)
        return self.norm_x.sum(-1) / denom, self.norm_mid.sum(-1) / denom


def _ratio(num: float, den: float) -> float:
    """Norm ratio with the reference's fallback: 1 when the denominator is 0 (or no statistics exist)."""
    return num / den if den > 0 and num > 0 else 1.0


@torch.no_grad()
def fold(bank: ResLoraBank, estimator: str, weights: dict[tuple[str, int], Tensor] | None = None) -> Folded:
    """Fold the extra paths into plain per-layer LoRA factors (§12.3), never touching a frozen weight.

    - ``exact`` (bs): s * sum_{k} B_{l-k} A_{l-k}, stacked as one rank-(k+1)r factor pair. Equal to training-time eval.
    - ``input-norm``: is: (1 + n_{l-1}/n_l) s B_l A_l (x_{l-1} taken as that multiple of x_l);
      ms: s B_l (A_l + sum_k (n_{l-k}/n_l) A_{l-k}).
    - ``activation-norm`` (ms): (1 + sum_k m_{l-k}/m_l) s B_l A_l.
    - ``weight-norm`` (is): (1 + f_{l-2}/f_{l-1}) s B_l A_l with f_l = ||W_l + s B_l A_l||_F (1 for l < 2);
      needs ``weights``: the frozen W of each (type, layer).
    """
    if estimator not in ESTIMATORS[bank.variant]:
        raise ValueError(f"reslora-{bank.variant} folds with {', '.join(ESTIMATORS[bank.variant])}; got {estimator!r}")
    n_bar, m_bar = (v.tolist() for v in bank.mean_norms())
    s, out = bank.scaling, {}
    for ti, t in enumerate(TYPES):
        ad = bank.adapters[t]
        f = None
        if estimator == "weight-norm":
            if weights is None:
                raise ValueError("the weight-norm fold needs the frozen weights of each projection")
            f = [float(torch.linalg.matrix_norm(weights[(t, l)].float() + s * ad[l].B @ ad[l].A)) for l in range(bank.num_layers)]
        for l in range(bank.num_layers):
            ks = list(range(max(0, l - bank.pre_num), l))
            A_l, B_l = ad[l].A.detach().clone(), ad[l].B.detach().clone()
            if estimator == "exact":
                A = torch.cat([A_l] + [ad[k].A.detach() for k in reversed(ks)], dim=0)
                B = torch.cat([B_l] + [ad[k].B.detach() for k in reversed(ks)], dim=1)
                out[(t, l)] = (s * B, A)
            elif estimator == "input-norm" and bank.variant == "ms":
                A = A_l + sum((_ratio(n_bar[ti][k], n_bar[ti][l]) * ad[k].A.detach() for k in ks), torch.zeros_like(A_l))
                out[(t, l)] = (s * B_l, A)
            else:
                if estimator == "input-norm":  # is
                    alpha = _ratio(n_bar[ti][l - 1], n_bar[ti][l]) if l > 0 else 1.0
                elif estimator == "activation-norm":
                    alpha = sum(_ratio(m_bar[ti][k], m_bar[ti][l]) for k in ks)
                else:  # weight-norm
                    alpha = _ratio(f[l - 2], f[l - 1]) if l >= 2 else 1.0
                out[(t, l)] = ((1.0 + alpha) * s * B_l, A_l)
    return Folded(estimator, out)


def frozen_weights(model: nn.Module, bank: ResLoraBank) -> dict[tuple[str, int], Tensor]:
    from lor2c_probe.models import find_layers

    _, layers = find_layers(model)
    paths = TARGETS[model.config.model_type]
    return {(t, l): layers[l].get_submodule(paths[t]).weight for t in TYPES for l in range(bank.num_layers)}


@contextmanager
def _using(bank: ResLoraBank, folded: Folded) -> Iterator[None]:
    bank.use(folded)
    try:
        yield
    finally:
        bank.use(None)


class ResLoraMethod:
    variant = "ms"

    @property
    def name(self) -> str:
        return f"reslora-{self.variant}"

    def attach(self, model: nn.Module, backbone: Backbone, cfg: AdapterConfig) -> nn.Module:
        from lor2c_probe.models import find_layers

        mtype = model.config.model_type
        if mtype not in TARGETS:
            raise ConfigError(f"ResLoRA supports {', '.join(TARGETS)} models; got {mtype!r}")
        layers_path, layers = find_layers(model, backbone.layers_path)
        paths = TARGETS[mtype]
        shapes = {t: tuple(reversed(layers[0].get_submodule(paths[t]).weight.shape)) for t in TYPES}  # (in, out)
        model.requires_grad_(False)
        bank = ResLoraBank(self.variant, len(layers), shapes, rank=cfg.rank, scaling=cfg.scaling, dropout=cfg.dropout,
                           pre_num=cfg.pre_num)
        model.add_module(BANK_ATTR, bank)
        bank.attach_to(layers, paths)
        # (type, layer) -> the projection whose input the adapter reads: the spectral probe's feature hooks go there
        bank.input_paths = {(t, l): f"{layers_path}.{l}.{paths[t]}" for t in TYPES for l in range(len(layers))}
        bank.requires_grad_(True)
        unfreeze_head(model, backbone.causal)
        return model

    def count_params(self, shape: ArchShape, cfg: AdapterConfig) -> int:
        return (cfg.rank * (shape.q_in + shape.q_out) + cfg.rank * (shape.v_in + shape.v_out)) * shape.num_layers

    def inference_variants(self, model: nn.Module) -> Iterator[tuple[str, Any]]:
        """(estimator, a context in which the model evaluates with its shortcuts folded into plain LoRA factors)."""
        bank = getattr(model, BANK_ATTR)
        weights = frozen_weights(model, bank)
        for est in ESTIMATORS[bank.variant]:
            yield est, _using(bank, fold(bank, est, weights))


class ResLoraIsMethod(ResLoraMethod):
    variant = "is"


class ResLoraBsMethod(ResLoraMethod):
    variant = "bs"


class ResLoraMsMethod(ResLoraMethod):
    variant = "ms"
