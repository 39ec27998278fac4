"""The in-memory dataset every source produces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lor2c_probe.errors import UserError


@dataclass(frozen=True)
class Examples:
    """Parallel lists; ``text_b`` is None for single-sentence tasks; labels are ids or floats."""

    text_a: list[str]
    text_b: list[str] | None
    labels: list[float] | list[int]

    def __len__(self) -> int:
        return len(self.text_a)

    def take(self, idx: np.ndarray | list[int]) -> Examples:
        return Examples(
            [self.text_a[i] for i in idx],
            None if self.text_b is None else [self.text_b[i] for i in idx],
            [self.labels[i] for i in idx],
        )

    def head(self, n: int | None) -> Examples:
        return self if n is None or n >= len(self) else self.take(list(range(n)))


def seeded_split(ex: Examples, eval_fraction: float, seed: int) -> tuple[Examples, Examples]:
    """Deterministic (train, eval) split: a permutation from ``seed``, the first fraction to eval."""
    if len(ex) < 2:
        raise UserError(f"need at least 2 examples to split off an eval set; got {len(ex)}")
    perm = np.random.default_rng(seed).permutation(len(ex))
    n_eval = min(max(1, round(eval_fraction * len(ex))), len(ex) - 1)
    return ex.take(np.sort(perm[n_eval:])), ex.take(np.sort(perm[:n_eval]))
