"""GLUE from the official TSV files (``--data-dir``) or, failing that, the HF ``datasets`` cache."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

from lor2c_probe.data import labels
from lor2c_probe.data.examples import Examples
from lor2c_probe.data.tasks import TASKS, TaskSpec
from lor2c_probe.data.textfile import check_header, csv_rows, read_text
from lor2c_probe.errors import UserError

# task -> (text columns, label column) in the TSV header; CoLA has no header (see _read_cola).
TSV_COLUMNS: dict[str, tuple[tuple[str, ...], str]] = {
    "sst2": (("sentence",), "label"),
    "mrpc": (("#1 String", "#2 String"), "Quality"),
    "rte": (("sentence1", "sentence2"), "label"),
    "qnli": (("question", "sentence"), "label"),
    "stsb": (("sentence1", "sentence2"), "score"),
}
# The first line of each task's train.tsv and dev.tsv as distributed: tells which --task a file belongs to.
GLUE_HEADERS: dict[str, tuple[str, ...]] = {
    "sst2": ("sentence", "label"),
    "mrpc": ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
    "rte": ("index", "sentence1", "sentence2", "label"),
    "qnli": ("index", "question", "sentence", "label"),
    "stsb": ("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"),
}
HF_COLUMNS: dict[str, tuple[str, ...]] = {
    "sst2": ("sentence",),
    "cola": ("sentence",),
    "mrpc": ("sentence1", "sentence2"),
    "rte": ("sentence1", "sentence2"),
    "qnli": ("question", "sentence"),
    "stsb": ("sentence1", "sentence2"),
}


def _task_folder(data_dir: Path, spec: TaskSpec) -> Path:
    for cand in (data_dir / str(spec.glue_folder), data_dir):
        if (cand / "train.tsv").is_file():
            return cand
    raise UserError(f"no train.tsv for {spec.name} under {data_dir} (expected {data_dir / str(spec.glue_folder)}/train.tsv)")


def _label(raw: str, spec: TaskSpec, path: Path, line: int) -> int | float:
    where = f"{path}:{line}"
    if spec.regression:
        x = labels.number(raw, where)  # refuses 'nan' and 'inf' with the line
        if x is None:
            raise UserError(f"{where}: bad label {raw!r} for {spec.name} (expected a number)")
        return x
    if raw in spec.labels:
        return spec.labels.index(raw)
    # ASCII digits only: int() would also take ' 1', '1_0' or other scripts' digits.
    if raw.isascii() and raw.isdigit() and int(raw) < spec.num_labels:
        return int(raw)
    names = ", ".join(spec.labels)
    raise UserError(f"{where}: bad label {raw!r} for {spec.name} (expected 0-{spec.num_labels - 1} or {names})")


def _glue_task_of(first_row: list[str]) -> str | None:
    """The GLUE task whose train/dev TSV starts with ``first_row``, if any."""
    for task, header in GLUE_HEADERS.items():
        if tuple(first_row) == header:
            return task
    if len(first_row) == 4 and first_row[1] in ("0", "1") and first_row[0] != "index":
        return "cola"  # no header: source, label, original judgement, sentence
    return None


def _check_task(path: Path, line: int, first_row: list[str], spec: TaskSpec) -> None:
    other = _glue_task_of(first_row)
    if other is not None and other != spec.name:
        what = "no header, 4 fields" if other == "cola" else f"header: {', '.join(first_row)}"  # a known header: plain names
        raise UserError(f"{path}:{line}: this is GLUE {TASKS[other].glue_folder}'s file ({what}): read it with --task {other}, not --task {spec.name}")


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    # QUOTE_NONE: GLUE's TSVs hold bare quotes inside sentences.
    return iter(csv_rows(path, read_text(path), "\t", csv.QUOTE_NONE))


def _read_tsv(path: Path, spec: TaskSpec) -> Examples:
    text_cols, label_col = TSV_COLUMNS[spec.name]
    a: list[str] = []
    b: list[str] = []
    out: list = []
    rows = _records(path)
    first = next(rows, None)
    if first is None:
        raise UserError(f"{path}: empty file")
    hline, header = first
    _check_task(path, hline, header, spec)
    check_header(path, hline, header)
    missing = [c for c in (*text_cols, label_col) if c not in header]
    if missing:
        raise UserError(f"{path}:{hline}: header lacks column(s) {', '.join(missing)} expected for {spec.name}")
    idx = [header.index(c) for c in text_cols]
    li = header.index(label_col)
    for line, row in rows:
        if len(row) != len(header):
            raise UserError(f"{path}:{line}: expected {len(header)} tab-separated fields, found {len(row)}")
        a.append(row[idx[0]])
        if spec.pair:
            b.append(row[idx[1]])
        out.append(_label(row[li], spec, path, line))
    return Examples(a, b if spec.pair else None, out)


def _read_cola(path: Path, spec: TaskSpec) -> Examples:
    a: list[str] = []
    out: list = []
    for line, row in _records(path):
        if not a:
            _check_task(path, line, row, spec)
        if len(row) != 4:  # source, label, original judgement, sentence
            raise UserError(f"{path}:{line}: expected 4 tab-separated fields, found {len(row)}")
        out.append(_label(row[1], spec, path, line))
        a.append(row[3])
    return Examples(a, None, out)


def load_glue_tsv(data_dir: Path, spec: TaskSpec) -> tuple[Examples, Examples]:
    folder = _task_folder(Path(data_dir), spec)
    reader = _read_cola if spec.name == "cola" else _read_tsv
    dev = folder / "dev.tsv"
    if not dev.is_file():
        raise UserError(f"{dev} is missing: GLUE evaluation uses the dev split")
    out = []
    for path, role in ((folder / "train.tsv", "training"), (dev, "evaluation")):
        ex = reader(path, spec)
        if len(ex) == 0:
            raise UserError(f"{path}: the {role} set of task {spec.name} is empty (the file has no data rows)")
        out.append(ex)
    return out[0], out[1]


def load_glue_hf_cache(spec: TaskSpec) -> tuple[Examples, Examples]:
    hint = f"pass --data-dir pointing at the GLUE TSV files (a folder holding {spec.glue_folder}/train.tsv)"
    try:
        import datasets
    except ImportError:
        raise UserError(f"GLUE {spec.name} needs data: {hint}") from None
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        ds = datasets.load_dataset("nyu-mll/glue", spec.name)
    except Exception:  # noqa: BLE001 - any cache miss becomes one line
        raise UserError(f"GLUE {spec.name} is not in the Hugging Face datasets cache: {hint}") from None
    cols = HF_COLUMNS[spec.name]

    def convert(split: str) -> Examples:
        d = ds[split]
        return Examples(list(d[cols[0]]), list(d[cols[1]]) if spec.pair else None, list(d["label"]))

    return convert("train"), convert("validation")
