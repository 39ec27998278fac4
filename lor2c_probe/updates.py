"""The weight update ΔW of a PEFT tuner layer, and its exact singular values by the cheapest exact route.

ΔW is always oriented (out_features, in_features), whatever the layer's ``fan_in_fan_out`` (GPT-2's
``Conv1D`` stores its weight as (in, out)), and is taken relative to the frozen pretrained weight; the
formulas follow peft's own ``get_delta_weight`` / merge code:

- LoRA: ΔW = s B A, s = ``layer.scaling[adapter]`` (lora_alpha / r, or / sqrt(r) with rsLoRA).
  Product route: QR of B and A^T, then the r x r core.
- PiSSA / OLoRA (inits that rewrite the base weight to W0 - s B0 A0): with ``keep_initial_factors``
  called right after ``get_peft_model``, ΔW relative to the ORIGINAL W0 is s (B A - B0 A0) =
  s [B, -B0] @ [A; A0], a product of rank 2r. Without the stored factors it is s B A, relative to the
  rewritten base weight.
- AdaLoRA: ΔW = B (A * E) * scaling / (ranknum + 1e-5) (scaling = lora_alpha, or r when lora_alpha is 0).
- VeRA: ΔW = diag(λ_b) B[:out] diag(λ_d) A[:, :in] (slices of the shared vera_B / vera_A).
- LoHa: ΔW = s (w1a w1b) ⊙ (w2a w2b), s = alpha / r. By the face-splitting identity
  (A1 B1) ⊙ (A2 B2) = (A1 •r A2)(B1^T •r B2^T)^T it is a product of rank r1 r2, used while
  r1 r2 < min(out, in); otherwise the dense SVD.
- LoKr: ΔW = s kron(W1, W2); sigma(kron(W1, W2)) is the outer product of sigma(W1) and sigma(W2).
- IA3: ΔW = diag(l - 1) W (output scaling) or W diag(l - 1) (``is_feedforward``: input scaling), full rank:
  dense SVD.
- DoRA: ΔW = (m / ||W + s B A||_row) * (W + s B A) - W, the norm taken per output row of the (out, in)
  weight (peft's ``get_weight_norm``: ``norm(dim=1)``; its comment says "column-wise" in the paper's
  (in, out) convention); full rank: dense SVD.

Half-precision (fp16 / bf16) weights are computed in float32; float64 weights stay float64 until the
spectrum is returned as float32. The dropouts (lora/rank/module) only act in training and never enter
the merged weight, so they are ignored here; biases (lora_bias, IA3's scaled bias) are not part of ΔW.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lor2c_probe.spectra import gram_svdvals, lowrank_feature_svdvals, lowrank_svdvals

BUFFER_PREFIX = "lor2c_probe"


@dataclass
class Update:
    """ΔW of one tuner layer in its cheapest exact form.

    kind "product": ΔW = scale * U @ V;        U: (out, k), V: (k, in)
    kind "kron":    ΔW = scale * kron(W1, W2); W1: (a, c), W2: (b, d), out = a b, in = c d
    kind "dense":   ΔW = delta;                delta: (out, in)
    """

    kind: str
    route: str
    scale: float = 1.0
    U: Tensor | None = None  # (out, k)
    V: Tensor | None = None  # (k, in)
    W1: Tensor | None = None  # (a, c)
    W2: Tensor | None = None  # (b, d)
    delta: Tensor | None = None  # (out, in)

    def svdvals(self) -> Tensor:
        """Exact singular values of ΔW, descending, float32: k values for "product", min(a,c) min(b,d) for
        "kron", min(out, in) for "dense" (the missing ones are exactly 0)."""
        if self.kind == "product":
            return lowrank_svdvals(self.U, self.V, self.scale).float()
        if self.kind == "kron":
            s1, s2 = torch.linalg.svdvals(self.W1), torch.linalg.svdvals(self.W2)  # (min(a,c),), (min(b,d),)
            return (torch.outer(s1, s2).flatten().sort(descending=True).values * abs(self.scale)).float()
        return torch.linalg.svdvals(self.delta).float()

    def dense(self) -> Tensor:
        """ΔW materialised, (out, in)."""
        if self.kind == "product":
            return self.scale * (self.U @ self.V)
        if self.kind == "kron":
            return self.scale * torch.kron(self.W1, self.W2)
        return self.delta

    def reduce(self, x: Tensor) -> Tensor:
        """A chunk's partial for ``feature_svdvals``; x: (tokens, in). "product": x V^T, (tokens, k);
        "kron"/"dense": the float64 Gram Y^T Y of Y = x ΔW^T, (out, out)."""
        if self.kind == "product":
            return x.to(self.V.dtype) @ self.V.mT
        if self.kind == "kron":
            (a, c), (b, d) = self.W1.shape, self.W2.shape
            xr = x.to(self.W2.dtype).reshape(-1, c, d)  # (tokens, c, d); in index = j1 * d + j2
            y = torch.einsum("ac,tcb->tab", self.W1, xr @ self.W2.mT).reshape(-1, a * b) * self.scale  # (tokens, out)
        else:
            y = x.to(self.delta.dtype) @ self.delta.mT  # (tokens, out)
        y = y.double()
        return y.mT @ y

    def feature_svdvals(self, partials: list[Tensor]) -> Tensor:
        """Singular values (descending, float32) of Y = X ΔW^T, X the row-stack of the chunks ``reduce`` saw."""
        if self.kind == "product":
            return lowrank_feature_svdvals(torch.cat(partials), self.U, self.scale).float()
        return gram_svdvals(torch.stack(partials).sum(0)).float()


def _work_dtype(*ts: Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in ts) else torch.float32


def _base_weight(layer: nn.Module, dtype: torch.dtype) -> Tensor:
    """The layer's current base weight, dequantized as peft does, oriented (out, in)."""
    from peft.utils.integrations import dequantize_module_weight

    w = dequantize_module_weight(layer.get_base_layer()).detach().to(dtype)
    return w.mT if getattr(layer, "fan_in_fan_out", False) else w


