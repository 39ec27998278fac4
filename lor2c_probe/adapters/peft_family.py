"""Methods from the PEFT library: each one a real PEFT config on the backbone's target modules.

``target_modules`` is ``--target-modules`` when given, else PEFT's own per-model default for the method (LoRA's
q/v pair, IA3's k/v/feed-forward set, ...). The head a sequence classifier creates fresh is trained as PEFT's
``modules_to_save`` copy; a causal LM's head stays frozen. Parameter counts are formulas over the targeted
layers' shapes (``ArchShape.targets``), checked against instantiated models in tests/adapters/test_peft_family.py.
"""

from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING, Any

from torch import nn

from lor2c_probe.adapters.base import ArchShape, Target
from lor2c_probe.config import AdapterConfig
from lor2c_probe.errors import ConfigError, UserError
from lor2c_probe.models import Backbone, head_modules

if TYPE_CHECKING:
    from lor2c_probe.train.hooks import TrainerCallback


def _common(backbone: Backbone, cfg: AdapterConfig, model: nn.Module, *, own_defaults: bool = False) -> dict[str, Any]:
    """``own_defaults``: leave unset targets to PEFT's default for this method (IA3's differ from LoRA's)."""
    targets = cfg.target_modules or (None if own_defaults else backbone.targets)
    return {
        "target_modules": list(targets) if targets else None,
        # SEQ_CLS wraps the fresh head as a trainable copy; DistilBERT's pre_classifier and DeBERTa's pooler are fresh too.
        "modules_to_save": None if backbone.causal else head_modules(model),
        "task_type": "CAUSAL_LM" if backbone.causal else "SEQ_CLS",
    }


def wrap(model: nn.Module, config: Any) -> nn.Module:
    """``get_peft_model`` with PEFT's own errors (no default targets for a model type, a bad target) as one line."""
    from peft import get_peft_model

    with warnings.catch_warnings():
        # PEFT calls transformers' deprecated is_gradient_checkpointing; harmless, and not the user's to fix.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*", category=UserWarning)  # GPT-2's Conv1D: PEFT sets it
        try:
            return get_peft_model(model, config)
        except (ValueError, TypeError) as e:  # TypeError: a layer type the method does not support (LoHa on Conv1D)
            first = str(e).strip().splitlines()[0]
            hint = "" if getattr(config, "target_modules", None) else " (pass --target-modules NAMES)"
            raise UserError(f"PEFT {type(config).__name__}: {first}{hint}") from None


class PeftMethod:
    """A PEFT tuner; subclasses give ``peft_config`` and the per-layer parameter formula ``per_target``."""

    name = "peft"

    def peft_config(self, backbone: Backbone, cfg: AdapterConfig, model: nn.Module) -> Any:
        raise NotImplementedError

    def attach(self, model: nn.Module, backbone: Backbone, cfg: AdapterConfig) -> nn.Module:
        return wrap(model, self.peft_config(backbone, cfg, model))

    def per_target(self, t: Target, cfg: AdapterConfig) -> int:
        raise NotImplementedError

    def count_params(self, shape: ArchShape, cfg: AdapterConfig) -> int:
        return sum(self.per_target(t, cfg) for t in shape.targets_of(self.name)) * shape.num_layers


class LoraMethod(PeftMethod):
    name = "lora"
    extra: dict[str, Any] = {}

    def peft_config(self, backbone: Backbone, cfg: AdapterConfig, model: nn.Module) -> Any:
        from peft import LoraConfig

        common = _common(backbone, cfg, model)
        return LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, bias="none", **common, **self.extra)

    def per_target(self, t: Target, cfg: AdapterConfig) -> int:
        return cfg.rank * (t.fan_in + t.fan_out)


class DoraMethod(LoraMethod):
    """DoRA: LoRA's direction plus a trained magnitude per output feature."""

    name = "dora"
    extra = {"use_dora": True}

    def per_target(self, t: Target, cfg: AdapterConfig) -> int:
        return cfg.rank * (t.fan_in + t.fan_out) + t.fan_out


