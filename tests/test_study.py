"""Study files: every shipped study parses and validates; unknown keys and bad values are rejected by name."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from lor2c_probe import cli
from lor2c_probe.errors import ConfigError, UserError
from lor2c_probe.study import TRAIN_OPTIONS, load_study, resolve_path

ANALYSES_DIR = Path(__file__).resolve().parents[1] / "analyses"
STUDIES = sorted(ANALYSES_DIR.glob("*.toml"))

VALID = '''
name = "t"
title = "T"
seeds = [1, 2]
analyses = ["gradients"]
baseline = "lora"
[train]
epochs = 1
probes = "grads"
[[runs]]
label = "lor2c"
method = "lor2c"
[[runs]]
label = "lora"
method = "lora"
'''


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "study.toml"
    p.write_text(text)
    return p


def test_train_options_match_the_cli():
    params = [p for p in inspect.signature(cli.train).parameters if p not in ("out", "overwrite", "resume", "quiet", "report")]
    assert tuple(params) == TRAIN_OPTIONS


def test_the_studies_ship():
    assert {p.stem for p in STUDIES} == {"fig7-gradient-ratio", "fig2-low-rank", "sfs-traces", "table1-methods", "reference-bugs", "peft-zoo",
                                          "peft-zoo-lr", "fig7-depth12", "fig2-depth12", "minilm-full"}


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_shipped_study_validates(path):
    study = load_study(path)
    assert study.name == path.stem and study.title and study.claim and study.paper
    assert study.analyses and len(study.planned()) == len(study.runs) * len(study.seeds)
    paper = load_study(path, {"model": "roberta-base", "task": "sst2", "device": "cuda"})  # the paper-setting overrides parse
    assert all(opts["model"] == "roberta-base" and opts["task"] == "sst2" for _, _, opts in paper.planned())


def test_planned_runs_apply_overrides_last(tmp_path):
    s = load_study(write(tmp_path, VALID), {"epochs": 3, "device": None})
    assert [(label, seed) for label, seed, _ in s.planned()] == [("lor2c", 1), ("lora", 1), ("lor2c", 2), ("lora", 2)]  # seed-major
    assert all(o["epochs"] == 3 and o["probes"] == "grads" for *_, o in s.planned())
    assert s.run_dir_name("lor2c", 2) == "lor2c-s2"


@pytest.mark.parametrize("old,new,message", [
    ('title = "T"', 'title = "T"\nauthor = "x"', "unknown key 'author'"),
    ("epochs = 1", "epochs = 1\nepoch = 2", "[train]: unknown key 'epoch'"),
    ('method = "lora"', 'method = "lora"\nranks = 4', "[[runs]] #2: unknown key 'ranks'"),
    ("epochs = 1", "seed = 3", "[train]: unknown key 'seed'"),
    ('analyses = ["gradients"]', 'analyses = ["fig9"]', "unknown analysis 'fig9'"),
    ("seeds = [1, 2]", "seeds = []", "seeds must be a non-empty list"),
    ("seeds = [1, 2]", "seeds = [1, 1]", "seeds must be distinct"),
    ('label = "lora"', 'label = "lor2c"', "run labels must be distinct; 'lor2c' repeats"),
    ('label = "lora"', 'label = "../x"', "label must be a folder-safe name"),
    ('label = "lora"', 'label = "lora\\n"', "label must be a folder-safe name"),  # a trailing newline is not part of a name
    ('name = "t"', 'name = "t\\n"', "name must be a non-empty folder-safe name"),
    ('baseline = "lora"', 'baseline = "adalora"', "baseline 'adalora' is not a run label"),
    ('method = "lora"', 'method = "nosuch"', "run 'lora' (seed 1): unknown method"),
    ("epochs = 1", "epochs = 0", "epochs must be a positive integer; got 0"),
    ('probes = "grads"', 'probes = "activations"', "analysis 'gradients' needs two runs recording the grads probe"),
    ('name = "t"', "", "`name` is required"),
    ('name = "t"', 'name = "t"\n[oops', "not valid TOML"),
])
def test_bad_study_files_name_the_problem(tmp_path, old, new, message):
    assert old in VALID
    with pytest.raises(ConfigError, match=_re(message)):
        load_study(write(tmp_path, VALID.replace(old, new, 1)))


def test_resolve_path_finds_shipped_studies_by_name(monkeypatch):
    monkeypatch.chdir(ANALYSES_DIR.parent)
    assert resolve_path(Path("fig7-gradient-ratio")) == Path("analyses/fig7-gradient-ratio.toml")
    assert resolve_path(Path("analyses/fig2-low-rank.toml")) == Path("analyses/fig2-low-rank.toml")
    with pytest.raises(UserError, match="study fig99 not found"):
        resolve_path(Path("fig99"))


def _re(text: str) -> str:
    import re

    return re.escape(text)
