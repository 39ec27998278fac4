"""The one recorded-run type and loader: a run directory's manifest, label, group and tables (read once, lazily).

Every multi-run consumer (the analysis commands, the compare layer, reports, studies) sees runs through this.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lor2c_probe.errors import UserError
from lor2c_probe.record.outputs import is_aside
from lor2c_probe.record.store import read_manifest, read_table, shard_paths


@dataclass(eq=False)  # compared by identity: a baseline is told apart from the runs compared with it
class RecordedRun:
    label: str  # unique among the runs analysed together
    path: Path
    manifest: dict[str, Any]
    group: str = ""  # runs differing only by seed share a group (comparisons average over them); default: the label
    _tables: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.group = self.group or self.label

    def has(self, table: str) -> bool:
        return bool(shard_paths(self.path, table))

    def table(self, name: str) -> pd.DataFrame:
        if name not in self._tables:
            self._tables[name] = read_table(self.path, name)
        return self._tables[name]

    @property
    def method(self) -> str:
        return self.manifest.get("method", {}).get("name") or self.manifest.get("config", {}).get("adapter", {}).get("method", "?")

    @property
    def seed(self) -> int | None:
        return self.manifest.get("config", {}).get("train", {}).get("seed")

    @property
    def params_end(self) -> int | None:
        """Adapter parameters at the end of training: after the last merge/injection, else as at the start."""
        start = self.manifest.get("params", {}).get("adapter_params")
        if not self.has("events"):
            return start
        after = [json.loads(d).get("params_after") for d in self.table("events").detail_json]
        after = [a for a in after if a is not None]
        return after[-1] if after else start

    @property
    def headline(self) -> str | None:
        res = self.manifest.get("results") or {}
        return res.get("headline_metric") or (self.manifest.get("task", {}).get("metrics") or [None])[0]


def describe(manifest: dict[str, Any]) -> str:
    """A name from what distinguishes a run's configuration, seed aside: method, merges/injections, policy, bugs."""
    cfg = manifest.get("config", {})
    name = manifest.get("method", {}).get("name") or cfg.get("adapter", {}).get("method", "run")
    s = cfg.get("structure") or {}
    if s.get("merges") or s.get("injections"):
        name += f" M{s.get('merges', 0)}J{s.get('injections', 0)}"
    if cfg.get("policy") == "reference":
        name += " [reference]"
    if s.get("emulate_reference_bugs"):
        name += " +bugs"
    return name


def load_runs(paths: list[Path], groups: dict[Path, str] | None = None) -> list[RecordedRun]:
    """Check each path is a run directory and label the runs: by configuration, then + seed, then by folder."""
    if not paths:
        raise UserError("report needs at least one run directory (a folder with manifest.json)")
    manifests = []
    for p in paths:
        p = Path(p)
        if not (p / "manifest.json").is_file():
            hint = " (a study output? pass its runs/* folders)" if (p / "runs").is_dir() else ""
            raise UserError(f"{p}: not a lor2c-probe run directory (no manifest.json){hint}")
        manifests.append((p, read_manifest(p)))  # a damaged manifest is a one-line StorageError naming it
    if len({p.resolve() for p, _ in manifests}) != len(manifests):
        raise UserError("the same run directory is given twice")
    groups = {Path(k).resolve(): v for k, v in (groups or {}).items()}
    names = [groups.get(p.resolve()) or describe(m) for p, m in manifests]
    labels = names
    if len(set(labels)) != len(labels):
        labels = [f"{n} s{m.get('config', {}).get('train', {}).get('seed')}" for n, (_, m) in zip(names, manifests)]
    if len(set(labels)) != len(labels):
        labels = [p.name for p, _ in manifests]
    if len(set(labels)) != len(labels):
        labels = [f"{p.parent.name}/{p.name}" for p, _ in manifests]
    if len(set(labels)) != len(labels):
        labels = [str(p) for p, _ in manifests]
    return [RecordedRun(label, p, m, name) for label, name, (p, m) in zip(labels, names, manifests)]


def recorded_runs(paths: list[Path], table: str, probe: str) -> list[RecordedRun]:
    """Run directories to analyse, each checked for a manifest and a non-empty ``table``. Grouped by configuration
    (seeds of one method pool), labelled like ``load_runs``; when every run has the same configuration there is no
    contrast between groups, so each run is its own group, labelled by its folder."""
    for p in paths:
        if (Path(p) / "manifest.json").is_file() and not shard_paths(Path(p), table):
            raise UserError(f"run {p} has no `{table}` table; record it with `lor2c-probe train --probes {probe}`")
    runs = load_runs(list(paths))
    if len(runs) > 1 and len({r.group for r in runs}) == 1:
        names = [r.path.name for r in runs]
        if len(set(names)) != len(names):
            names = [r.label for r in runs]
        runs = [RecordedRun(n, r.path, r.manifest, n) for n, r in zip(names, runs)]
    return runs


def completed_run_dirs(folders: list[Path]) -> list[Path]:
    """The completed runs of study folders (``<folder>/runs/<run>``), sorted per folder. A run moved aside by
    ``--overwrite`` or a restart (``<run>.replaced-<time>``) is not part of its study any more."""
    return [m.parent for f in folders for m in sorted((Path(f) / "runs").glob("*/manifest.json"))
            if not is_aside(m.parent) and read_manifest(m.parent).get("status") == "completed"]
