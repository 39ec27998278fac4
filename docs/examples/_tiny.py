"""A tiny random BERT with a LoRA (PEFT) and a learnable synthetic task, so every example runs in seconds on a CPU,
offline. To probe a real model, load it with ``AutoModelForSequenceClassification.from_pretrained(path)`` instead and
feed your tokenized data; nothing else in the examples changes."""

from __future__ import annotations

import argparse
import warnings

import torch
from peft import LoraConfig, get_peft_model
from transformers import BertConfig, BertForSequenceClassification

VOCAB, SEQ = 500, 16


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
                        max_position_embeddings=64, num_labels=2)
    model = BertForSequenceClassification(config)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["classifier"])
    return get_peft_model(model, lora)


def examples(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``n`` examples of varying length; the label is whether token 7 occurs (learnable by attention)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(6, SEQ + 1, (1,), generator=g))
        ids = torch.randint(10, VOCAB, (length,), generator=g)
        label = int(torch.rand((), generator=g) < 0.5)
        if label:
            ids[int(torch.randint(1, length, (1,), generator=g))] = 7
        out.append({"input_ids": ids, "labels": torch.tensor(label)})
    return out


def collate(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Right-padded batch with an attention mask (pad id 0)."""
    longest = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), longest, dtype=torch.long)
    mask = torch.zeros(len(rows), longest, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r["input_ids"])] = r["input_ids"]
        mask[i, : len(r["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.stack([r["labels"] for r in rows])}


@torch.no_grad()
def accuracy(model: torch.nn.Module, rows: list[dict[str, torch.Tensor]]) -> float:
    was = model.training
    model.eval()
    batch = collate(rows)
    pred = model(**batch).logits.argmax(-1)
    model.train(was)
    return float((pred == batch["labels"]).float().mean())


def summary(out: str) -> str:
    """What the run directory holds, as the examples print it."""
    from lor2c_probe import read_manifest, read_table

    m = read_manifest(out)
    tables = ("metrics", "grads", "activation_grads", "spectra", "sfs", "histograms", "updates")
    counts = ", ".join(f"{t} {len(read_table(out, t))}" for t in tables)
    return (f"{m['status']}: {m['results']['steps']} steps recorded into {out} (rows: {counts})\n"
            f"next: lor2c-probe report {out} --out {out}-report")


def arguments(doc: str, **extra: str) -> argparse.Namespace:
    """--out (a new run directory), --epochs, --accum (micro-batches per optimizer step), and ``extra`` optional
    string options (name -> help). Quiets transformers' deprecation warnings, which are not the example's."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="a new run directory")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--accum", type=int, default=2, help="micro-batches per optimizer step")
    for name, help_text in extra.items():
        ap.add_argument(f"--{name}", default=None, help=help_text)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")  # Lightning, about a tiny in-memory loader
    return ap.parse_args()
