"""The (backbone x method) matrix: every supported family (tests/families.py) with every PEFT method and the
LoR2C family. For each pair: the forward equals the method's formula, the gradient probe's rows equal statistics
of ``p.grad`` grouped by hand, the weight spectra equal the singular values of PEFT's own merged weight minus the
original, and the parameter formula equals the instantiated count.

Tolerances: float32 models; logits within 2e-5 absolute; gradient statistics rtol 1e-5; spectra rtol 1e-4 and
atol 1e-5 x the largest singular value (PEFT's merge and the factor route round differently).
"""

from __future__ import annotations

import copy
import re

import pytest
import torch

from lor2c_probe.adapters import METHODS, get_method
from lor2c_probe.adapters.shapes import shape_of
from lor2c_probe.config import AdapterConfig
from lor2c_probe.models import backbone_of
from lor2c_probe.probes.gradients import GradientProbe, select_parameters
from lor2c_probe.probes.placement import FACTORS
from lor2c_probe.probes.spectral import SpectralProbe
from tests.families import DECODERS, SUPPORTED, tiny_inputs, tiny_model

PEFT = ["lora", "dora", "pissa", "adalora", "vera", "ia3", "loha", "lokr"]
RESIDUAL = ["lor2c", "share-lor2c", "im-lor2c"]
# PEFT has no default LoRA targets for these two families: a user passes --target-modules, as the test does.
TARGETS = {"distilbert": ("q_lin", "v_lin"), "mpnet": ("q", "v")}
KIND = {"lora": "lora", "dora": "lora", "pissa": "lora", "adalora": "lora", "vera": "vera", "ia3": "ia3", "loha": "loha", "lokr": "lokr"}


def _ia3_targets(family: str) -> tuple[str, ...] | None:
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as IA3

    model_type = tiny_model(family).config.model_type if family not in ("distilbert", "mpnet") else family
    return None if model_type in IA3 else TARGETS.get(family, ("query", "value"))


def _build(family: str, method: str, task: str = "seq-cls"):
    model = tiny_model(family, task).eval()
    targets = _ia3_targets(family) if method == "ia3" else TARGETS.get(family)
    bb = backbone_of(model, targets=targets, causal=task == "causal-lm")
    cfg = AdapterConfig(method=method, rank=4, alpha=8.0, dropout=0.0, target_modules=targets)
    original = copy.deepcopy(model)
    shape = shape_of(original, bb, family, targets)
    torch.manual_seed(1)
    wrapped = get_method(method).attach(model, bb, cfg).eval()
    return original, wrapped, bb, cfg, shape


def _perturb(model) -> None:
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad and not n.split(".")[-3:-2] == ["modules_to_save"] and "classifier" not in n and "score" not in n:
                p.add_(0.3 * torch.randn(p.shape, generator=g))


def _logits(model, inputs):
    return model(**inputs).logits


def _tuners(model):
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]


def _delta_by_merge(layer, pretrained: torch.Tensor) -> torch.Tensor:
    """PEFT's own merged weight minus the pretrained weight (PiSSA rewrote the frozen one), oriented (out, in)."""
    base = layer.get_base_layer()
    layer.merge()
    after = base.weight.detach().clone()
    layer.unmerge()
    delta = (after - pretrained).double()
    return delta.T if type(base).__name__ == "Conv1D" else delta


# PEFT refuses LoHa and LoKr on transformers' Conv1D (GPT-2's layers): `train` ends in that one-line error instead.
REFUSED = {("gpt2", "loha"), ("gpt2", "lokr")}
PAIRS = [(f, m) for f in SUPPORTED for m in PEFT + RESIDUAL if (f, m) not in REFUSED]


