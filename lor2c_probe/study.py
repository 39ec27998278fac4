"""Declarative studies (``analyses/*.toml``): which runs to train and which report sections they must produce.

A study file::

    name = "fig7-gradient-ratio"          # default output folder runs/<name>
    title = "..."                          # report title
    paper = "Fig. 7"                       # the paper result it reproduces
    claim = "..."                          # the claim under test, shown at the top of the report
    seeds = [17]                           # every run is trained once per seed
    analyses = ["gradients", "activations"]  # report sections this study exists for (checked before training)
    baseline = "lora"                      # optional: denominator of the gradient ratio

    [train]                                # `lor2c-probe train` options shared by every run
    epochs = 3
    probes = "grads,activations"

    [[runs]]                               # one table per run: a label, a method, optional option overrides
    label = "lor2c"
    method = "lor2c"

Unknown keys anywhere are rejected with the key named. Command-line overrides (``--model``, ``--task``,
``--device``, ...) replace the file's values for every run.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lor2c_probe.errors import ConfigError, UserError
from lor2c_probe.options import NAMES

# Every `lor2c-probe train` option a study may set: the one declaration in lor2c_probe.options.
TRAIN_OPTIONS = NAMES
TOP_KEYS = ("name", "title", "paper", "claim", "seeds", "analyses", "baseline", "train", "runs")
ANALYSES = ("training", "comparison", "gradients", "activations", "low_rank", "sfs", "events", "update_spectra", "histograms")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class RunSpec:
    label: str
    options: dict[str, Any]  # train options for this run, seed excluded


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    paper: str
    claim: str
    seeds: tuple[int, ...]
    analyses: tuple[str, ...]
    baseline: str | None
    train: dict[str, Any]
    runs: tuple[RunSpec, ...]
    source: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = self.source or "study"
        if not self.name or not _LABEL.fullmatch(self.name):
            raise ConfigError(f"{where}: name must be a non-empty folder-safe name (letters, digits, . _ + -); got {self.name!r}")
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ConfigError(f"{where}: seeds must be a non-empty list of non-negative integers; got {list(self.seeds)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"{where}: seeds must be distinct; got {list(self.seeds)}")
        bad = [a for a in self.analyses if a not in ANALYSES]
        if bad:
            raise ConfigError(f"{where}: unknown analysis {bad[0]!r}; choose from: {', '.join(ANALYSES)}")
        if not self.runs:
            raise ConfigError(f"{where}: a study needs at least one [[runs]] entry")
        labels = [r.label for r in self.runs]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"{where}: run labels must be distinct; {sorted({x for x in labels if labels.count(x) > 1})[0]!r} repeats")
        if self.baseline is not None and self.baseline not in labels:
            raise ConfigError(f"{where}: baseline {self.baseline!r} is not a run label ({', '.join(labels)})")

    def run_dir_name(self, label: str, seed: int) -> str:
        return label if len(self.seeds) == 1 else f"{label}-s{seed}"

    def planned(self) -> list[tuple[str, int, dict[str, Any]]]:
        """(label, seed, full train options) for every seed x run, overrides applied last. Seed-major, so a study stopped
        part-way holds complete seeds (every run of a seed, comparable with each other), not one method's every seed."""
        return [(r.label, s, {**self.train, **r.options, **self.overrides, "seed": s}) for s in self.seeds for r in self.runs]


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for k in table:
        if k not in allowed:
            raise ConfigError(f"{where}: unknown key {k!r}; allowed: {', '.join(allowed)}")


def resolve_path(arg: Path) -> Path:
    """A study file path, or a bare name looked up in analyses/ (``fig7-gradient-ratio`` -> analyses/fig7-gradient-ratio.toml)."""
    for cand in (arg, arg.with_suffix(".toml"), Path("analyses") / arg.name, Path("analyses") / f"{arg.name}.toml"):
        if cand.is_file():
            return cand
    raise UserError(f"study {arg} not found; give a .toml file, e.g. analyses/fig7-gradient-ratio.toml")


def load_study(path: Path, overrides: dict[str, Any] | None = None, *, seeds: list[int] | None = None) -> Study:
    """Parse, validate and apply command-line ``overrides`` (and ``seeds``, replacing the file's)."""
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    where = str(path)
    _check_keys(data, TOP_KEYS, where)
    for key in ("name", "title"):
        if not isinstance(data.get(key), str):
            raise ConfigError(f"{where}: `{key}` is required and must be a string")
    train = data.get("train", {})
    if not isinstance(train, dict):
        raise ConfigError(f"{where}: [train] must be a table of `lor2c-probe train` options")
    _check_keys(train, tuple(k for k in TRAIN_OPTIONS if k not in ("method", "seed")), f"{where} [train]")
    runs = data.get("runs", [])
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise ConfigError(f"{where}: runs must be an array of tables ([[runs]])")
    specs = []
    for i, r in enumerate(runs):
        _check_keys(r, ("label",) + tuple(k for k in TRAIN_OPTIONS if k != "seed"), f"{where} [[runs]] #{i + 1}")
        if "method" not in r:
            raise ConfigError(f"{where} [[runs]] #{i + 1}: `method` is required")
        label = r.get("label", r["method"])
        if not isinstance(label, str) or not _LABEL.fullmatch(label):
            raise ConfigError(f"{where} [[runs]] #{i + 1}: label must be a folder-safe name (letters, digits, . _ + -); got {label!r}")
        specs.append(RunSpec(label, {k: v for k, v in r.items() if k != "label"}))
    seeds = seeds if seeds is not None else data.get("seeds", [17])
    analyses = data.get("analyses", [])
    if not isinstance(seeds, list) or not isinstance(analyses, list):
        raise ConfigError(f"{where}: seeds and analyses must be lists")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    study = Study(data["name"], data["title"], str(data.get("paper", "")), str(data.get("claim", "")), tuple(seeds), tuple(analyses),
                  data.get("baseline"), dict(train), tuple(specs), where, overrides)
    validate(study)
    return study


def validate(study: Study) -> None:
    """Build every run's RunConfig now (fail before training) and check each analysis can be drawn."""
    from lor2c_probe.options import config_from_options

    configs = []
    for label, seed, opts in study.planned():
        try:
            configs.append((label, config_from_options(opts)[0]))
        except (ConfigError, UserError, ValueError, TypeError) as e:
            raise ConfigError(f"{study.source} run {label!r} (seed {seed}): {e}") from None
    probes = [c.probes for _, c in configs]
    structured = [c for _, c in configs if c.structure.merges or c.structure.injections]
    need = {
        "gradients": (sum(p.grads for p in probes) >= 2 * len(study.seeds), "two runs recording the grads probe"),
        "activations": (any(p.activations for p in probes), "a run recording the activations probe"),
        "low_rank": (any(p.spectra for p in probes), "a run recording the spectra probe"),
        "update_spectra": (any(p.spectra for p in probes), "a run recording the spectra probe"),
        "histograms": (any(p.spectra or "histograms" in p.extra for p in probes), "a run recording the histograms or spectra probe"),
        "sfs": (any(c.probes.spectra for c in structured), "a run with merges or injections recording spectra"),
        "events": (bool(structured), "a run with merges or injections"),
        "comparison": (len(study.runs) >= 2, "two runs"),
    }
    for a in study.analyses:
        ok, what = need.get(a, (True, ""))
        if not ok:
            raise ConfigError(f"{study.source}: analysis {a!r} needs {what}; add it to [train] or [[runs]]")
