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


def _roberta_base() -> Any:
    from transformers import RobertaConfig

    # roberta-base's config.json (125M parameters with the classification head).
    return RobertaConfig(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
                         pad_token_id=1, bos_token_id=0, eos_token_id=2)


def _tiny() -> Any:
    from transformers import BertConfig

    return BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                      max_position_embeddings=128)


SHAPES: dict[str, Shape] = {
    "minilm": Shape("minilm", "all-MiniLM-L6-v2, pretrained (embedded): BERT, 6 layers, d=384", None),
    "roberta-base": Shape("roberta-base", "roberta-base config, random weights: 12 layers, d=768, vocab 50265", _roberta_base),
    "tiny": Shape("tiny", "tiny BERT, random weights: 2 layers, d=64 (smoke mode)", _tiny),
}


def load_shape(name: str, *, num_labels: int = 2) -> tuple[Any, Backbone]:
    """(sequence-classification model, backbone) for ``name``; random weights come from the global torch RNG."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from lor2c_probe.models import find_layers, load_model

    shape = SHAPES[name]
    if shape.config is None:
        model, _, backbone = load_model(None, num_labels=num_labels, problem_type="single_label_classification")
        return model, backbone
    hf_logging.set_verbosity_error()
    config = shape.config()
    config.num_labels = num_labels
    config.problem_type = "single_label_classification"
    model = AutoModelForSequenceClassification.from_config(config)
    path, layers = find_layers(model)
    return model, Backbone(config.model_type, int(config.hidden_size), len(layers), path)
