"""The models the suite benchmarks: the embedded pretrained MiniLM and random-weight configs of known shapes.

Random configs need no download: a roberta-base-shaped model is built from its config with random
weights, which costs the same per step as the pretrained one (same shapes, same kernels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from lor2c_probe.models import Backbone


@dataclass(frozen=True)
class Shape:
    name: str
    description: str
    config: Callable[[], Any] | None  # None: the embedded pretrained model
    causal: bool = False  # a causal LM trained on its own tokens (LLaMA-style), else a sequence classifier


def _bundled(arch: str) -> Callable[[], Any]:
    """The config `lor2c-probe params --arch` plans with, so the bench measures the model the planner describes."""
    def config() -> Any:
        from lor2c_probe.planning import arch_config

        return arch_config(arch)

    return config


def _tiny_llama() -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=256)


def _tiny() -> Any:
    from transformers import BertConfig

    return BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                      max_position_embeddings=128)


SHAPES: dict[str, Shape] = {
    "minilm": Shape("minilm", "all-MiniLM-L6-v2, pretrained (embedded): BERT, 6 layers, d=384", None),
    "roberta-base": Shape("roberta-base", "roberta-base config, random weights: 12 layers, d=768, vocab 50265", _bundled("roberta-base")),
    "tiny": Shape("tiny", "tiny BERT, random weights: 2 layers, d=64 (smoke mode)", _tiny),
    "llama-1b": Shape("llama-1b", "TinyLlama-1.1B config, random weights: causal LM, 22 layers, d=2048, GQA 32/4 heads (a GPU shape)",
                      _bundled("llama-1b"), causal=True),
    "tiny-llama": Shape("tiny-llama", "tiny LLaMA, random weights: causal LM, 2 layers, d=64, GQA 4/2 heads", _tiny_llama, causal=True),
}


def load_shape(name: str, *, num_labels: int = 2) -> tuple[Any, Backbone]:
    """(model, backbone) for ``name``: a sequence classifier, or a causal LM for LLaMA shapes; random weights
    come from the global torch RNG."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from lor2c_probe.models import backbone_of, load_model

    shape = SHAPES[name]
    if shape.config is None:
        model, _, backbone = load_model(None, num_labels=num_labels, problem_type="single_label_classification")
        return model, backbone
    hf_logging.set_verbosity_error()
    config = shape.config()
    if shape.causal:
        model = AutoModelForCausalLM.from_config(config)
    else:
        config.num_labels = num_labels
        config.problem_type = "single_label_classification"
        model = AutoModelForSequenceClassification.from_config(config)
    return model, backbone_of(model, causal=shape.causal)