@pytest.mark.parametrize("family,method", PAIRS)
def test_method_on_backbone(family, method):
    original, model, bb, cfg, shape = _build(family, method)
    inputs = tiny_inputs(model)
    base_logits = _logits(original, inputs)
    # identity at init: every method starts at the pretrained function (PiSSA up to its SVD's rounding)
    torch.testing.assert_close(_logits(model, inputs), base_logits, rtol=0, atol=2e-5)
    _perturb(model)
    out = _logits(model, inputs)
    assert float((out - base_logits).abs().max()) > 1e-7, "the perturbed adapters do not change the output"

    # 1. forward = formula
    if method in PEFT:
        _check_peft_formula(original, model, inputs, out, bb)
    else:
        _check_residual_formula(model, bb, cfg, inputs)

    # 2. counts = formula
    selected = select_parameters(model, METHODS[method].markers)
    trainable = [(n, p) for n, p in selected if p.requires_grad]
    assert get_method(method).count_params(shape, cfg) == sum(p.numel() for n, p in selected)

    # 3. gradient probe = p.grad grouped by hand
    model.train()
    labels = torch.tensor([0, 1])
    loss = model(**inputs, labels=labels).loss
    loss.backward()
    probe = GradientProbe(METHODS[method].markers, scaling=1.0, layers_path=bb.layers_path)
    probe.bind(model)
    assert probe.unplaced == {}, probe.unplaced
    stats = probe.stats().numpy()
    rows = probe.index.rows(1, 0, stats[0], stats[1], stats[2], lambda m: 1.0)
    got = {(r["module"], r["factor"], r["stat"]): r["value"] for r in rows}
    expected = _by_hand(trainable, method, bb.layers_path)
    assert {k[:2] for k in got} == set(expected), (sorted({k[:2] for k in got}), sorted(expected))
    for (module, factor), grads in expected.items():
        flat = torch.cat([g.flatten().double() for g in grads])
        assert got[(module, factor, "l2")] == pytest.approx(float(flat.norm()), rel=1e-5)
        assert got[(module, factor, "mean_abs")] == pytest.approx(float(flat.abs().mean()), rel=1e-5)
        assert got[(module, factor, "max_abs")] == pytest.approx(float(flat.abs().max()), rel=1e-5)
    model.zero_grad()
    model.eval()

    # 4. weight spectra = sigma(merged - original)
    sp = SpectralProbe(scaling=cfg.scaling, layers_path=bb.layers_path, probe_data=None, ks=(1,))
    spectra = {module: sigma for (source, module), sigma in sp.spectra_now(model, ("weights",)).items()}
    assert spectra
    if method in PEFT:
        for name, layer in _tuners(model):
            layer_idx = int(re.search(re.escape(bb.layers_path) + r"\.(\d+)\.", name).group(1))
            inside = name.split(f"{bb.layers_path}.{layer_idx}.", 1)[1]
            key = next(k for k in spectra if k in (f"{KIND[method]}.{layer_idx}.{_short(name)}", f"{KIND[method]}.{layer_idx}.{inside}"))
            pretrained = original.get_submodule(name.removeprefix("base_model.model.")).weight.detach()
            _same_spectrum(spectra[key], torch.linalg.svdvals(_delta_by_merge(layer, pretrained)).numpy())
    else:
        for module, sigma in spectra.items():
            assert sigma[0] > 0 and (sigma >= 0).all()


def _short(name: str) -> str:
    from lor2c_probe.record.naming import SHORT

    leaf = name.rsplit(".", 1)[-1]
    return SHORT.get(leaf, leaf)


def _same_spectrum(got, want) -> None:
    k = min(len(got), len(want))
    top = float(want[0]) if len(want) else 0.0
    torch.testing.assert_close(torch.as_tensor(got[:k]).double(), torch.as_tensor(want[:k]).double(), rtol=1e-4, atol=1e-5 * top)
    assert (want[k:] <= 1e-5 * top + 1e-7).all(), "the route misses singular values the merged update has"


def _check_peft_formula(original, model, inputs, out, bb) -> None:
    """The PEFT model's logits = the original model's with every targeted weight replaced by W + ΔW (updates.update_of)."""
    from lor2c_probe.updates import update_of

    reference = copy.deepcopy(original)  # the pretrained weights (PiSSA rewrote the frozen ones in ``model``)
    with torch.no_grad():
        for name, layer in _tuners(model):
            path = name.removeprefix("base_model.model.")
            base = reference.get_submodule(path)
            delta = update_of(layer).dense().to(base.weight.dtype)
            base.weight.add_(delta.T if type(base).__name__ == "Conv1D" else delta)
        head = next(n for n, _ in model.named_modules() if n.endswith("modules_to_save.default")) if not bb.causal else None
        if head is not None:  # the trained head copy (not perturbed, so equal to the original head)
            reference.get_submodule(head.removeprefix("base_model.model.").split(".modules_to_save")[0]).load_state_dict(
                model.get_submodule(head).state_dict())
    torch.testing.assert_close(out, _logits(reference, inputs), rtol=1e-4, atol=2e-5)


def _check_residual_formula(model, bb, cfg, inputs) -> None:
    """Every block's output = F_i(h_i) + s B_i A_i h_i (Eq. 1), with F_i the block's own forward (hooks bypassed)."""
    from lor2c_probe.models import find_layers

    inner = model.base_model.model if hasattr(model, "peft_config") else model
    _, blocks = find_layers(inner, bb.layers_path)
    seen = {}

    def grab(i):
        def hook(module, args, kwargs, output):
            seen[i] = (args, kwargs, output)
        return hook

    handles = [b.register_forward_hook(grab(i), with_kwargs=True) for i, b in enumerate(blocks)]
    try:
        with torch.no_grad():
            model(**inputs, **({"use_cache": False} if bb.model_type in ("gpt2", "llama", "mistral", "qwen2") else {}))
            for i, block in enumerate(blocks):
                args, kwargs, output = seen[i]
                plain = block.forward(*args, **kwargs)
                first = lambda o: o[0] if isinstance(o, tuple) else o  # noqa: E731
                h = args[0] if args else next(iter(kwargs.values()))
                path = inner.lor2c.path_for(i) if hasattr(inner.lor2c, "path_for") else None
                A, B = _factors(inner, i)
                expected = first(plain) + cfg.scaling * (h @ A.T @ B.T)
                torch.testing.assert_close(first(output), expected, rtol=1e-4, atol=2e-5)
                del path
    finally:
        for h in handles:
            h.remove()


