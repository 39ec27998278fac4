"""Tokenise once, then cut seeded batches padded to their longest example."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lor2c_probe.data.examples import Examples


@dataclass(frozen=True)
class Encoded:
    features: dict[str, list[list[int]]]  # input_ids, attention_mask[, token_type_ids]
    labels: torch.Tensor  # (n,) long for classification, float for regression
    pad_id: int

    def __len__(self) -> int:
        return len(self.labels)


def encode(tokenizer, ex: Examples, max_length: int, regression: bool) -> Encoded:
    enc = tokenizer(ex.text_a, ex.text_b, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    labels = torch.tensor(ex.labels, dtype=torch.float32 if regression else torch.long)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encoded({k: enc[k] for k in keys}, labels, pad_id)


def take(enc: Encoded, idx: np.ndarray) -> Encoded:
    """The examples at ``idx`` (e.g. the spectral probe batch)."""
    sel = torch.as_tensor(np.asarray(idx), dtype=torch.long)
    return Encoded({k: [rows[i] for i in idx] for k, rows in enc.features.items()}, enc.labels[sel], enc.pad_id)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of epoch ``epoch``: a function of (seed, epoch) only, so methods and resumes agree."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def collate(enc: Encoded, idx: np.ndarray | list[int]) -> dict[str, torch.Tensor]:
    """(batch, longest) tensors; padding uses pad_id for ids and 0 for masks and segment ids."""
    longest = max(len(enc.features["input_ids"][i]) for i in idx)
    batch = {}
    for key, rows in enc.features.items():
        fill = enc.pad_id if key == "input_ids" else 0
        batch[key] = torch.tensor([rows[i] + [fill] * (longest - len(rows[i])) for i in idx], dtype=torch.long)
    batch["labels"] = enc.labels[torch.as_tensor(np.asarray(idx), dtype=torch.long)]
    return batch


def batches(enc: Encoded, order: np.ndarray, batch_size: int):
    for start in range(0, len(order), batch_size):
        yield collate(enc, order[start : start + batch_size])
