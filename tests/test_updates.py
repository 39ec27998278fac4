"""lor2c_probe.updates against PEFT's own merge, for every tuner on a tiny BERT and a tiny GPT-2 (fused Conv1D c_attn).

For every tuner layer, with the adapter parameters perturbed at random (DoRA's magnitude too), the reference ΔW is
(PEFT-merged weight) - (pretrained weight saved before get_peft_model), oriented (out, in), and its spectrum is taken
in float64. Tolerance everywhere: rtol 1e-4, atol 1e-5 * sigma_max (float32 routes; the float32 merge's cancellation
error is ~1e-7 of |W|, well inside it).
"""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
from torch import nn

from lor2c_probe.bench.update_spectra import perturb_adapters
from lor2c_probe.updates import keep_initial_factors, update_of

METHODS = ["lora", "pissa", "adalora", "vera", "loha", "lokr", "ia3", "dora"]
ARCHS = ["bert", "gpt2"]
RTOL, ATOL_REL = 1e-4, 1e-5  # atol = ATOL_REL * sigma_max of the reference


def _targets(arch: str) -> list[str]:
    # BERT: square (query/value/attention.output.dense 32x32) and rectangular (intermediate 64x32, output 32x64)
    # GPT-2: the fused c_attn Conv1D (32 -> 96) and mlp.c_proj (128 -> 32), both stored (in, out)
    return ["query", "value", "intermediate.dense", "output.dense"] if arch == "bert" else ["c_attn", "mlp.c_proj"]


def _base_model(arch: str) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2Model

    torch.manual_seed(0)
    if arch == "bert":
        cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
        return BertForSequenceClassification(cfg)
    return GPT2Model(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100, n_positions=64))


def _config(method: str, arch: str):
    from peft import AdaLoraConfig, IA3Config, LoHaConfig, LoKrConfig, LoraConfig, VeraConfig

    t = _targets(arch)
    ff = ["output.dense"] if arch == "bert" else ["mlp.c_proj"]
    return {
        "lora": lambda: LoraConfig(r=4, lora_alpha=8, target_modules=t, use_rslora=True),
        "pissa": lambda: LoraConfig(r=4, lora_alpha=8, target_modules=t, init_lora_weights="pissa"),
        "adalora": lambda: AdaLoraConfig(init_r=4, target_r=2, total_step=10, lora_alpha=8, target_modules=t),
        "vera": lambda: VeraConfig(r=4, target_modules=t),
        # r1 r2 = 16 < 32: Khatri-Rao product route; intermediate.dense at r 6 (36 >= 32): the dense fallback
        "loha": lambda: LoHaConfig(r=4, alpha=6, target_modules=t, rank_pattern={"intermediate.dense": 6}),
        # decompose_both at r 2: both full and factored w1 / w2
        "lokr": lambda: LoKrConfig(r=2, alpha=3, target_modules=t, decompose_both=True),
        "ia3": lambda: IA3Config(target_modules=t, feedforward_modules=ff),
        "dora": lambda: LoraConfig(r=4, lora_alpha=8, target_modules=t, use_dora=True),
    }[method]()


def _tuner_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]


def _oriented(layer: nn.Module, w: torch.Tensor) -> torch.Tensor:
    from transformers.pytorch_utils import Conv1D

    return w.T if isinstance(layer.get_base_layer(), Conv1D) else w


@functools.lru_cache(maxsize=None)
def _case(method: str, arch: str) -> list[tuple[str, object, torch.Tensor]]:
    """[(layer name, update_of(layer), reference ΔW (out, in) float64)] after a random perturbation."""
    from peft import get_peft_model
    from transformers.pytorch_utils import Conv1D

    model = _base_model(arch)
    original = {id(m): m.weight.detach().clone() for m in model.modules() if isinstance(m, (nn.Linear, Conv1D))}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = get_peft_model(model, _config(method, arch))
    except TypeError as err:  # peft's own refusal, e.g. LoHa/LoKr on transformers' Conv1D
        pytest.skip(f"peft refuses {method} on {arch}: {err}")
    if method == "pissa":
        keep_initial_factors(model)
    model.eval()
    gen = torch.Generator().manual_seed(1)
    out = []
    for name, layer in _tuner_layers(model):
        perturb_adapters(layer, gen, scale=0.2)  # PiSSA (its initial factors kept): its SVD init plus noise
        update = update_of(layer)  # before merging: DoRA and IA3 read the base weight
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # IA3: "Unmerge result can be inaccurate"
            layer.merge(adapter_names=["default"])
            merged = layer.get_base_layer().weight.detach().clone()
            layer.unmerge()
        w0 = original[id(layer.get_base_layer())]
        out.append((name, update, (_oriented(layer, merged) - _oriented(layer, w0)).double()))
    assert out, f"no tuner layer in {method}/{arch}"
    return out


