"""Property: whatever a data file holds, every reader gives a valid dataset or a UserError, never another exception."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

# hypothesis caches Unicode tables under ./.hypothesis even with no example database: keep them out of the work tree.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "lor2c-probe-hypothesis"))
from hypothesis import given, settings  # noqa: E402 - reads the variable above on first use
from hypothesis import strategies as st

from lor2c_probe.config import DataConfig
from lor2c_probe.data.examples import Examples
from lor2c_probe.data.glue import GLUE_HEADERS
from lor2c_probe.data.instructions import read_alpaca
from lor2c_probe.data.load import load_task
from lor2c_probe.data.tasks import TASKS, TaskSpec
from lor2c_probe.errors import UserError

FUZZ = settings(max_examples=150, deadline=None, database=None)  # no example database: every run draws afresh
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252")
GLUE_FOLDERS = {"sst2": "SST-2", "cola": "CoLA", "rte": "RTE", "stsb": "STS-B", "qnli": "QNLI", "mrpc": "MRPC"}

# Structural characters and near-misses of valid values, so faulty files come close to valid ones.
SYNTAX = ',\t\n\r"\\{}[]: \x00\ufeffé'
KEYS = st.sampled_from(["text", "sentence", "sentence1", "sentence2", "label", "", "Label", "instruction", "input", "output"])
LABEL_TEXT = st.sampled_from(["0", "1", "2", "0.5", "-3", " 1", "1_0", "١", "nan", "inf", "-Infinity", "1e400", "pos", "neg", "", " "])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | LABEL_TEXT | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
CLEAN_CELL = st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "Zs")), min_size=1, max_size=10).filter(str.strip)
FAULTY_CELL = st.one_of(st.text(max_size=10), LABEL_TEXT, st.text(alphabet=SYNTAX + "ab01", max_size=10))
# One label style per clean file; a faulty file draws any label text.
LABEL_POOLS = st.sampled_from([("0", "1"), ("pos", "neg"), ("0.5", "1", "2.25")]).map(st.sampled_from)
GLUE_LABELS = {"sst2": ("0", "1"), "cola": ("0", "1"), "mrpc": ("0", "1"), "rte": ("entailment", "not_entailment"),
               "qnli": ("entailment", "not_entailment"), "stsb": ("0", "3.5", "5")}
COLA_COLUMNS = ("source", "label", "judgement", "sentence")  # CoLA's files have no header line
_QUARTER = st.sampled_from([False, False, False, True])  # not integers(): hypothesis favours a range's bounds


@dataclass(frozen=True)
class Maker:
    """Draws one file's parts: a clean file is valid throughout; in a faulty one a quarter of the parts go wrong."""

    draw: Callable
    faulty: bool

    @classmethod
    def start(cls, draw: Callable) -> Maker:
        return cls(draw, draw(st.booleans()))

    def fault(self) -> bool:
        return self.faulty and self.draw(_QUARTER)

    def pick(self, clean: st.SearchStrategy, faulty: st.SearchStrategy):
        return self.draw(faulty if self.fault() else clean)

    def encode(self, text: str) -> bytes:
        """``text`` in UTF-8 (a faulty file: any encoding, random bytes spliced in)."""
        data = text.encode(self.pick(st.sampled_from(["utf-8", "utf-8-sig"]), st.sampled_from(ENCODINGS)), errors="replace")
        if self.fault():
            at = self.draw(st.integers(0, len(data)))
            data = data[:at] + self.draw(st.binary(min_size=1, max_size=4)) + data[at:]
        return data

    def splice(self, text: str, chars: st.SearchStrategy) -> str:
        if not self.fault():
            return text
        at = self.draw(st.integers(0, len(text)))
        return text[:at] + self.draw(chars) + text[at:]


ARBITRARY = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    st.builds(lambda text, enc: text.encode(enc, errors="replace"), st.text(alphabet=SYNTAX + "abtexlbn01", max_size=200),
              st.sampled_from(ENCODINGS)),
)


