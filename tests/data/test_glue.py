"""GLUE TSV loaders on fixtures in the official layouts (headers and label encodings as distributed)."""

from __future__ import annotations

import pytest

from lor2c_probe.config import DataConfig
from lor2c_probe.data.load import load_task
from lor2c_probe.errors import UserError

FIXTURES = {
    "SST-2": ("sentence\tlabel\n", ["a gripping film\t1", "flat and dull\t0"]),
    "CoLA": (None, ["gj04\t1\t\tThe cat sat.", "gj04\t0\t*\tCat the sat."]),
    "MRPC": ("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n", ["1\t1\t2\tHe left.\tHe went away.", "0\t3\t4\tIt rains.\tShe sings."]),
    "RTE": ("index\tsentence1\tsentence2\tlabel\n", ["0\tA dog runs.\tAn animal moves.\tentailment", "1\tA dog runs.\tA cat sleeps.\tnot_entailment"]),
    "QNLI": ("index\tquestion\tsentence\tlabel\n", ["0\tWho ran?\tBob ran.\tentailment", "1\tWho ran?\tIt rained.\tnot_entailment"]),
    "STS-B": (
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n",
        ["0\tmain\tf\t2012\t1\tx\ty\tA man plays.\tA man is playing.\t4.75", "1\tmain\tf\t2012\t2\tx\ty\tA cat.\tA car.\t0.5"],
    ),
}
TASK_OF = {"SST-2": "sst2", "CoLA": "cola", "MRPC": "mrpc", "RTE": "rte", "QNLI": "qnli", "STS-B": "stsb"}


@pytest.fixture
def glue_dir(tmp_path):
    for folder, (header, rows) in FIXTURES.items():
        d = tmp_path / folder
        d.mkdir()
        for split in ("train", "dev"):
            (d / f"{split}.tsv").write_text((header or "") + "\n".join(rows) + "\n")
    return tmp_path


@pytest.mark.parametrize("folder", list(FIXTURES))
def test_each_task_loads(glue_dir, folder):
    task = TASK_OF[folder]
    train, ev, spec, source = load_task(DataConfig(task=task, data_dir=str(glue_dir)))
    assert len(train) == 2 and len(ev) == 2 and "GLUE TSV" in source
    assert (train.text_b is not None) == spec.pair
    expected = {"sst2": [1, 0], "cola": [1, 0], "mrpc": [1, 0], "rte": [0, 1], "qnli": [0, 1], "stsb": [4.75, 0.5]}[task]
    assert train.labels == expected


def test_task_folder_itself_is_accepted(glue_dir):
    train, _, _, _ = load_task(DataConfig(task="rte", data_dir=str(glue_dir / "RTE")))
    assert train.text_a[0] == "A dog runs."


def test_malformed_row_names_file_and_line(glue_dir):
    p = glue_dir / "RTE" / "train.tsv"
    p.write_text(p.read_text() + "2\tonly two fields\n")
    with pytest.raises(UserError, match=r"RTE/train.tsv:4: expected 4 tab-separated fields, found 2"):
        load_task(DataConfig(task="rte", data_dir=str(glue_dir)))


def test_bad_label_names_file_and_line(glue_dir):
    p = glue_dir / "SST-2" / "dev.tsv"
    p.write_text("sentence\tlabel\nok\t7\n")
    with pytest.raises(UserError, match=r"SST-2/dev.tsv:2: bad label '7' for sst2"):
        load_task(DataConfig(task="sst2", data_dir=str(glue_dir)))


def test_missing_glue_data_says_what_to_pass(tmp_path):
    with pytest.raises(UserError, match="no train.tsv for mrpc"):
        load_task(DataConfig(task="mrpc", data_dir=str(tmp_path)))


def test_empty_split_is_an_error(glue_dir):
    (glue_dir / "SST-2" / "dev.tsv").write_text("sentence\tlabel\n")
    with pytest.raises(UserError, match="evaluation set of task sst2 is empty"):
        load_task(DataConfig(task="sst2", data_dir=str(glue_dir)))


class _FakeDatasets:
    """Stands in for the `datasets` package: load_dataset returns GLUE-shaped splits (column -> list)."""

    def __init__(self, splits=None, error=None):
        self.splits, self.error, self.calls = splits, error, []

    def load_dataset(self, path, name):
        self.calls.append((path, name))
        if self.error:
            raise self.error
        return self.splits


def test_hf_datasets_cache_is_used_without_data_dir(monkeypatch):
    split = {"sentence1": ["A", "B"], "sentence2": ["C", "D"], "label": [0, 1]}
    fake = _FakeDatasets({"train": split, "validation": split})
    monkeypatch.setitem(__import__("sys").modules, "datasets", fake)
    train, ev, spec, source = load_task(DataConfig(task="rte"))
    assert fake.calls == [("nyu-mll/glue", "rte")] and "datasets cache" in source
    assert train.text_b == ["C", "D"] and ev.labels == [0, 1]


def test_hf_cache_miss_says_to_pass_data_dir(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "datasets", _FakeDatasets(error=ConnectionError("offline")))
    with pytest.raises(UserError, match="not in the Hugging Face datasets cache: pass --data-dir"):
        load_task(DataConfig(task="qnli"))
