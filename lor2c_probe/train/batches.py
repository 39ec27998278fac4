"""Tokenise once, then cut seeded batches padded to their longest example."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lor2c_probe.data.examples import Examples


@dataclass(frozen=True)
class Encoded:
    features: dict[str, list[list[int]]]  # input_ids, attention_mask[, token_type_ids][, labels: token labels of a causal LM]
    labels: torch.Tensor  # (n,) long for classification, float for regression; zeros (unused) for a causal LM
    pad_id: int

    def __len__(self) -> int:
        return len(self.labels)


IGNORE = -100  # label of a token that carries no loss (prompt tokens with loss_on="response", padding)


def encode_causal(tokenizer, ex: Examples, max_length: int, loss_on: str = "all") -> Encoded:
    """Prompt (``text_a``, with BOS) + response (``text_b``) + EOS, truncated to ``max_length`` tokens.

    Token labels are the input ids (the model shifts them), with the prompt's set to IGNORE when
    ``loss_on == "response"``. Examples whose response is cut away entirely keep their prompt."""
    assert ex.text_b is not None
    prompts = tokenizer(ex.text_a, add_special_tokens=True)["input_ids"]
    responses = tokenizer(ex.text_b, add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids, labels = [], []
    for p, r in zip(prompts, responses):
        if p and tokenizer.eos_token_id is not None and p[-1] == tokenizer.eos_token_id:
            p = p[:-1]  # tokenizers that append EOS to every text: the prompt must not end the sequence
        seq = (p + r + eos)[:max_length]
        lab = list(seq) if loss_on == "all" else ([IGNORE] * len(p) + r + eos)[:max_length]
        ids.append(seq)
        labels.append(lab)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    feats = {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids], "labels": labels}
    return Encoded(feats, torch.zeros(len(ids), dtype=torch.long), pad_id)


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
        fill = {"input_ids": enc.pad_id, "labels": IGNORE}.get(key, 0)
        batch[key] = torch.tensor([rows[i] + [fill] * (longest - len(rows[i])) for i in idx], dtype=torch.long)
    if "labels" not in enc.features:  # token labels (causal LM) came with the features
        batch["labels"] = enc.labels[torch.as_tensor(np.asarray(idx), dtype=torch.long)]
    return batch


def batches(enc: Encoded, order: np.ndarray, batch_size: int):
    for start in range(0, len(order), batch_size):
        yield collate(enc, order[start : start + batch_size])
