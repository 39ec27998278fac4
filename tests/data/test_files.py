from __future__ import annotations

import json

import pytest

from lor2c_probe.config import DataConfig
from lor2c_probe.data.load import load_task
from lor2c_probe.errors import UserError


def _cfg(train, eval=None, **kw):
    return DataConfig(task="custom", train_file=str(train), eval_file=str(eval) if eval else None, **kw)


def test_csv_with_string_labels_and_seeded_split(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("text,label\n" + "\n".join(f"sentence {i},{'pos' if i % 2 else 'neg'}" for i in range(20)) + "\n")
    train, ev, spec, _ = load_task(_cfg(p))
    assert spec.labels == ("neg", "pos") and not spec.regression and len(ev) == 2 and len(train) == 18
    again = load_task(_cfg(p))
    assert again[1].text_a == ev.text_a  # deterministic
    other = load_task(_cfg(p, split_seed=5))
    assert other[1].text_a != ev.text_a


def test_jsonl_pairs_and_regression(tmp_path):
    p = tmp_path / "d.jsonl"
    rows = [{"sentence1": f"a{i}", "sentence2": f"b{i}", "label": i / 4} for i in range(8)]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    train, ev, spec, _ = load_task(_cfg(p, p))
    assert spec.pair and spec.regression and spec.metrics == ("pearson", "spearman")
    assert train.text_b[1] == "b1" and train.labels[2] == 0.5


def test_invalid_json_names_file_and_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "ok", "label": 1}\n{"text": "broken", \n')
    with pytest.raises(UserError, match=r"d.jsonl:2: invalid JSON"):
        load_task(_cfg(p))


def test_missing_field_names_file_and_line(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("text,label\ngood,1\n,0\n")
    with pytest.raises(UserError, match=r"d.csv:3: missing or empty 'text'"):
        load_task(_cfg(p))


def test_ragged_csv_names_file_and_line(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("text,label\ngood,1\nbad,0,extra\n")
    with pytest.raises(UserError, match=r"d.csv:3: expected 2 fields"):
        load_task(_cfg(p))


@pytest.mark.parametrize(
    "content,message",
    [("", "empty file"), ("text,label\n", "no examples"), ("words,label\nx,1\n", "no text column")],
)
def test_empty_or_headless_files(tmp_path, content, message):
    p = tmp_path / "d.csv"
    p.write_text(content)
    with pytest.raises(UserError, match=message):
        load_task(_cfg(p))


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(UserError, match="data file not found"):
        load_task(_cfg(tmp_path / "nope.csv"))
    p = tmp_path / "d.parquet"
    p.write_text("x")
    with pytest.raises(UserError, match="unsupported file type .parquet"):
        load_task(_cfg(p))


def test_eval_label_unseen_in_train(tmp_path):
    t, e = tmp_path / "t.csv", tmp_path / "e.csv"
    t.write_text("text,label\na,x\nb,y\n")
    e.write_text("text,label\nc,z\n")
    with pytest.raises(UserError, match="label 'z' does not occur in the training file"):
        load_task(_cfg(t, e))


def test_single_class_is_rejected(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("text,label\na,1\nb,1\n")
    with pytest.raises(UserError, match="at least 2 distinct labels"):
        load_task(_cfg(p))
