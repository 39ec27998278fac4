"""Tiny random model families, built offline from configs, for tests that must hold for any Hugging Face model.

Every family has hidden size 32, 4 heads, FFN width 64, vocab 100 and 2-3 blocks, written with its own config
class's argument names (GPT-2's n_embd/n_layer, DistilBERT's dim/n_layers/hidden_dim ...), so a test that only
passes for BERT-style names fails here. No pytest fixtures: tests/conftest.py belongs to someone else.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import FILLER, NEGATIVE, POSITIVE

VOCAB = 100
# Every family shares one word-level tokenizer, so special ids are the same everywhere (pad 0, bos/cls 2, eos/sep 3).
SPECIAL = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]
PAD, UNK, BOS, EOS, MASK = range(len(SPECIAL))
WORDS = sorted(set(FILLER + POSITIVE + NEGATIVE + ["positive", "negative", "review", "sentiment", "of", "."]))
_IDS = dict(pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS)


def _bert_like(cls_name: str, layers: int, **extra: Any) -> Callable[[], Any]:
    """BERT's argument names (BERT, RoBERTa, XLM-R, ELECTRA, MPNet, DeBERTa-v2, ALBERT all use them)."""

    def build() -> Any:
        import transformers

        kw = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=66, **_IDS)
        kw.update(extra)
        return getattr(transformers, cls_name)(**kw)

    return build


def _distilbert() -> Any:
    from transformers import DistilBertConfig

    return DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64, pad_token_id=PAD)


def _gpt2() -> Any:
    from transformers import GPT2Config

    # pad_token_id: GPT-2 sequence classification pools the last non-pad token and refuses a batch without it
    return GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=3, n_head=4, n_inner=64, n_positions=64, **_IDS)


def _llama_like(cls_name: str, layers: int) -> Callable[[], Any]:
    """LLaMA, Mistral, Qwen2: grouped-query attention (4 query heads, 2 key/value heads)."""

    def build() -> Any:
        import transformers

        return getattr(transformers, cls_name)(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False, **_IDS,
        )

    return build


FAMILIES: dict[str, Callable[[], Any]] = {
    "bert": _bert_like("BertConfig", 3, type_vocab_size=2),
    "roberta": _bert_like("RobertaConfig", 3),
    # as deberta-v3: relative attention only (c2p + p2c, bucketed), no absolute positions
    "deberta-v2": _bert_like("DebertaV2Config", 2, relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=16,
                             max_relative_positions=-1, norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False),
    "distilbert": _distilbert,
    "electra": _bert_like("ElectraConfig", 3, embedding_size=16),  # 16 -> 32 projection before the blocks
    "mpnet": _bert_like("MPNetConfig", 2),  # keep 32 buckets: MPNet's forward hardcodes num_buckets=32
    "xlm-roberta": _bert_like("XLMRobertaConfig", 2),
    "gpt2": _gpt2,
    "llama": _llama_like("LlamaConfig", 3),
    "mistral": _llama_like("MistralConfig", 2),
    "qwen2": _llama_like("Qwen2Config", 2),
    # ALBERT shares one layer group across all its blocks: lor2c-probe refuses it
    "albert": _bert_like("AlbertConfig", 3, embedding_size=16),
}
DECODERS = {"gpt2", "llama", "mistral", "qwen2"}
SUPPORTED = [f for f in FAMILIES if f != "albert"]


def tiny_model(family: str, task: str = "seq-cls", num_labels: int = 2) -> Any:
    """A random-init model of ``family``: task "seq-cls" (sequence classifier), "causal-lm" or "base" (no head)."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

    cfg = FAMILIES[family]()
    torch.manual_seed(0)
    if task == "seq-cls":
        cfg.num_labels = num_labels
        model = AutoModelForSequenceClassification.from_config(cfg)
    elif task == "causal-lm":
        model = AutoModelForCausalLM.from_config(cfg)
    elif task == "base":
        model = AutoModel.from_config(cfg)
    else:
        raise ValueError(f"unknown task {task!r}: seq-cls, causal-lm or base")
    return model.eval()


def tiny_inputs(model: Any, batch: int = 2, seq: int = 7) -> dict[str, Any]:
    """Random word ids (no special ids) with the last two tokens of row 1 padded (right padding)."""
    import torch

    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    ids = torch.randint(len(SPECIAL), min(vocab, len(SPECIAL) + len(WORDS)), (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    if batch > 1:
        mask[1, -2:] = 0
        ids[1, -2:] = PAD
    return {"input_ids": ids, "attention_mask": mask}


def tiny_tokenizer() -> Any:
    """A word-level fast tokenizer over the test sentences' words: "<s> words </s>" (cls/bos first, sep/eos last)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL + WORDS)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B </s>", special_tokens=[("<s>", BOS), ("</s>", EOS)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   cls_token="<s>", sep_token="</s>", mask_token="<mask>", model_max_length=64)


def save_tiny(family: str, folder: Path) -> Path:
    """Save the seq-cls model of ``family`` and the word-level tokenizer to ``folder``; both load back offline."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer()
    assert len(tok) <= VOCAB, "the config's vocab must cover the tokenizer"
    tiny_model(family, "seq-cls").save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
