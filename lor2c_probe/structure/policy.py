"""The two named policies of decisions.md items 1-4, and the pure selection rules they drive."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from lor2c_probe.errors import ConfigError


@dataclass(frozen=True)
class StructurePolicy:
    """Every field a policy sets; each can be overridden on its own."""

    source: str  # spectra the score is computed from: "features" (paper) or "weights" (reference code)
    score: str  # "sfs" (tail share; low = concentrated) or "head_share" (1 - SFS)
    k: int
    merge_rule: str  # "min_sum": merge the adjacent pair with the smallest summed score
    inject_rule: str  # "min" or "max": inject into the module with the smallest / largest score
    merge_keep: str  # "more_information" (higher SFS) or "lower" (the lower layer's factors)

    def __post_init__(self) -> None:
        if self.source not in ("features", "weights"):
            raise ConfigError(f"unknown score source {self.source!r}; choose features or weights")
        if self.score not in ("sfs", "head_share"):
            raise ConfigError(f"unknown score {self.score!r}; choose sfs or head_share")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k <= 0:
            raise ConfigError(f"k must be a positive integer; got {self.k!r}")
        if self.inject_rule not in ("min", "max"):
            raise ConfigError(f"unknown inject rule {self.inject_rule!r}; choose min or max")
        if self.merge_keep not in ("more_information", "lower"):
            raise ConfigError(f"unknown merge_keep {self.merge_keep!r}; choose more_information or lower")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


POLICIES = {
    # Paper text: SFS_k (tail) of the output features; merge the lowest summed SFS, inject the lowest SFS,
    # keep the factors of the member with more information (higher SFS).
    "paper": StructurePolicy("features", "sfs", 2, "min_sum", "min", "more_information"),
    # Released code: head share of the weight product's singular values; merge the lowest summed head
    # share, inject the largest head share, keep the lower layer's factors.
    "reference": StructurePolicy("weights", "head_share", 2, "min_sum", "max", "lower"),
}


def span(module: str) -> tuple[int, int]:
    ids = module.split(".", 1)[1]
    a, _, b = ids.partition("-")
    return int(a), int(b or a)


def merge_candidates(modules: list[str]) -> list[tuple[str, str]]:
    """Adjacent pairs: the first's last block + 1 == the second's first block (a gap, e.g. an injected
    layer, breaks adjacency)."""
    ordered = sorted(modules, key=span)
    return [(a, b) for a, b in zip(ordered, ordered[1:]) if span(a)[1] + 1 == span(b)[0]]


def inject_candidates(modules: list[str]) -> list[str]:
    """Modules never merged (single-block spans)."""
    return [m for m in sorted(modules, key=span) if span(m)[0] == span(m)[1]]


def choose_merge(scores: dict[str, float], policy: StructurePolicy) -> tuple[tuple[str, str], list[dict[str, Any]]] | None:
    """(pair, candidate list with scores) or None when no adjacent pair exists. Ties -> lowest layers."""
    pairs = merge_candidates(list(scores))
    if not pairs:
        return None
    table = [{"modules": [a, b], "score": scores[a] + scores[b]} for a, b in pairs]
    best = min(range(len(pairs)), key=lambda i: (table[i]["score"], i))
    return pairs[best], table


def choose_injection(scores: dict[str, float], policy: StructurePolicy) -> tuple[str, list[dict[str, Any]]] | None:
    cands = inject_candidates(list(scores))
    if not cands:
        return None
    table = [{"modules": [m], "score": scores[m]} for m in cands]
    sign = 1 if policy.inject_rule == "min" else -1
    best = min(range(len(cands)), key=lambda i: (sign * table[i]["score"], i))
    return cands[best], table


def survivor(a: str, b: str, sfs_scores: dict[str, float], policy: StructurePolicy) -> str:
    """Whose factors the merged module keeps: the lower layer, or the member with more information (higher SFS)."""
    if policy.merge_keep == "lower":
        return a
    return b if sfs_scores[b] > sfs_scores[a] else a
