"""The user's own data: CSV, TSV or JSONL with a ``label`` column and ``text`` (or ``sentence1`` + ``sentence2``).

Labels: strings or integers are classes (ids in sorted order of the training labels); any
non-integer number makes the task a regression.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from lor2c_probe.errors import UserError

TEXT_KEYS = ("text", "sentence")
PAIR_KEYS = ("sentence1", "sentence2")


def _rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, record) for every data row."""
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    out: list[tuple[int, dict]] = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        if suffix in (".jsonl", ".json"):
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}:{n}: invalid JSON ({e.msg}); expected one object per line") from None
                if not isinstance(rec, dict):
                    raise UserError(f"{path}:{n}: expected a JSON object, found {type(rec).__name__}")
                out.append((n, rec))
        elif suffix in (".csv", ".tsv"):
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            if not reader.fieldnames:
                raise UserError(f"{path}: empty file; expected a header row")
            for rec in reader:
                if None in rec or None in rec.values():
                    raise UserError(f"{path}:{reader.line_num}: expected {len(reader.fieldnames)} fields like the header")
                out.append((reader.line_num, rec))
        else:
            raise UserError(f"{path}: unsupported file type {suffix or '(none)'}; use .csv, .tsv or .jsonl")
    if not out:
        raise UserError(f"{path}: no examples (the file has no data rows)")
    return out


def read_records(path: Path) -> tuple[list[str], list[str] | None, list, bool]:
    """(text_a, text_b or None, raw labels, is_pair) with every row checked; errors name file and line."""
    rows = _rows(path)
    first = rows[0][1]
    pair = all(k in first for k in PAIR_KEYS)
    keys = PAIR_KEYS if pair else next(((k,) for k in TEXT_KEYS if k in first), None)
    if keys is None:
        raise UserError(f"{path}:{rows[0][0]}: no text column; expected 'text', 'sentence' or 'sentence1'+'sentence2'")
    a: list[str] = []
    b: list[str] = []
    labels: list = []
    for n, rec in rows:
        for k in (*keys, "label"):
            if k not in rec or rec[k] is None or (isinstance(rec[k], str) and rec[k].strip() == ""):
                raise UserError(f"{path}:{n}: missing or empty {k!r}")
        a.append(str(rec[keys[0]]))
        if pair:
            b.append(str(rec[keys[1]]))
        labels.append(rec["label"])
    return a, (b if pair else None), labels, pair


def _as_number(v: object) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(v))
    except ValueError:
        return None


def infer_labels(raw: list) -> tuple[bool, tuple[str, ...]]:
    """(is_regression, class names) from the training labels."""
    nums = [_as_number(v) for v in raw]
    if all(x is not None for x in nums) and any(x != int(x) for x in nums):  # type: ignore[arg-type]
        return True, ()
    if all(x is not None for x in nums):
        return False, tuple(str(int(x)) for x in sorted(set(nums)))  # type: ignore[arg-type]
    return False, tuple(sorted({str(v) for v in raw}))


def encode_labels(raw: list, regression: bool, classes: tuple[str, ...], path: Path) -> list:
    if regression:
        out = [_as_number(v) for v in raw]
        if any(x is None for x in out):
            bad = next(i for i, x in enumerate(out) if x is None)
            raise UserError(f"{path}: label {raw[bad]!r} is not a number but the task is a regression")
        return out
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for v in raw:
        x = _as_number(v)
        key = str(int(x)) if x is not None and x == int(x) else str(v)
        if key not in index:
            raise UserError(f"{path}: label {v!r} does not occur in the training file (classes: {', '.join(classes)})")
        out.append(index[key])
    return out
