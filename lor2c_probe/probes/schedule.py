"""When a probe records: a callable ``step -> bool`` that also describes itself for the manifest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Every:
    """Record at optimizer steps n, 2n, 3n, ... (steps count from 1)."""

    n: int = 1

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ValueError(f"schedule interval must be a positive integer; got {self.n}")

    def __call__(self, step: int) -> bool:
        return step % self.n == 0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "every", "n": self.n}
