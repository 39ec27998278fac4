"""Factor-QR spectra against torch.linalg.svdvals of the materialised matrix.

Tolerances: float64 relative error <= 1e-5 (measured ~1e-14); float32 <= 1e-4 relative to sigma_max
(the QR route and the dense SVD each carry ~1e-6 relative rounding; the bound leaves margin).
"""

from __future__ import annotations

import pytest
import torch

from lor2c_probe.spectra import gram_svdvals, lowrank_feature_svdvals, lowrank_svdvals

SHAPES = [(16, 4, 16), (32, 8, 20), (50, 3, 7), (6, 8, 9), (64, 64, 64)]  # (d_out, r, d_in), incl. r > d_out


def _pad(s, n):
    return torch.cat([s, s.new_zeros(max(0, n - len(s)))])[:n]


@pytest.mark.parametrize("d_out,r,d_in", SHAPES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-5), (torch.float32, 1e-4)])
def test_lowrank_equals_dense(d_out, r, d_in, dtype, tol):
    g = torch.Generator().manual_seed(d_out * 100 + r)
    B = torch.randn(d_out, r, generator=g, dtype=dtype)
    A = torch.randn(r, d_in, generator=g, dtype=dtype)
    got = lowrank_svdvals(B, A, scale=2.0)
    want = torch.linalg.svdvals(2.0 * B @ A)
    n = min(len(got), len(want))
    assert torch.all(want[n:] <= tol * want[0])  # beyond min(r, d) the dense values are zero
    torch.testing.assert_close(got[:n], want[:n], rtol=tol, atol=tol * float(want[0]))


def test_rank_deficient_factors_and_zero_B():
    g = torch.Generator().manual_seed(0)
    B = torch.randn(40, 2, generator=g, dtype=torch.float64) @ torch.randn(2, 8, generator=g, dtype=torch.float64)  # rank 2
    A = torch.randn(8, 30, generator=g, dtype=torch.float64)
    got = lowrank_svdvals(B, A)
    want = torch.linalg.svdvals(B @ A)[:8]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-9)
    assert int((got > 1e-9 * got[0]).sum()) == 2
    zero = lowrank_svdvals(torch.zeros(40, 8, dtype=torch.float64), A)
    assert torch.equal(zero, torch.zeros(8, dtype=torch.float64))


def test_feature_spectra_low_rank_and_gram():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(300, 24, generator=g, dtype=torch.float64)
    A, B = torch.randn(4, 24, generator=g, dtype=torch.float64), torch.randn(24, 4, generator=g, dtype=torch.float64)
    Y = 0.5 * X @ A.T @ B.T
    torch.testing.assert_close(lowrank_feature_svdvals(X @ A.T, B, 0.5), torch.linalg.svdvals(Y)[:4], rtol=1e-5, atol=1e-9)
    W = torch.randn(24, 24, generator=g, dtype=torch.float64)
    Z = X @ W.T
    G = sum((z.T @ z) for z in Z.split(70))  # streamed in chunks
    torch.testing.assert_close(gram_svdvals(G), torch.linalg.svdvals(Z), rtol=1e-5, atol=1e-8)