def _check_base(layer: nn.Module) -> None:
    from transformers.pytorch_utils import Conv1D

    base = layer.get_base_layer()
    if not isinstance(base, (nn.Linear, Conv1D)):
        raise TypeError(f"update_of: {type(layer).__name__} wraps {type(base).__name__}; only nn.Linear and "
                        "transformers' Conv1D have an (out, in) weight update here")


def _initial_factors(layer: nn.Module, adapter: str) -> tuple[Tensor, Tensor] | None:
    a0 = getattr(layer, _buffer_name("A0", adapter), None)
    b0 = getattr(layer, _buffer_name("B0", adapter), None)
    return None if a0 is None or b0 is None else (a0, b0)


def _buffer_name(which: str, adapter: str) -> str:
    return f"{BUFFER_PREFIX}_{which}_{adapter}".replace(".", "_")


@torch.no_grad()
def _lora(layer: nn.Module, adapter: str) -> Update:
    lin_a, lin_b = layer.lora_A[adapter], layer.lora_B[adapter]
    if not isinstance(lin_a, nn.Linear):
        raise TypeError(f"update_of: {type(layer).__name__} has a non-Linear lora_A ({type(lin_a).__name__})")
    from peft.tuners.lora.variants import DoraLinearVariant

    variant = getattr(layer, "lora_variant", {}).get(adapter)
    is_dora = isinstance(variant, DoraLinearVariant)
    if variant is not None and not is_dora:
        raise TypeError(f"update_of: LoRA variant {type(variant).__name__} of {type(layer).__name__} has no "
                        "exact ΔW route here")
    dt = _work_dtype(lin_a.weight, lin_b.weight)
    A, B = lin_a.weight.detach().to(dt), lin_b.weight.detach().to(dt)  # (r, in), (out, r)
    s = float(layer.scaling[adapter])
    init = _initial_factors(layer, adapter)
    if is_dora:
        W = _base_weight(layer, dt)  # (out, in), the (possibly rewritten) frozen weight
        merged = W + s * (B @ A)
        m = layer.lora_magnitude_vector[adapter].weight.detach().to(dt)  # (out,)
        merged = (m / torch.linalg.norm(merged, dim=1))[:, None] * merged
        W0 = W if init is None else W + s * (init[1].to(dt) @ init[0].to(dt))
        return Update("dense", "dense SVD (DoRA's per-output-row weight norm couples every entry)", delta=merged - W0)
    if init is None:
        return Update("product", f"factor QR, rank {A.shape[0]}", s, U=B, V=A)
    A0, B0 = init[0].to(dt), init[1].to(dt)
    return Update("product", f"factor QR of [B, -B0][A; A0], rank {A.shape[0] + A0.shape[0]}", s,
                  U=torch.cat([B, -B0], 1), V=torch.cat([A, A0], 0))