def _write_csv(rows: list[list[str]], **fmt) -> str:
    out = io.StringIO()
    csv.writer(out, **fmt).writerows(rows)
    return out.getvalue()


@st.composite
def csv_file(draw, delimiter: str) -> bytes:
    mk = Maker.start(draw)
    header = mk.pick(st.sampled_from([["text", "label"], ["sentence1", "sentence2", "label"]]), st.lists(KEYS, max_size=4))
    label = mk.pick(LABEL_POOLS, st.just(LABEL_TEXT))
    rows = [header]
    for _ in range(mk.pick(st.integers(2, 8), st.integers(0, 2))):
        width = mk.pick(st.just(len(header)), st.integers(0, len(header) + 1))
        rows.append([draw(label) if name == "label" else mk.pick(CLEAN_CELL, FAULTY_CELL) for name in (header + ["x"] * width)[:width]])
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC, csv.QUOTE_NONE]))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    try:
        text = _write_csv(rows, delimiter=delimiter, quoting=quoting, escapechar="\\", lineterminator=ending)
    except csv.Error:  # QUOTE_NONE cannot write a lone empty field
        text = _write_csv(rows, delimiter=delimiter, quoting=csv.QUOTE_ALL, lineterminator=ending)
    return mk.encode(mk.splice(text, st.sampled_from(['"', delimiter, "\n", "\r"])))  # a stray quote or break


@st.composite
def jsonl_file(draw, keys: list[str]) -> bytes:
    mk = Maker.start(draw)
    label = mk.pick(LABEL_POOLS | st.just(st.integers(-2, 3)), st.just(JSON))

    def record() -> object:
        if mk.fault():
            return draw(st.dictionaries(KEYS, JSON, max_size=4) | JSON)
        return {k: draw(label) if k == "label" else mk.pick(CLEAN_CELL, FAULTY_CELL | JSON) for k in keys}

    lines = [json.dumps(record(), ensure_ascii=draw(st.booleans())) for _ in range(mk.pick(st.integers(2, 8), st.integers(0, 2)))]
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))
    return mk.encode(mk.splice(text, st.text(alphabet=SYNTAX + "ab01", min_size=1, max_size=12)))  # json.dumps writes NaN too


@st.composite
def glue_file(draw, task: str) -> bytes:
    mk = Maker.start(draw)
    columns = COLA_COLUMNS if task == "cola" else GLUE_HEADERS[task]
    label_col = {"cola": "label", "stsb": "score", "mrpc": "Quality"}.get(task, "label")
    others = st.sampled_from([list(h) for h in GLUE_HEADERS.values()]) | st.lists(KEYS, max_size=5)
    rows = [] if task == "cola" else [mk.pick(st.just(list(columns)), others)]
    for _ in range(mk.pick(st.integers(1, 6), st.integers(0, 2))):
        if mk.fault():
            rows.append(draw(st.lists(FAULTY_CELL, max_size=6)))
        else:
            label = mk.pick(st.sampled_from(GLUE_LABELS[task]), LABEL_TEXT | FAULTY_CELL)
            rows.append([label if c == label_col else mk.pick(CLEAN_CELL, FAULTY_CELL) for c in columns])
    return mk.encode("".join("\t".join(r) + "\n" for r in rows))


@st.composite
def alpaca_file(draw) -> tuple[str, bytes]:
    mk = Maker.start(draw)

    def record() -> object:
        if mk.fault():
            return draw(st.dictionaries(KEYS, JSON, max_size=4) | JSON)
        rec = {"instruction": mk.pick(CLEAN_CELL, JSON), "output": mk.pick(CLEAN_CELL, JSON)}
        return rec | ({"input": mk.pick(CLEAN_CELL, JSON)} if draw(st.booleans()) else {})

    records = [record() for _ in range(mk.pick(st.integers(1, 6), st.integers(0, 2)))]
    if draw(st.booleans()):
        text, suffix = json.dumps(records, indent=draw(st.sampled_from([None, 1]))), ".json"
    else:
        text, suffix = "\n".join(json.dumps(r) for r in records), ".jsonl"
    return suffix, mk.encode(mk.splice(text, st.text(alphabet=SYNTAX, min_size=1, max_size=3)))


