"""Alpaca-format instruction data: the template, file reading, token labels, padding and truncation."""

from __future__ import annotations

import json

import pytest
import torch

from lor2c_probe.config import ConfigError, DataConfig
from lor2c_probe.data.instructions import read_alpaca, render_prompt
from lor2c_probe.data.load import load_task
from lor2c_probe.errors import UserError
from lor2c_probe.train.batches import IGNORE, collate, encode_causal


def test_template_is_alpaca_loras_with_and_without_input():
    # tloen/alpaca-lora templates/alpaca.json, verbatim.
    assert render_prompt("Add.", "2 and 3") == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n### Instruction:\nAdd.\n\n### Input:\n2 and 3\n\n### Response:\n")
    assert render_prompt("Say hi.") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nSay hi.\n\n### Response:\n")


def test_json_array_and_json_lines_read_the_same(tmp_path):
    recs = [{"instruction": "a", "input": "b", "output": "c"}, {"instruction": "d", "output": "e"}]
    (tmp_path / "x.json").write_text(json.dumps(recs))
    (tmp_path / "x.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n\n")
    one, two = read_alpaca(tmp_path / "x.json"), read_alpaca(tmp_path / "x.jsonl")
    assert one == two and one.text_b == ["c", "e"] and one.text_a[1] == render_prompt("d")


@pytest.mark.parametrize("content,message", [
    ('[{"instruction": "a"}]', "record 0: missing text field 'output'"),
    ('[{"instruction": "a", "output": "b", "input": 3}]', "field 'input' must be text"),
    ('[1]', "expected an object"),
    ('[{"instruction": "a", "output": "b"},', "invalid JSON at line 1"),
    ('{"instruction": "a", "output": "b"}\n{oops}\n', "x.json:2: invalid JSON"),
    ("[]", "no records"),
])
def test_bad_files_name_the_record(tmp_path, content, message):
    (tmp_path / "x.json").write_text(content)
    with pytest.raises(UserError, match=message):
        read_alpaca(tmp_path / "x.json")


def test_alpaca_task_needs_a_file_and_loss_on_needs_alpaca():
    with pytest.raises(ConfigError, match="task 'alpaca' needs --train-file"):
        DataConfig(task="alpaca")
    with pytest.raises(ConfigError, match="--loss-on is for instruction tuning"):
        DataConfig(loss_on="response")
    with pytest.raises(ConfigError, match="unknown loss_on 'prompt'"):
        DataConfig(task="alpaca", train_file="x.json", loss_on="prompt")


def test_labels_cover_everything_or_only_the_response(tiny_llama, tiny_alpaca):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_llama))
    train, ev, spec, _ = load_task(DataConfig(task="alpaca", train_file=str(tiny_alpaca["train"]), eval_file=str(tiny_alpaca["eval"])))
    assert spec.causal and (len(train), len(ev)) == (64, 16)
    every = encode_causal(tok, train, 128, "all")
    resp = encode_causal(tok, train, 128, "response")
    for i in range(len(train)):
        prompt = tok(train.text_a[i])["input_ids"]
        answer = tok(train.text_b[i], add_special_tokens=False)["input_ids"]
        ids = every.features["input_ids"][i]
        assert ids == prompt + answer + [tok.eos_token_id] and prompt[0] == tok.bos_token_id
        assert every.features["labels"][i] == ids
        assert resp.features["labels"][i] == [IGNORE] * len(prompt) + answer + [tok.eos_token_id]
    short = encode_causal(tok, train, 10, "response")  # truncation keeps the first 10 tokens
    assert all(len(x) == 10 for x in short.features["input_ids"])
    assert short.features["labels"][0] == [IGNORE] * 10  # the response was cut away


def test_collate_pads_token_labels_with_ignore(tiny_llama, tiny_alpaca):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_llama))
    train, *_ = load_task(DataConfig(task="alpaca", train_file=str(tiny_alpaca["train"])))
    enc = encode_causal(tok, train, 128)
    lengths = [len(x) for x in enc.features["input_ids"]]
    i, j = lengths.index(min(lengths)), lengths.index(max(lengths))
    batch = collate(enc, [i, j])
    assert batch["input_ids"].shape == batch["labels"].shape == (2, max(lengths))
    pad = max(lengths) - min(lengths)
    assert pad > 0 and torch.all(batch["labels"][0, -pad:] == IGNORE) and torch.all(batch["attention_mask"][0, -pad:] == 0)
    assert torch.all(batch["input_ids"][0, -pad:] == tok.pad_token_id)