def _factors(model, i):
    from lor2c_probe.record.naming import classify

    A = B = shared = None
    for name, p in model.named_parameters():
        role = classify(name)
        if role.kind == "lor2c-shared":
            shared = p
        elif role.kind == "lor2c" and role.layer == i:
            A, B = (p, B) if role.factor == "A" else (A, p) if role.factor == "B" else (A, B)
    return (A if A is not None else shared), B


def _by_hand(trainable, method: str, layers_path: str) -> dict[tuple[str, str], list[torch.Tensor]]:
    """(module, factor) -> gradients, from the names alone: the block index after the stack's path."""
    out: dict[tuple[str, str], list[torch.Tensor]] = {}
    for name, p in trainable:
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        if m := re.search(r"lor2c\.paths\.(\d+)\.([AB])$", name):
            keys = [(f"lor2c.{m.group(1)}", m.group(2))]
        elif name.endswith("lor2c.shared_A"):
            keys = [("lor2c.shared", "A")]
        else:
            layer = re.search(re.escape(layers_path) + r"\.(\d+)\.", name).group(1)
            attr = next(a for a in sorted(FACTORS, key=len, reverse=True) if f".{a}." in name)
            kind = KIND.get(method, "lora")
            keys = [(f"{kind}.{layer}", FACTORS[attr])]
        for module, factor in keys:
            out.setdefault((module, factor), []).append(g)
            out.setdefault((module, "all"), []).append(g)
    return out


@pytest.mark.parametrize("family", sorted(DECODERS))
@pytest.mark.parametrize("method", ["lora", "lor2c", "ia3"])
def test_causal_lm(family, method):
    """Decoders as causal LMs: the adapters attach, the LM head stays frozen, a step's gradients reach every module."""
    original, model, bb, cfg, shape = _build(family, method, task="causal-lm")
    inputs = tiny_inputs(model)
    torch.testing.assert_close(_logits(model, inputs), _logits(original, inputs), rtol=0, atol=2e-5)
    _perturb(model)
    model.train()
    model(**inputs, labels=inputs["input_ids"]).loss.backward()
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lm_head" in n)
    probe = GradientProbe(METHODS[method].markers, scaling=1.0, layers_path=bb.layers_path)
    probe.bind(model)
    layers = {r.layer for r in probe.index.roles}
    assert layers == set(range(bb.num_layers)) | ({-1} if method == "share-lor2c" else set())
    assert float(probe.stats()[1].sum()) > 0


@pytest.mark.parametrize("family", SUPPORTED)
@pytest.mark.parametrize("method", ["lor2c", "lora"])
def test_activation_probe_equals_autograd_on_every_family(family, method):
    """||dL/dh_i|| per block input (and the last block's output) against torch.autograd.grad, rtol 1e-5."""
    from lor2c_probe.probes.activations import ActivationGradProbe
    from lor2c_probe.train.hooks import TrainState
    from tests.probes.test_activations import _reference

    _, model, bb, _, _ = _build(family, method)
    _perturb(model)
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    batch = {**tiny_inputs(model), "labels": torch.tensor([0, 1])}
    if family in DECODERS:
        batch["use_cache"] = False
    rows: list = []
    state = TrainState(model, None, None, lambda t, r: rows.extend(r), torch.device("cpu"), "x")
    probe = ActivationGradProbe(bb.layers_path, bottom_every=1)
    probe.on_train_start(state)
    probe.on_step_begin(state)
    model(**batch).loss.backward()
    probe.before_clip(state)
    probe.on_flush(state)
    probe.on_train_end(state)
    model.zero_grad()
    ref = _reference(model, [batch])
    got = {(r["layer"], r["stat"]): r["value"] for r in rows}
    assert len(got) == 2 * (bb.num_layers + 1)
    for layer in range(bb.num_layers + 1):
        sq, _, _ = ref[layer].tolist()
        assert got[(layer, "l2")] == pytest.approx(sq**0.5, rel=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama", "distilbert"])
def test_injection_switches_on_the_blocks_lora(family):
    """IMLoR2C's injection finds the block's dormant LoRA through PEFT's tuner layers (GPT-2: transformer.h.<i>)."""
    from lor2c_probe.structure.ops import block_lora_params, find_bank, inject

    _, model, bb, _, _ = _build(family, "im-lor2c")
    dormant = block_lora_params(model, 1)
    assert len(dormant) == 2 * len(bb.targets) and not any(p.requires_grad for p in dormant)
    bank = find_bank(model)
    switched = inject(bank, "1", model, None)
    assert switched == dormant and all(p.requires_grad for p in dormant)
    assert "1" not in bank.paths and block_lora_params(model, 0) and not any(p.requires_grad for p in block_lora_params(model, 0))