@torch.no_grad()
def _adalora(layer: nn.Module, adapter: str) -> Update:
    A, B, E = layer.lora_A[adapter], layer.lora_B[adapter], layer.lora_E[adapter]  # (r, in), (out, r), (r, 1)
    dt = _work_dtype(A, B, E)
    s = float(layer.scaling[adapter]) / (float(layer.ranknum[adapter]) + 1e-5)
    return Update("product", f"factor QR of B (A * E), rank {A.shape[0]} (scaling / (ranknum + 1e-5))", s,
                  U=B.detach().to(dt), V=A.detach().to(dt) * E.detach().to(dt))


@torch.no_grad()
def _vera(layer: nn.Module, adapter: str) -> Update:
    lam_b, lam_d = layer.vera_lambda_b[adapter], layer.vera_lambda_d[adapter]  # (out,), (r,)
    vA, vB = layer.vera_A[adapter], layer.vera_B[adapter]  # shared: (r, max_in), (max_out, r)
    dt = _work_dtype(lam_b, lam_d, vA, vB)
    A = vA[:, : layer.in_features].to(dt)  # (r, in)
    B = vB[: layer.out_features, :].to(dt)  # (out, r)
    return Update("product", f"factor QR of (λb B)(λd A), rank {A.shape[0]}",
                  U=lam_b.detach().to(dt)[:, None] * B, V=lam_d.detach().to(dt)[:, None] * A)


@torch.no_grad()
def _ia3(layer: nn.Module, adapter: str) -> Update:
    l_vec = layer.ia3_l[adapter]  # (out, 1), or (1, in) when is_feedforward
    dt = _work_dtype(l_vec)
    W = _base_weight(layer, dt)  # (out, in)
    if layer.is_feedforward:
        route = "dense SVD: IA3 rescales columns (inputs) of the frozen W, so ΔW is full rank"
    else:
        route = "dense SVD: IA3 rescales rows of the frozen W, so ΔW is full rank"
    return Update("dense", route, delta=W * (l_vec.detach().to(dt) - 1))


@torch.no_grad()
def _loha(layer: nn.Module, adapter: str) -> Update:
    if adapter in layer.hada_t1:
        raise TypeError(f"update_of: {type(layer).__name__} uses the conv-only CP (hada_t1/t2) form")
    w1a, w1b = layer.hada_w1_a[adapter], layer.hada_w1_b[adapter]  # (out, r1), (r1, in)
    w2a, w2b = layer.hada_w2_a[adapter], layer.hada_w2_b[adapter]  # (out, r2), (r2, in)
    dt = _work_dtype(w1a, w1b, w2a, w2b)
    w1a, w1b, w2a, w2b = (t.detach().to(dt) for t in (w1a, w1b, w2a, w2b))
    s = float(layer.scaling[adapter])
    out, inn = w1a.shape[0], w1b.shape[1]
    k = w1a.shape[1] * w2a.shape[1]
    if k < min(out, inn):
        U = (w1a[:, :, None] * w2a[:, None, :]).reshape(out, k)  # face-splitting (row-wise Kronecker)
        V = (w1b[:, None, :] * w2b[None, :, :]).reshape(k, inn)  # Khatri-Rao (column-wise Kronecker)
        return Update("product", f"factor QR of the Khatri-Rao factors (w1a •r w2a)(w1b^T •r w2b^T)^T, rank {k}",
                      s, U=U, V=V)
    return Update("dense", f"dense SVD: LoHa's Khatri-Rao rank r1 r2 = {k} >= min(out, in) = {min(out, inn)}",
                  delta=s * (w1a @ w1b) * (w2a @ w2b))


@torch.no_grad()
def _lokr(layer: nn.Module, adapter: str) -> Update:
    if adapter in layer.lokr_t2:
        raise TypeError(f"update_of: {type(layer).__name__} uses the conv-only CP (lokr_t2) form")
    f1 = [layer.lokr_w1[adapter]] if adapter in layer.lokr_w1 else [layer.lokr_w1_a[adapter], layer.lokr_w1_b[adapter]]
    f2 = [layer.lokr_w2[adapter]] if adapter in layer.lokr_w2 else [layer.lokr_w2_a[adapter], layer.lokr_w2_b[adapter]]
    dt = _work_dtype(*f1, *f2)
    W1 = torch.linalg.multi_dot([t.detach().to(dt) for t in f1]) if len(f1) > 1 else f1[0].detach().to(dt)  # (a, c)
    W2 = torch.linalg.multi_dot([t.detach().to(dt) for t in f2]) if len(f2) > 1 else f2[0].detach().to(dt)  # (b, d)
    return Update("kron", f"Kronecker: outer product of factor spectra (W1 {tuple(W1.shape)}, W2 {tuple(W2.shape)})",
                  float(layer.scaling[adapter]), W1=W1, W2=W2)


