"""GLUE from the official TSV files (``--data-dir``) or, failing that, the HF ``datasets`` cache."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from lor2c_probe.data.examples import Examples
from lor2c_probe.data.tasks import TaskSpec
from lor2c_probe.errors import UserError

# task -> (text columns, label column) in the TSV header; CoLA has no header (see _read_cola).
TSV_COLUMNS: dict[str, tuple[tuple[str, ...], str]] = {
    "sst2": (("sentence",), "label"),
    "mrpc": (("#1 String", "#2 String"), "Quality"),
    "rte": (("sentence1", "sentence2"), "label"),
    "qnli": (("question", "sentence"), "label"),
    "stsb": (("sentence1", "sentence2"), "score"),
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
    try:
        if spec.regression:
            return float(raw)
        if raw in spec.labels:
            return spec.labels.index(raw)
        value = int(raw)
        if not 0 <= value < spec.num_labels:
            raise ValueError
        return value
    except ValueError:
        raise UserError(f"{path}:{line}: bad label {raw!r} for {spec.name}") from None


def _read_tsv(path: Path, spec: TaskSpec) -> Examples:
    text_cols, label_col = TSV_COLUMNS[spec.name]
    a: list[str] = []
    b: list[str] = []
    labels: list = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise UserError(f"{path}: empty file")
        missing = [c for c in (*text_cols, label_col) if c not in header]
        if missing:
            raise UserError(f"{path}:1: header lacks column(s) {', '.join(missing)} expected for {spec.name}")
        idx = [header.index(c) for c in text_cols]
        li = header.index(label_col)
        for row in reader:
            line = reader.line_num
            if len(row) != len(header):
                raise UserError(f"{path}:{line}: expected {len(header)} tab-separated fields, found {len(row)}")
            a.append(row[idx[0]])
            if spec.pair:
                b.append(row[idx[1]])
            labels.append(_label(row[li], spec, path, line))
    return Examples(a, b if spec.pair else None, labels)


def _read_cola(path: Path, spec: TaskSpec) -> Examples:
    a: list[str] = []
    labels: list = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            if len(row) != 4:  # source, label, original judgement, sentence
                raise UserError(f"{path}:{reader.line_num}: expected 4 tab-separated fields, found {len(row)}")
            labels.append(_label(row[1], spec, path, reader.line_num))
            a.append(row[3])
    return Examples(a, None, labels)


def load_glue_tsv(data_dir: Path, spec: TaskSpec) -> tuple[Examples, Examples]:
    folder = _task_folder(Path(data_dir), spec)
    reader = _read_cola if spec.name == "cola" else _read_tsv
    dev = folder / "dev.tsv"
    if not dev.is_file():
        raise UserError(f"{dev} is missing: GLUE evaluation uses the dev split")
    return reader(folder / "train.tsv", spec), reader(dev, spec)


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
