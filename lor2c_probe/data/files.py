"""The user's own data: CSV, TSV or JSONL with a ``label`` column and ``text`` (or ``sentence1`` + ``sentence2``).

Labels: integers or class names are classes (ids in sorted order of the training labels); any
non-integer number makes the task a regression; see ``labels`` for what is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lor2c_probe.data import labels as lab
from lor2c_probe.data.examples import Examples
from lor2c_probe.data.jsontext import json_kind, json_line
from lor2c_probe.data.textfile import check_header, check_text, csv_rows, lines, read_text
from lor2c_probe.errors import UserError

TEXT_KEYS = ("text", "sentence")
PAIR_KEYS = ("sentence1", "sentence2")
_JSONL_HINT = "; expected one JSON object per line"


@dataclass(frozen=True)
class Records:
    """A file's rows, checked: texts, raw labels and the line each row starts on."""

    path: Path
    text_a: list[str]
    text_b: list[str] | None
    labels: list
    lines: list[int]

    @property
    def pair(self) -> bool:
        return self.text_b is not None


@dataclass(frozen=True)
class CustomData:
    train: Examples
    eval: Examples | None  # None: no eval file, the caller splits ``train``
    pair: bool
    scheme: lab.LabelScheme


def read_custom(train_path: Path, eval_path: Path | None = None, *, string_labels: bool = False) -> CustomData:
    """Training (and evaluation) examples; ``string_labels`` reads every label as a class name."""
    train = read_records(Path(train_path))
    scheme = lab.infer(train.path, train.labels, train.lines, string_labels)
    if not scheme.regression and len(scheme.classes) < 2:
        raise UserError(f"{train.path}: a classification task needs at least 2 distinct labels; found {len(scheme.classes)}")
    full = Examples(train.text_a, train.text_b, lab.encode(train.path, train.labels, train.lines, scheme, train.path))
    if eval_path is None:
        return CustomData(full, None, train.pair, scheme)
    ev = read_records(Path(eval_path))
    if ev.pair != train.pair:
        raise UserError(f"{ev.path}: text columns differ from {train.path} (pair vs single sentence)")
    ev_ex = Examples(ev.text_a, ev.text_b, lab.encode(ev.path, ev.labels, ev.lines, scheme, train.path))
    return CustomData(full, ev_ex, train.pair, scheme)


def read_records(path: Path) -> Records:
    """Every row checked for its text columns and label; errors name file and line."""
    header, rows = _rows(path)
    if header is None and not rows:
        raise UserError(f"{path}: no examples (the file holds no JSON objects)")
    fields = header[1] if header else list(rows[0][1])
    pair = all(k in fields for k in PAIR_KEYS)
    keys = PAIR_KEYS if pair else next(((k,) for k in TEXT_KEYS if k in fields), None)
    first_line = header[0] if header else rows[0][0]
    if keys is None:
        raise UserError(f"{path}:{first_line}: no text column; expected 'text', 'sentence' or 'sentence1'+'sentence2'")
    if header and "label" not in header[1]:
        raise UserError(f"{path}:{first_line}: no 'label' column in the header ({', '.join(map(repr, header[1]))})")
    if not rows:
        raise UserError(f"{path}: no examples (the file has no data rows)")
    a: list[str] = []
    b: list[str] = []
    raw: list = []
    for n, rec in rows:
        where = f"{path}:{n}"
        for k in keys:
            v = rec.get(k)
            if v is None or (isinstance(v, str) and not v.strip()):
                raise UserError(f"{where}: missing or empty {k!r}")
            if not isinstance(v, str):
                raise UserError(f"{where}: {k!r} must be a JSON string; found {lab.show(v)}")
            check_text(v, where, repr(k))
        lab.check_label(rec.get("label"), where)
        a.append(rec[keys[0]])
        if pair:
            b.append(rec[keys[1]])
        raw.append(rec["label"])
    return Records(path, a, b if pair else None, raw, [n for n, _ in rows])


def _rows(path: Path) -> tuple[tuple[int, list[str]] | None, list[tuple[int, dict]]]:
    """(header line and names, or None for JSONL; (line, record) for every data row)."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv", ".tsv"):
        if not path.is_file():
            raise UserError(f"data file not found: {path}")
        raise UserError(f"{path}: unsupported file type {suffix or '(none)'}; use .csv, .tsv or .jsonl")
    text = read_text(path)
    if suffix in (".jsonl", ".json"):
        return None, _jsonl(path, text)
    records = iter(csv_rows(path, text, "\t" if suffix == ".tsv" else ","))
    first = next(records, None)
    if first is None:
        raise UserError(f"{path}: empty file; expected a header row")
    hline, names = first
    check_header(path, hline, names)
    out = []
    for n, row in records:
        if len(row) != len(names):
            raise UserError(f"{path}:{n}: expected {len(names)} fields like the header, found {len(row)}")
        out.append((n, dict(zip(names, row))))
    return first, out


def _jsonl(path: Path, text: str) -> list[tuple[int, dict]]:
    out = []
    for n, line in lines(text):
        if not line.strip():
            continue
        rec = json_line(path, n, line, _JSONL_HINT)
        if not isinstance(rec, dict):
            hint = " (a .json file must be JSON Lines here, not one array)" if isinstance(rec, list) and n == 1 else ""
            raise UserError(f"{path}:{n}: expected a JSON object, found {json_kind(rec)}{hint}")
        out.append((n, rec))
    return out
