"""Singular values of adapter maps and of their outputs, computed exactly and cheaply.

- ``lowrank_svdvals(B, A, s)``: sigma(s * B @ A) without forming the d_out x d_in product. With
  B = Q_B R_B and A^T = Q_A R_A (thin QR), s * B A = Q_B (s R_B R_A^T) Q_A^T, so the singular values are
  those of the r x r core. Cost O(d r^2) instead of O(d^3).
- ``lowrank_feature_svdvals(P, B, s)``: sigma of the module output s * X A^T B^T given P = X A^T
  (tokens x r), the same way.
- ``gram_svdvals(G)``: sigma from a streamed Gram matrix sum(Y^T Y) (d x d, float64), for outputs
  that are not low rank (the full-rank residual map).
"""

from __future__ import annotations

import torch
from torch import Tensor


def lowrank_svdvals(B: Tensor, A: Tensor, scale: float = 1.0) -> Tensor:
    """Singular values (descending, length min(r, d_out, d_in)) of ``scale * B @ A``; B: (d_out, r), A: (r, d_in)."""
    rb = torch.linalg.qr(B, mode="r").R  # (min(d_out, r), r)
    ra = torch.linalg.qr(A.mT, mode="r").R  # (min(d_in, r), r)
    return torch.linalg.svdvals(rb @ ra.mT) * abs(scale)


def lowrank_feature_svdvals(P: Tensor, B: Tensor, scale: float = 1.0) -> Tensor:
    """Singular values of ``scale * P @ B.T`` (the output s * X A^T B^T, with P = X A^T: (tokens, r))."""
    return lowrank_svdvals(P, B.mT, scale)


def gram_svdvals(G: Tensor) -> Tensor:
    """Singular values of Y from its Gram matrix G = Y^T Y (symmetric PSD), descending; tiny negative
    eigenvalues from rounding are clamped to 0."""
    ev = torch.linalg.eigvalsh(G.double())
    return ev.clamp_min(0).sqrt().flip(0)


def dense_svdvals(W: Tensor, scale: float = 1.0) -> Tensor:
    return torch.linalg.svdvals(W) * abs(scale)
