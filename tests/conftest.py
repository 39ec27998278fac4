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


def _cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count); os.cpu_count off Linux."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # pytest -n N: the cores are shared out, not oversubscribed N times
    import torch

    torch.set_num_threads(max(1, _cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


@pytest.hookimpl(optionalhook=True)  # pytest without xdist (or -p no:xdist) does not know this hook
def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per core this process may run on, at most 4 (each holds torch, transformers and PEFT:
    about 1 GiB); PYTEST_XDIST_AUTO_NUM_WORKERS still decides when set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    return max(1, min(4, _cores()))


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


def build_tiny_llama(folder: Path) -> Path:
    """A 3-block LLaMA with grouped-query attention (4 query heads, 2 key/value heads, so v_proj is d/2 wide)
    and a word-level tokenizer built offline from the Alpaca template and the test sentences."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from lor2c_probe.data.instructions import PROMPT_INPUT, PROMPT_NO_INPUT

    folder.mkdir(parents=True, exist_ok=True)
    special = ["<unk>", "<s>", "</s>", "<pad>"]
    words = set(FILLER + POSITIVE + NEGATIVE + ["positive", "negative", "Classify", "review", "sentiment", "the", "of", "."])
    pre = pre_tokenizers.Whitespace()
    for text in (PROMPT_INPUT, PROMPT_NO_INPUT):
        words.update(w for w, _ in pre.pre_tokenize_str(text))
    vocab = {t: i for i, t in enumerate(special + sorted(words))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    torch.manual_seed(1234)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=3,
                      tie_word_embeddings=False)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def alpaca_records(n: int, seed: int) -> list[dict]:
    """Sentiment as instructions: every third record has no input (the template's other branch)."""
    out = []
    for i, (text, label) in enumerate(make_sentences(n, seed=seed)):
        word = "positive" if label else "negative"
        if i % 3 == 2:
            out.append({"instruction": f"Classify the sentiment of {text} .", "input": "", "output": word})
        else:
            out.append({"instruction": "Classify the sentiment of the review .", "input": text, "output": word})
    return out


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("models") / "llama")


@pytest.fixture(scope="session")
def tiny_alpaca(tmp_path_factory) -> dict[str, Path]:
    import json

    root = tmp_path_factory.mktemp("alpaca")
    (root / "train.json").write_text(json.dumps(alpaca_records(64, seed=5), indent=1))
    (root / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in alpaca_records(16, seed=6)))
    return {"train": root / "train.json", "eval": root / "eval.jsonl"}


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