def _assert_spectra(got: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    """The leading min(len) values match; whatever either side has beyond them is ~0."""
    got, ref = got.double(), ref.double()
    atol = ATOL_REL * float(ref[0])
    n = min(got.numel(), ref.numel())
    torch.testing.assert_close(got[:n], ref[:n], rtol=RTOL, atol=atol, msg=lambda m: f"{what}: {m}")
    for tail in (got[n:], ref[n:]):
        assert tail.numel() == 0 or float(tail.max()) <= atol, f"{what}: tail {tail.max():.3g} > {atol:.3g}"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", METHODS)
def test_svdvals_match_the_spectrum_of_the_peft_merge(method, arch):
    for name, update, ref in _case(method, arch):
        got = update.svdvals()
        assert got.dtype == torch.float32
        assert bool((got[:-1] >= got[1:]).all()), f"{name}: not descending"
        _assert_spectra(got, torch.linalg.svdvals(ref), f"{method}/{arch} {name} [{update.route}]")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", METHODS)
def test_dense_is_the_peft_merge_minus_the_pretrained_weight(method, arch):
    for name, update, ref in _case(method, arch):
        dense = update.dense().double()
        assert dense.shape == ref.shape, f"{name}: {tuple(dense.shape)} vs {tuple(ref.shape)}"
        torch.testing.assert_close(dense, ref, rtol=RTOL, atol=ATOL_REL * float(ref.abs().max()))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", METHODS)
def test_feature_svdvals_over_chunks_match_the_stacked_outputs(method, arch):
    gen = torch.Generator().manual_seed(2)
    for name, update, ref in _case(method, arch):
        x1, x2 = (torch.randn(n, ref.shape[1], generator=gen) for n in (5, 9))
        got = update.feature_svdvals([update.reduce(x1), update.reduce(x2)])
        expect = torch.linalg.svdvals(torch.cat([x1, x2]).double() @ ref.T)
        _assert_spectra(got, expect, f"{method}/{arch} {name} features [{update.route}]")


def test_routes_are_the_cheapest_exact_ones():
    kinds = {m: {u.kind for _, u, _ in _case(m, "bert")} for m in METHODS}
    assert kinds == {"lora": {"product"}, "pissa": {"product"}, "adalora": {"product"}, "vera": {"product"},
                     "loha": {"product", "dense"}, "lokr": {"kron"}, "ia3": {"dense"}, "dora": {"dense"}}
    ranks = {u.U.shape[1] for _, u, _ in _case("pissa", "bert")}
    assert ranks == {8}  # [B, -B0] @ [A; A0]: 2r


def test_keep_initial_factors_leaves_the_state_dict_and_makes_pissa_start_at_zero():
    from peft import get_peft_model

    model = get_peft_model(_base_model("bert"), _config("pissa", "bert"))
    keys = list(model.state_dict())
    layers = [m for _, m in _tuner_layers(model)]
    before = max(float(update_of(m).svdvals()[0]) for m in layers)  # relative to the rewritten residual: s B0 A0
    assert keep_initial_factors(model) == len(layers) == 10
    assert list(model.state_dict()) == keys
    assert keep_initial_factors(model) == 10  # idempotent: the stored initial factors are kept
    assert before > 0.1
    for m in layers:
        update = update_of(m)
        assert update.kind == "product" and update.U.shape[1] == 8
        assert float(update.svdvals().max()) <= 1e-6 * before


def test_half_precision_weights_are_computed_in_float32():
    from peft import get_peft_model

    model = get_peft_model(_base_model("bert"), _config("dora", "bert")).to(torch.bfloat16)
    _, layer = _tuner_layers(model)[0]
    update = update_of(layer)
    assert update.delta.dtype == torch.float32 and update.svdvals().dtype == torch.float32


def test_unsupported_layers_raise_type_error_naming_the_class():
    from peft import LoraConfig, get_peft_model

    class Convs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.emb = nn.Embedding(10, 4)

    model = get_peft_model(Convs(), LoraConfig(r=2, target_modules=["conv", "emb"]))
    for name, layer in _tuner_layers(model):
        with pytest.raises(TypeError, match=type(layer).__name__):
            update_of(layer)
    with pytest.raises(TypeError, match="Linear"):
        update_of(nn.Linear(3, 3))


def test_route_costs_small():
    from lor2c_probe.bench.update_spectra import METHODS as BENCH_METHODS
    from lor2c_probe.bench.update_spectra import route_costs

    out = route_costs(d=48, rank=4, repeats=1)
    assert out["d"] == 48 and out["rank"] == 4 and set(out["methods"]) == set(BENCH_METHODS)
    for name, row in out["methods"].items():
        assert row["route_s"] > 0 and row["dense_svd_s"] > 0 and row["ratio"] > 0, name
        assert row["max_rel_err"] < 1e-3 and row["max_err_vs_sigma_max"] < 1e-4, (name, row)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", METHODS)
def test_svdvals_many_is_each_updates_svdvals(method, arch):
    # the batched route (the spectral probe's) against the PEFT merge, brute force, for every tuner layer together
    from lor2c_probe.updates import svdvals_many

    case = _case(method, arch)
    for (name, update, ref), got in zip(case, svdvals_many([u for _, u, _ in case])):
        assert got.dtype == torch.float32
        _assert_spectra(got, torch.linalg.svdvals(ref), f"{method}/{arch} {name} [{update.route}, batched]")
