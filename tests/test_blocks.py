"""Generic discovery of the block stack (lor2c_probe.blocks) on every tiny family, bare and PEFT-wrapped."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lor2c_probe.blocks import BlockStackError, default_targets, find_blocks, is_decoder_only, layer_of
from lor2c_probe.errors import UserError
from tests.conftest import make_sentences
from tests.families import DECODERS, FAMILIES, SUPPORTED, save_tiny, tiny_inputs, tiny_model

# the stack's path in the task model (sequence classifier; the causal LM of a decoder has the same backbone name)
EXPECTED = {
    "bert": "bert.encoder.layer",
    "roberta": "roberta.encoder.layer",
    "deberta-v2": "deberta.encoder.layer",
    "distilbert": "distilbert.transformer.layer",
    "electra": "electra.encoder.layer",
    "mpnet": "mpnet.encoder.layer",
    "xlm-roberta": "roberta.encoder.layer",
    "gpt2": "transformer.h",
    "llama": "model.layers",
    "mistral": "model.layers",
    "qwen2": "model.layers",
}
# PEFT's LoRA mapping has no entry for these two: the projections a user would pass with --target-modules
NO_PEFT_DEFAULT = {"distilbert": ("q_lin", "v_lin"), "mpnet": ("q", "v")}
CASES = [(f, "seq-cls") for f in SUPPORTED] + [(f, "causal-lm") for f in sorted(DECODERS)]


def _lora_targets(model_type: str) -> list[str]:
    return list(default_targets(model_type) or NO_PEFT_DEFAULT[model_type])


def _assert_layer_of(model: nn.Module, path: str, stack: nn.ModuleList, prefix: str = "") -> None:
    """Every parameter name maps to the block that owns it (by identity), and names outside the stack to None."""
    owner = {id(p): i for i, block in enumerate(stack) for p in block.parameters()}
    inside = 0
    for name, p in model.named_parameters():
        assert name.startswith(prefix)
        got = layer_of(name, path)
        assert got == owner.get(id(p)), name
        inside += got is not None
    assert inside == sum(1 for _ in stack.parameters())


def test_families_are_what_the_tests_claim():
    assert set(EXPECTED) == set(SUPPORTED) and DECODERS <= set(SUPPORTED) and set(FAMILIES) == set(SUPPORTED) | {"albert"}
    for family, build in FAMILIES.items():
        cfg = build()
        assert cfg.model_type == family
        assert (cfg.hidden_size, cfg.num_attention_heads) == (32, 4) and cfg.num_hidden_layers in (2, 3)


@pytest.mark.parametrize("family,task", CASES, ids=[f"{f}-{t}" for f, t in CASES])
def test_find_blocks_bare_and_peft_wrapped(family, task):
    from peft import LoraConfig, get_peft_model

    model = tiny_model(family, task)
    path, stack = find_blocks(model)
    assert path == EXPECTED[family]
    assert isinstance(stack, nn.ModuleList) and stack is model.get_submodule(path)
    assert len(stack) == model.config.num_hidden_layers
    _assert_layer_of(model, path, stack)
    assert find_blocks(model, path) == (path, stack)  # the override gives the same answer

    with torch.no_grad():  # the model still runs (guards the family configs themselves)
        out = model(**tiny_inputs(model))
    assert torch.isfinite(out.logits).all()

    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=_lora_targets(family), fan_in_fan_out=family == "gpt2"))  # GPT-2: Conv1D
    wpath, wstack = find_blocks(wrapped)
    assert (wpath, wstack) == (path, stack)  # relative to the unwrapped model
    assert wrapped.get_submodule("base_model.model." + wpath) is wstack
    assert find_blocks(wrapped, "base_model.model." + path) == (path, stack)  # a wrapper-relative override
    assert find_blocks(wrapped, path) == (path, stack)
    _assert_layer_of(wrapped, path, stack, prefix="base_model.model.")
    lora = [n for n, _ in wrapped.named_parameters() if "lora_A" in n]
    assert lora and {layer_of(n, path) for n in lora} == set(range(len(stack)))  # every block got its adapter


def test_find_blocks_through_a_task_typed_peft_wrapper():
    from peft import LoraConfig, TaskType, get_peft_model

    wrapped = get_peft_model(tiny_model("llama"), LoraConfig(r=2, task_type=TaskType.SEQ_CLS, target_modules=["q_proj", "v_proj"]))
    assert find_blocks(wrapped)[0] == "model.layers"


def test_layer_of_reads_only_names_inside_the_stack():
    assert layer_of("bert.encoder.layer.2.attention.self.query.weight", "bert.encoder.layer") == 2
    assert layer_of("bert.encoder.layer.11", "bert.encoder.layer") == 11  # a module name
    assert layer_of("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight", "model.layers") == 0
    assert layer_of("base_model.model.model.layers.4.mlp.up_proj.weight", "base_model.model.model.layers") == 4
    assert layer_of("bert.encoder.layer_norm.weight", "bert.encoder.layer") is None
    assert layer_of("transformer.hx.0.weight", "transformer.h") is None
    assert layer_of("transformer.h.wte", "transformer.h") is None
    assert layer_of("model.model.layers.0.weight", "model.layers") is None  # anchored at the start, not anywhere
    assert layer_of("classifier.weight", "bert.encoder.layer") is None


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_is_decoder_only(family):
    assert is_decoder_only(FAMILIES[family]()) is (family in DECODERS)


def test_is_decoder_only_says_no_for_encoder_decoders():
    from transformers import BartConfig, MarianConfig, T5Config

    for cfg in (T5Config(), BartConfig(), MarianConfig()):  # Bart and Marian have a ...ForCausalLM (their decoder)
        assert is_decoder_only(cfg) is False


def test_default_targets_are_peft_s_own():
    lora = {f: default_targets(f) for f in SUPPORTED}
    assert lora["gpt2"] == ("c_attn",)
    assert lora["bert"] == lora["roberta"] == lora["xlm-roberta"] == lora["electra"] == ("query", "value")
    assert lora["deberta-v2"] == ("query_proj", "value_proj")
    assert lora["llama"] == lora["mistral"] == lora["qwen2"] == ("q_proj", "v_proj")
    assert {f for f, t in lora.items() if not t} == set(NO_PEFT_DEFAULT)  # PEFT itself has no default for these
    assert default_targets("gpt2", "ia3") == ("c_attn", "mlp.c_proj")
    assert default_targets("llama", "ia3") == ("k_proj", "v_proj", "down_proj")
    assert default_targets("bert", "ia3") == ("key", "value", "output.dense")
    assert default_targets("electra", "ia3") is None  # IA3's mapping is shorter than LoRA's
    assert default_targets("roberta", "adalora") == ("query", "key", "value", "dense")  # the tuner's own mapping
    for method in ("vera", "loha", "lokr", "lor2c", "reslora", "dora"):  # PEFT's copies, or ours: LoRA's projections
        assert default_targets("llama", method) == ("q_proj", "v_proj")
    assert default_targets("no-such-model") is None and default_targets("albert") is None


def test_albert_is_refused_for_shared_weights():
    model = tiny_model("albert")
    with pytest.raises(BlockStackError) as e:
        find_blocks(model)
    assert str(e.value) == (
        "albert: its 3 blocks share weights (the stack albert.encoder.albert_layer_groups holds 1 module applied 3 times); "
        "per-layer probes need one module per block, so lor2c-probe does not support it"
    )
    assert isinstance(e.value, UserError)
    with pytest.raises(BlockStackError, match="share weights"):  # an override cannot get round it
        find_blocks(model, "albert.encoder.albert_layer_groups.0.albert_layers")


class _Toy(nn.Module):
    def __init__(self, **parts: nn.Module) -> None:
        super().__init__()
        for name, part in parts.items():
            self.add_module(name, part)


def _linears(n: int) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(4, 4) for _ in range(n))


def test_two_separate_stacks_of_one_length_are_ambiguous():
    toy = _Toy(encoder=_Toy(layers=_linears(3)), decoder=_Toy(blocks=_linears(3)), extra=_linears(2))
    with pytest.raises(BlockStackError) as e:
        find_blocks(toy)
    msg = str(e.value)
    assert msg == "ambiguous block stack in _Toy: encoder.layers (3 x Linear) and decoder.blocks (3 x Linear); pass --layers-path PATH"
    assert find_blocks(toy, "decoder.blocks") == ("decoder.blocks", toy.decoder.blocks)


def test_a_stack_nested_in_a_stack_of_the_same_length_is_not_ambiguous():
    mixed = nn.ModuleList([nn.Linear(2, 2), nn.ReLU(), nn.Tanh(), nn.GELU()])
    toy = _Toy(layers=nn.ModuleList(_Toy(experts=_linears(3)) for _ in range(3)), mixed=mixed)
    assert find_blocks(toy) == ("layers", toy.layers)  # "mixed" is longer but not one class


def test_no_stack_says_so_and_names_the_option():
    toy = _Toy(a=nn.Linear(4, 4), b=nn.Sequential(nn.Linear(4, 4), nn.ReLU()), c=_linears(1))
    with pytest.raises(BlockStackError) as e:
        find_blocks(toy)
    assert str(e.value) == ("cannot find a stack of repeated transformer blocks in _Toy; "
                            "pass --layers-path PATH (the dotted path of the blocks' ModuleList)")


@pytest.mark.parametrize("bad,says", [
    ("bert.encoder.layers", "--layers-path bert.encoder.layers: no module at that path in BertForSequenceClassification "
                            "(its module lists: bert.encoder.layer (3 x BertLayer))"),
    ("bert.encoder.layer.0", "--layers-path bert.encoder.layer.0: that is a BertLayer, not the ModuleList of the model's blocks"),
    ("bert.encoder", "that is a BertEncoder, not the ModuleList"),
    ("", "no module at that path"),
])
def test_a_bad_override_is_one_line(bad, says):
    model = tiny_model("bert")
    with pytest.raises(BlockStackError) as e:
        find_blocks(model, bad)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_override_checks_the_count_and_accepts_sequential():
    toy = _Toy(seq=nn.Sequential(*(nn.Linear(4, 4) for _ in range(3))), empty=nn.ModuleList())
    assert find_blocks(toy, "seq") == ("seq", toy.seq)  # no config: nothing to check the length against
    with pytest.raises(BlockStackError, match="that ModuleList is empty"):
        find_blocks(toy, "empty")
    model = tiny_model("gpt2")
    model.transformer.extra = _linears(5)
    with pytest.raises(BlockStackError, match=r"gpt2: the stack transformer.extra \(5 x Linear\) does not match config.num_hidden_layers=3;"):
        find_blocks(model)


@pytest.mark.parametrize("family", ["gpt2", "deberta-v2", "distilbert"])
def test_saved_tiny_model_loads_with_auto_classes(family, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = save_tiny(family, tmp_path / family)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    texts = [t for t, _ in make_sentences(4)] + ["the film was great"]
    batch = tok(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
    assert (batch["input_ids"] != tok.unk_token_id).all()  # the vocab covers the test sentences
    assert (batch["attention_mask"] == 0).any() and tok.pad_token_id == model.config.pad_token_id
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (len(texts), 2) and torch.isfinite(logits).all()
    assert find_blocks(model)[0] == EXPECTED[family]


# blocks whose forward returns a tuple (hidden, ...) rather than the hidden state itself (transformers 5.x)
TUPLE_OUTPUT = {"deberta-v2", "mpnet"}


@pytest.mark.parametrize("family", SUPPORTED)
def test_every_block_takes_and_returns_the_hidden_state(family):
    """The contract block hooks rely on: positional arg 0 is the (B, T, d) hidden state; the output is it, or a tuple
    led by it. GPT-2's second positional is the cache and LLaMA-likes pass the mask by keyword, so only arg 0 is safe."""
    model = tiny_model(family)
    _, stack = find_blocks(model)
    inputs = tiny_inputs(model)
    shape = (*inputs["input_ids"].shape, model.config.hidden_size)
    seen: list[tuple] = []
    hooks = [b.register_forward_hook(lambda m, args, out: seen.append((args[0].shape, out))) for b in stack]
    with torch.no_grad():
        model(**inputs)
    for h in hooks:
        h.remove()
    assert len(seen) == len(stack)
    for arg_shape, out in seen:
        assert arg_shape == shape
        assert isinstance(out, tuple) is (family in TUPLE_OUTPUT)
        assert (out[0] if isinstance(out, tuple) else out).shape == shape