class PissaMethod(LoraMethod):
    """PiSSA: LoRA initialised from the top-r singular triplets of W, which it removes from the frozen weight. Full SVD
    (deterministic, so a resumed run rebuilds the same start); its update spectrum is taken relative to that start."""

    name = "pissa"
    extra = {"init_lora_weights": "pissa"}

    def attach(self, model: nn.Module, backbone: Backbone, cfg: AdapterConfig) -> nn.Module:
        from lor2c_probe.updates import keep_initial_factors

        peft_model = super().attach(model, backbone, cfg)
        keep_initial_factors(peft_model)  # ΔW is measured against the pretrained W = W_res + s B0 A0
        return peft_model


class AdaLoraMethod(PeftMethod):
    """AdaLoRA: SVD-form P diag(E) Q from rank ``rank``; its budget falls to rank/2 on average between 10% and 80% of
    the steps (PEFT's own tinit/tfinal example), by ``update_and_allocate`` after every optimizer step."""

    name = "adalora"

    def peft_config(self, backbone: Backbone, cfg: AdapterConfig, model: nn.Module) -> Any:
        from peft import AdaLoraConfig

        common = _common(backbone, cfg, model)
        # total_step is set from the run's plan at train start (AdaLoraSchedule); PEFT insists on a positive one now.
        return AdaLoraConfig(init_r=cfg.rank, target_r=max(1, cfg.rank // 2), lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                             total_step=10**6, **common)

    def per_target(self, t: Target, cfg: AdapterConfig) -> int:
        return cfg.rank * (t.fan_in + t.fan_out + 1)  # A (r x in), B (out x r), E (r)

    def callbacks(self, model: nn.Module, total_steps: int) -> list[TrainerCallback]:
        from lor2c_probe.adapters.adalora_schedule import AdaLoraSchedule

        return [AdaLoraSchedule(model, total_steps)]


class VeraMethod(PeftMethod):
    """VeRA: frozen shared random B, A (rank ``rank``) and trained scaling vectors λ_b (out) and λ_d (rank)."""

    name = "vera"

    def peft_config(self, backbone: Backbone, cfg: AdapterConfig, model: nn.Module) -> Any:
        from peft import VeraConfig

        common = _common(backbone, cfg, model)
        return VeraConfig(r=cfg.rank, vera_dropout=cfg.dropout, **common)

    def per_target(self, t: Target, cfg: AdapterConfig) -> int:
        return t.fan_out + cfg.rank


class Ia3Method(PeftMethod):
    """IA3: a trained scaling vector per targeted layer (output features; input features on feed-forward layers)."""

    name = "ia3"

    def peft_config(self, backbone: Backbone, cfg: AdapterConfig, model: nn.Module) -> Any:
        from peft import IA3Config

        common = _common(backbone, cfg, model, own_defaults=True)
        # With explicit targets no layer is treated as feed-forward unless PEFT's default marks it so.
        ff = None if common["target_modules"] is None else []
        return IA3Config(feedforward_modules=ff, **common)

    def per_target(self, t: Target, cfg: AdapterConfig) -> int:
        return t.fan_in if t.feedforward else t.fan_out


class LohaMethod(PeftMethod):
    """LoHa: ΔW = s (W1a W1b) ⊙ (W2a W2b), two rank-r pairs."""

    name = "loha"

    def peft_config(self, backbone: Backbone, cfg: AdapterConfig, model: nn.Module) -> Any:
        from peft import LoHaConfig

        common = _common(backbone, cfg, model)
        return LoHaConfig(r=cfg.rank, alpha=cfg.alpha, module_dropout=0.0, rank_dropout=0.0, **common)

    def per_target(self, t: Target, cfg: AdapterConfig) -> int:
        return 2 * cfg.rank * (t.fan_in + t.fan_out)


class LokrMethod(PeftMethod):
    """LoKr: ΔW = s W1 ⊗ (W2a W2b), with PEFT's factorisation of each dimension."""

    name = "lokr"

    def peft_config(self, backbone: Backbone, cfg: AdapterConfig, model: nn.Module) -> Any:
        from peft import LoKrConfig

        common = _common(backbone, cfg, model)
        return LoKrConfig(r=cfg.rank, alpha=cfg.alpha, module_dropout=0.0, rank_dropout=0.0, **common)

    def per_target(self, t: Target, cfg: AdapterConfig) -> int:
        from peft.tuners.lokr.layer import factorization

        # PEFT's LoKrLayer.update_layer for a Linear: in = (in_m, in_n), out = (out_l, out_k); W1 full (out_l x in_m);
        # W2 full when r >= max(out_k, in_n) / 2, else the pair (out_k x r)(r x in_n).
        in_m, in_n = factorization(t.fan_in, -1)
        out_l, out_k = factorization(t.fan_out, -1)
        w1 = out_l * in_m
        w2 = out_k * in_n if cfg.rank >= max(out_k, in_n) / 2 else cfg.rank * (out_k + in_n)
        return w1 + w2


class PeftConfigMethod(PeftMethod):
    """Any other PEFT config, from ``--peft-config FILE.json`` (as written by ``PeftConfig.save_pretrained``). The
    file's own rank, targets and dropout apply; counts are read from the instantiated model."""

    name = "peft"

    def peft_config(self, backbone: Backbone, cfg: AdapterConfig, model: nn.Module) -> Any:
        return load_peft_config(cfg, backbone, model)

    def attach(self, model: nn.Module, backbone: Backbone, cfg: AdapterConfig) -> nn.Module:
        from lor2c_probe.updates import keep_initial_factors

        config = self.peft_config(backbone, cfg, model)
        peft_model = wrap(model, config)
        init = getattr(config, "init_lora_weights", True)
        if isinstance(init, str) and init.split("_")[0] in ("pissa", "olora", "corda"):  # inits that rewrite the frozen W
            keep_initial_factors(peft_model)
        return peft_model

    def callbacks(self, model: nn.Module, total_steps: int) -> list[TrainerCallback]:
        """The file's method's own loop pieces: AdaLoRA's rank allocation."""
        from peft import AdaLoraConfig

        config = next(iter(model.peft_config.values()))
        return AdaLoraMethod().callbacks(model, total_steps) if isinstance(config, AdaLoraConfig) else []

    def count_params(self, shape: ArchShape, cfg: AdapterConfig) -> int:
        raise UserError("--method peft has no parameter formula: its config can be anything; `lor2c-probe train` reports "
                        "the instantiated count in manifest.json")


def load_peft_config(cfg: AdapterConfig, backbone: Backbone, model: nn.Module) -> Any:
    """The PEFT config of ``--peft-config`` (a JSON file, or a folder holding adapter_config.json), with the task head set."""
    from peft import PeftConfig
    from peft.config import PeftConfigMixin
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    p, path = cfg.peft_config_file(), cfg.peft_config
    if p is None:
        raise ConfigError("--method peft needs --peft-config FILE.json")
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"--peft-config {path}: {str(e).splitlines()[0]}") from None
    kind = data.get("peft_type")
    if kind not in PEFT_TYPE_TO_CONFIG_MAPPING:
        raise UserError(f"--peft-config {path}: peft_type {kind!r} is not one of PEFT's: {', '.join(sorted(PEFT_TYPE_TO_CONFIG_MAPPING))}")
    cls: type[PeftConfigMixin] = PEFT_TYPE_TO_CONFIG_MAPPING[kind]
    known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k not in ("peft_type", "base_model_name_or_path")}
    known.setdefault("task_type", "CAUSAL_LM" if backbone.causal else "SEQ_CLS")
    known["inference_mode"] = False  # a saved adapter's file says true, which would freeze every tensor
    if not backbone.causal and known.get("modules_to_save") is None:
        known["modules_to_save"] = head_modules(model)
    try:
        config: PeftConfig = cls(**known)
    except (TypeError, ValueError) as e:
        raise UserError(f"--peft-config {path}: {str(e).strip().splitlines()[0]}") from None
    return config