def _valid(ex: Examples, spec: TaskSpec) -> None:
    assert len(ex) > 0 and (ex.text_b is not None) == (spec.pair or spec.causal)  # causal: text_b holds the responses
    for texts in (ex.text_a, ex.text_b or ex.text_a):
        assert len(texts) == len(ex) and all(isinstance(t, str) and t.encode("utf-8") is not None for t in texts)
    if spec.causal:
        return
    if spec.regression:
        assert all(isinstance(y, float) and math.isfinite(y) for y in ex.labels)
    else:
        assert all(isinstance(y, int) and 0 <= y < spec.num_labels for y in ex.labels)


def _custom(folder, suffix: str, train: bytes, eval: bytes | None = None) -> None:
    (folder / f"train{suffix}").write_bytes(train)
    if eval is not None:
        (folder / f"eval{suffix}").write_bytes(eval)
    cfg = DataConfig(task="custom", train_file=str(folder / f"train{suffix}"),
                     eval_file=None if eval is None else str(folder / f"eval{suffix}"))
    try:
        train_ex, eval_ex, spec, _ = load_task(cfg)
    except UserError:
        return
    _valid(train_ex, spec)
    _valid(eval_ex, spec)
    assert spec.regression or len(spec.labels) >= 2


def _glue(folder, task: str, content: bytes) -> None:
    (folder / GLUE_FOLDERS[task]).mkdir(exist_ok=True)
    for split in ("train", "dev"):
        (folder / GLUE_FOLDERS[task] / f"{split}.tsv").write_bytes(content)
    try:
        train_ex, eval_ex, spec, _ = load_task(DataConfig(task=task, data_dir=str(folder)))
    except UserError:
        return
    _valid(train_ex, spec)
    _valid(eval_ex, spec)


def _alpaca(folder, suffix: str, content: bytes) -> None:
    path = folder / f"data{suffix}"
    path.write_bytes(content)
    try:
        ex = read_alpaca(path)
    except UserError:
        return
    _valid(ex, TASKS["alpaca"])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")  # module-scoped: hypothesis reruns the test body many times


READERS = {
    "csv": lambda d, b: _custom(d, ".csv", b),
    "tsv": lambda d, b: _custom(d, ".tsv", b),
    "jsonl": lambda d, b: _custom(d, ".jsonl", b),
    "glue-sst2": lambda d, b: _glue(d, "sst2", b),
    "glue-cola": lambda d, b: _glue(d, "cola", b),
    "glue-stsb": lambda d, b: _glue(d, "stsb", b),
    "alpaca-json": lambda d, b: _alpaca(d, ".json", b),
    "alpaca-jsonl": lambda d, b: _alpaca(d, ".jsonl", b),
}


@pytest.mark.parametrize("reader", list(READERS))
@FUZZ
@given(data=ARBITRARY)
def test_arbitrary_bytes(folder, reader, data):
    READERS[reader](folder, data)


@pytest.mark.parametrize("suffix,delimiter", [(".csv", ","), (".tsv", "\t")])
@FUZZ
@given(st.data())
def test_generated_csv(folder, suffix, delimiter, data):
    _custom(folder, suffix, data.draw(csv_file(delimiter)), data.draw(st.none() | csv_file(delimiter)))


@FUZZ
@given(st.data())
def test_generated_jsonl(folder, data):
    keys = data.draw(st.sampled_from([["text", "label"], ["sentence1", "sentence2", "label"], ["sentence", "label"]]))
    _custom(folder, ".jsonl", data.draw(jsonl_file(keys)), data.draw(st.none() | jsonl_file(keys)))


@FUZZ
@given(st.data())
def test_generated_glue_tsv(folder, data):
    task = data.draw(st.sampled_from(list(GLUE_FOLDERS)))
    _glue(folder, task, data.draw(glue_file(task)))


@FUZZ
@given(alpaca_file())
def test_generated_alpaca(folder, file):
    _alpaca(folder, *file)
