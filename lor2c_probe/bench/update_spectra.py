"""Cost of the exact ΔW spectrum by ``update_of(layer).svdvals()`` against a dense SVD, per PEFT method.

``route_costs`` wraps one ``nn.Linear(d, d)`` per method (lora, pissa, adalora, vera, loha, lokr, ia3, dora)
with peft's own config classes, perturbs the adapter parameters so that ΔW != 0, and times (median of
``repeats``, after one warm-up call, threads as set by the caller):

- ``route_s``: ``update_of(layer).svdvals()`` (building the Update included);
- ``dense_svd_s``: ``torch.linalg.svdvals(delta)`` on the dense ΔW built beforehand (the SVD alone);
- ``dense_build_svd_s``: ``torch.linalg.svdvals(update_of(layer).dense())`` (building ΔW included).

``ratio`` is dense_svd_s / route_s. ``max_rel_err`` is the largest |σ_route - σ_dense| / σ_dense over the
top ``rank`` values (both float32); ``max_err_vs_sigma_max`` the largest deviation over every value the route
returns (the dense spectrum beyond them must be ~0), relative to σ_max. Pure: no CLI, no files.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

METHODS = ("lora", "pissa", "adalora", "vera", "loha", "lokr", "ia3", "dora")


class _Tiny(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


def _config(method: str, rank: int) -> Any:
    from peft import AdaLoraConfig, IA3Config, LoHaConfig, LoKrConfig, LoraConfig, VeraConfig

    t = ["lin"]
    return {
        "lora": lambda: LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=t),
        "pissa": lambda: LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=t, init_lora_weights="pissa"),
        "adalora": lambda: AdaLoraConfig(init_r=rank, target_r=rank, total_step=100, target_modules=t),
        "vera": lambda: VeraConfig(r=rank, target_modules=t),
        "loha": lambda: LoHaConfig(r=rank, alpha=rank, target_modules=t),
        "lokr": lambda: LoKrConfig(r=rank, alpha=rank, target_modules=t),
        "ia3": lambda: IA3Config(target_modules=t, feedforward_modules=[]),
        "dora": lambda: LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=t, use_dora=True),
    }[method]()


@torch.no_grad()
def perturb_adapters(layer: nn.Module, gen: torch.Generator, scale: float = 0.1) -> None:
    """Random adapter parameters (the frozen base weight untouched); PiSSA keeps its SVD init plus noise."""
    for name, p in layer.named_parameters():
        if name.startswith("base_layer.") or "ranknum" in name:
            continue
        noise = torch.randn(p.shape, generator=gen).to(p)
        if "lora_magnitude_vector" in name:
            p.mul_(1 + 0.3 * noise.abs())
        elif "ia3_l" in name:
            p.copy_(1 + 0.5 * noise)
        elif hasattr(layer, "lor2c_probe_A0_default"):  # PiSSA: principal factors plus a perturbation
            p.add_(0.1 * p.std() * noise)
        else:
            p.copy_(scale * noise)


def _layer(method: str, d: int, rank: int, seed: int) -> nn.Module:
    from peft import get_peft_model
    from peft.tuners.tuners_utils import BaseTunerLayer

    from lor2c_probe.updates import keep_initial_factors

    torch.manual_seed(seed)
    model = get_peft_model(_Tiny(d), _config(method, rank))
    if method == "pissa":
        keep_initial_factors(model)
    model.eval()
    layer = next(m for m in model.modules() if isinstance(m, BaseTunerLayer))
    perturb_adapters(layer, torch.Generator().manual_seed(seed + 1))
    return layer


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def route_costs(d: int = 768, rank: int = 8, repeats: int = 5, seed: int = 0) -> dict:
    """{"d", "rank", "methods": {name: {"route", "route_s", "dense_svd_s", "dense_build_svd_s", "ratio",
    "max_rel_err", "max_err_vs_sigma_max"}}} for one peft-wrapped nn.Linear(d, d) per method."""
    from lor2c_probe.updates import update_of

    methods: dict[str, dict[str, Any]] = {}
    with torch.no_grad():
        for i, method in enumerate(METHODS):
            layer = _layer(method, d, rank, seed + 10 * i)
            update = update_of(layer)
            delta = update.dense().float().contiguous()  # (d, d), built outside the dense timing
            route_s = _median_seconds(lambda: update_of(layer).svdvals(), repeats)
            dense_s = _median_seconds(lambda: torch.linalg.svdvals(delta), repeats)
            build_s = _median_seconds(lambda: torch.linalg.svdvals(update_of(layer).dense()), repeats)
            got = update.svdvals().double()
            ref = torch.linalg.svdvals(delta).double()
            k, n = min(rank, got.numel()), got.numel()
            top_rel = ((got[:k] - ref[:k]).abs() / ref[:k].clamp_min(torch.finfo(torch.float32).tiny)).max()
            all_abs = max(float((got - ref[:n]).abs().max()), float(ref[n:].max()) if ref.numel() > n else 0.0)
            methods[method] = {
                "route": update.route, "route_s": route_s, "dense_svd_s": dense_s, "dense_build_svd_s": build_s,
                "ratio": dense_s / route_s, "max_rel_err": float(top_rel),
                "max_err_vs_sigma_max": all_abs / float(ref[0]),
            }
    return {"d": d, "rank": rank, "methods": methods}
