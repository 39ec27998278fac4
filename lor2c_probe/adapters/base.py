"""What every adapter method provides, and the architecture shapes that parameter counts use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from torch import nn

    from lor2c_probe.config import AdapterConfig
    from lor2c_probe.models import Backbone


@dataclass(frozen=True)
class Target:
    """One layer a PEFT method adapts inside every block (GPT-2's fused c_attn: fan_out = 3d)."""

    name: str  # its path inside a block, e.g. attention.self.query
    fan_in: int
    fan_out: int
    feedforward: bool = False  # IA3 scales this layer's input, not its output


@dataclass(frozen=True)
class ArchShape:
    """The sizes parameter counts depend on. ``q_*``/``v_*`` differ from d under grouped-query attention.
    ``targets``: per method family ("lora" for the LoRA-shaped methods, "ia3"), the layers it adapts in a block,
    read from the model; without them the LoRA family adapts q and v."""

    name: str
    hidden_size: int
    num_layers: int
    q_in: int
    q_out: int
    v_in: int
    v_out: int
    targets: dict[str, tuple[Target, ...]] = field(default_factory=dict, compare=False)

    def targets_of(self, method: str) -> tuple[Target, ...]:
        key = "ia3" if method == "ia3" else "lora"
        if key in self.targets:
            return self.targets[key]
        if key == "lora":
            return (Target("q", self.q_in, self.q_out), Target("v", self.v_in, self.v_out))
        raise ValueError(f"{method}: the shape {self.name} does not list the layers {method} adapts; build it from a model")

    @classmethod
    def square(cls, name: str, hidden_size: int, num_layers: int) -> ArchShape:
        d = hidden_size
        return cls(name, d, num_layers, d, d, d, d)


# Bundled shapes for `lor2c-probe params` (from each model's config.json; no weights needed).
ARCH_SHAPES: dict[str, ArchShape] = {
    "roberta-base": ArchShape.square("roberta-base", 768, 12),
    "roberta-large": ArchShape.square("roberta-large", 1024, 24),
    "bert-base": ArchShape.square("bert-base", 768, 12),
    "minilm": ArchShape.square("minilm", 384, 6),  # all-MiniLM-L6-v2, the embedded default
    "llama-1b": ArchShape("llama-1b", 2048, 22, 2048, 2048, 2048, 256),  # TinyLlama-1.1B: 4 key/value heads of 64
    "llama-2-7b": ArchShape.square("llama-2-7b", 4096, 32),
    "llama-2-13b": ArchShape.square("llama-2-13b", 5120, 40),
    "llama-2-70b": ArchShape("llama-2-70b", 8192, 80, 8192, 8192, 8192, 1024),  # 8 key/value heads of 128: v_proj is 1024 wide
}


class Method(Protocol):
    """An adapter method: one module implementing this plus one ``MethodSpec`` line in ``adapters/__init__.py``
    (which holds its parameter markers and capabilities). Merge-capable methods also define
    ``merge_saving(shape, cfg)`` (parameters one merge removes); foldable ones ``inference_variants(model)``."""

    name: str

    def attach(self, model: nn.Module, backbone: Backbone, cfg: AdapterConfig) -> nn.Module:
        """Add the adapters, freeze everything but adapters + head; return the model to train."""
        ...

    def count_params(self, shape: ArchShape, cfg: AdapterConfig) -> int:
        """Adapter parameters (head excluded) by formula, for shapes with no weights at hand."""
        ...
