"""Tiny models and data for the test suite; everything is built offline in a few hundred milliseconds."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

POSITIVE = ["great", "loved", "wonderful", "moving", "brilliant", "fun"]
NEGATIVE = ["terrible", "boring", "dull", "awful", "slow", "bad"]
FILLER = ["the", "movie", "film", "was", "a", "plot", "and", "it", "really", "acting", "story", "very"]
SPECIAL_BERT = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_sentences(n: int, seed: int = 0) -> list[tuple[str, int]]:
    """Synthetic sentiment: label 1 iff the sentence holds a positive word. Learnable by a tiny model."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.sample(FILLER, 4) + [rng.choice(POSITIVE if label else NEGATIVE)]
        rng.shuffle(words)
        out.append((" ".join(words), label))
    return out


def _tiny_dims(vocab: int, model_type: str) -> dict:
    return dict(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64 + (2 if model_type == "roberta" else 0), type_vocab_size=2 if model_type == "bert" else 1,
    )


def build_tiny_bert(folder: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(SPECIAL_BERT + FILLER + POSITIVE + NEGATIVE) + "\n")
    tok = BertTokenizerFast.from_pretrained(str(folder))
    torch.manual_seed(1234)
    BertModel(BertConfig(**_tiny_dims(len(tok), "bert"))).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def build_tiny_roberta(folder: Path) -> Path:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    corpus = [s for s, _ in make_sentences(200, seed=99)]
    bpe.train_from_iterator(corpus, vocab_size=320, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    tok = RobertaTokenizerFast.from_pretrained(str(folder))
    torch.manual_seed(1234)
    cfg = RobertaConfig(**_tiny_dims(len(tok), "roberta"), pad_token_id=tok.pad_token_id, bos_token_id=0, eos_token_id=2)
    RobertaModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """{"bert": folder, "roberta": folder}: saved random-init encoders with their tokenizers."""
    root = tmp_path_factory.mktemp("models")
    return {"bert": build_tiny_bert(root / "bert"), "roberta": build_tiny_roberta(root / "roberta")}


@pytest.fixture(params=["bert", "roberta"])
def tiny_model_dir(request, tiny_models) -> Path:
    return tiny_models[request.param]


def write_csv(path: Path, rows: list[tuple[str, int]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    return {
        "train": write_csv(root / "train.csv", make_sentences(96, seed=1)),
        "eval": write_csv(root / "eval.csv", make_sentences(32, seed=2)),
    }


@pytest.fixture(autouse=True)
def _seed():
    import torch

    random.seed(0)
    torch.manual_seed(0)
    yield