def update_of(layer: nn.Module, adapter: str = "default") -> Update:
    """ΔW of ``adapter`` in a peft tuner layer (LoRA incl. DoRA/PiSSA, AdaLoRA, VeRA, IA3, LoHa, LoKr) wrapping
    nn.Linear or transformers' Conv1D. TypeError for any other layer (Conv2d, embeddings, other tuners)."""
    from peft.tuners.adalora.layer import AdaLoraLayer
    from peft.tuners.ia3.layer import IA3Layer
    from peft.tuners.loha.layer import LoHaLayer
    from peft.tuners.lokr.layer import LoKrLayer
    from peft.tuners.lora.layer import LoraLayer
    from peft.tuners.vera.layer import VeraLayer

    routes = [(AdaLoraLayer, "lora_A", _adalora), (LoraLayer, "lora_A", _lora), (VeraLayer, "vera_lambda_d", _vera),
              (IA3Layer, "ia3_l", _ia3), (LoHaLayer, "hada_w1_a", _loha), (LoKrLayer, "r", _lokr)]
    for cls, holder, fn in routes:  # AdaLoraLayer subclasses LoraLayer, so it comes first
        if isinstance(layer, cls):
            _check_base(layer)
            if adapter not in getattr(layer, holder):
                raise KeyError(f"update_of: {type(layer).__name__} has no adapter {adapter!r}")
            return fn(layer, adapter)
    raise TypeError(f"update_of: {type(layer).__name__} is not a supported peft tuner layer")


@torch.no_grad()
def svdvals_many(updates: list[Update]) -> list[Tensor]:
    """``[u.svdvals() for u in updates]``, with every "product" update of one shape, dtype and device done in one batched
    QR and SVD: a model's LoRA updates (24 at d = 768 for RoBERTa-base's q and v) cost one call instead of 24, whose
    fixed per-call cost dominates at rank 8."""
    out: list[Tensor | None] = [None] * len(updates)
    groups: dict[tuple, list[int]] = {}
    for i, u in enumerate(updates):
        if u.kind == "product":
            groups.setdefault((tuple(u.U.shape), tuple(u.V.shape), u.U.dtype, u.V.dtype, u.U.device), []).append(i)
        else:
            out[i] = u.svdvals()
    for idx in groups.values():
        if len(idx) == 1:
            out[idx[0]] = updates[idx[0]].svdvals()
            continue
        U = torch.stack([updates[i].U for i in idx])  # (n, out, k)
        V = torch.stack([updates[i].V for i in idx])  # (n, k, in)
        scale = torch.tensor([abs(updates[i].scale) for i in idx], dtype=U.dtype, device=U.device)
        sigma = (lowrank_svdvals(U, V) * scale[:, None]).float()  # lowrank_svdvals broadcasts over the leading dimension
        for j, i in enumerate(idx):
            out[i] = sigma[j]
    return out  # type: ignore[return-value]


@torch.no_grad()
def keep_initial_factors(model: nn.Module) -> int:
    """Store a copy of each LoraLayer's current lora_A / lora_B as non-persistent buffers (state_dict and
    checkpoints unchanged) named ``lor2c_probe_{A0,B0}_<adapter>``, so that ``update_of`` measures ΔW against
    the original pretrained weight for inits that rewrite it (PiSSA, OLoRA). Call right after
    ``get_peft_model``; buffers already present are kept. Returns how many layers hold initial factors."""
    from peft.tuners.adalora.layer import AdaLoraLayer
    from peft.tuners.lora.layer import LoraLayer

    count = 0
    for module in model.modules():
        if not isinstance(module, LoraLayer) or isinstance(module, AdaLoraLayer):
            continue
        stored = False
        for adapter, lin_a in module.lora_A.items():
            if not isinstance(lin_a, nn.Linear):
                continue
            for which, w in (("A0", lin_a.weight), ("B0", module.lora_B[adapter].weight)):
                name = _buffer_name(which, adapter)
                if getattr(module, name, None) is None:
                    module.register_buffer(name, w.detach().clone(), persistent=False)
            stored = True
        count += stored
    return count
