"""The lora method equals PEFT's LoRA built directly, and both equal W x + s B A x on q and v."""

from __future__ import annotations

import copy

import torch

from lor2c_probe.adapters import get_method
from lor2c_probe.config import AdapterConfig
from lor2c_probe.models import load_model


def test_lora_equals_peft_and_the_formula(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    cfg = AdapterConfig(method="lora", rank=4, alpha=8.0, dropout=0.0)
    torch.manual_seed(0)
    model, tok, bb = load_model(str(tiny_model_dir), num_labels=2, problem_type="single_label_classification")
    plain = copy.deepcopy(model)
    ours = get_method("lora").attach(model, bb, cfg).eval()
    torch.manual_seed(0)
    peft_model = get_peft_model(
        copy.deepcopy(plain),
        LoraConfig(r=4, lora_alpha=8.0, lora_dropout=0.0, target_modules=["query", "value"], task_type="SEQ_CLS"),
    ).eval()
    # Same shapes and names; copy our (perturbed) weights into PEFT's model.
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for (n1, p1), (n2, p2) in zip(ours.named_parameters(), peft_model.named_parameters(), strict=True):
            assert n1 == n2
            if p1.requires_grad:
                p1.add_(0.3 * torch.randn(p1.shape, generator=g))
            p2.copy_(p1)
    enc = tok(["the movie was great", "dull and slow"], padding=True, return_tensors="pt")
    with torch.no_grad():
        got = ours(**enc).logits
        torch.testing.assert_close(got, peft_model(**enc).logits, rtol=0, atol=0)
        # Formula: fold s * B A into W of every query/value in a copy of the plain model.
        ref = copy.deepcopy(plain).eval()
        s = cfg.alpha / cfg.rank
        named = dict(ours.named_modules())
        for name, mod in ref.named_modules():
            if name.endswith(("attention.self.query", "attention.self.value")):
                lora_mod = named[f"base_model.model.{name}"]
                A, B = lora_mod.lora_A["default"].weight, lora_mod.lora_B["default"].weight
                mod.weight.add_(s * B @ A)
        head = named["base_model.model.classifier.modules_to_save.default"]
        ref.classifier.load_state_dict(head.state_dict())
        torch.testing.assert_close(got, ref(**enc).logits, rtol=1e-5, atol=1e-6)
