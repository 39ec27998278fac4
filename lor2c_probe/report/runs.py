"""Recorded runs as the report sees them: manifest, labels, groups and their tables (read once, lazily)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lor2c_probe.errors import UserError
from lor2c_probe.record.store import read_manifest, read_table, shard_paths


@dataclass
class ReportRun:
    label: str  # unique within the report
    group: str  # runs differing only by seed share a group (the comparison table averages over them)
    path: Path
    manifest: dict[str, Any]
    _tables: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

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


def load_runs(paths: list[Path], groups: dict[Path, str] | None = None) -> list[ReportRun]:
    """Check each path is a run directory and label the runs: by configuration, then + seed, then by folder."""
    if not paths:
        raise UserError("report needs at least one run directory (a folder with manifest.json)")
    manifests = []
    for p in paths:
        p = Path(p)
        if not (p / "manifest.json").is_file():
            hint = " (a study output? pass its runs/* folders)" if (p / "runs").is_dir() else ""
            raise UserError(f"{p}: not a lor2c-probe run directory (no manifest.json){hint}")
        try:
            manifests.append((p, read_manifest(p)))
        except ValueError as e:
            raise UserError(f"{p}/manifest.json is not valid JSON ({e}); the run directory is damaged") from None
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
    return [ReportRun(label, name, p, m) for label, name, (p, m) in zip(labels, names, manifests)]


def run_warnings(runs: list[ReportRun]) -> list[str]:
    """One sentence per run that did not complete: diverged, interrupted, failed, or stopped while ``running``."""
    from lor2c_probe.record.lock import holder

    out = []
    for r in runs:
        m, status = r.manifest, r.manifest.get("status")
        if status == "diverged":
            d = m.get("diverged") or {}
            out.append(f"Run {r.label} DIVERGED at step {d.get('step', '?')} (epoch {d.get('epoch', '?')}): the {d.get('what', 'loss')} "
                       "was not finite. Its tables stop at that step; it is not a trained model, and its results are not comparable.")
        elif status in ("interrupted", "failed"):
            i = m.get("interrupted") or m.get("failure") or {}
            out.append(f"Run {r.label} did not finish ({status} at step {i.get('step', '?')}: {i.get('reason', 'unknown reason')}); "
                       f"its tables are partial. Continue it with `lor2c-probe train --resume --out {r.path}`.")
        elif status == "running":
            h = holder(r.path)
            out.append(f"Run {r.label} is still training (pid {h.get('pid')} on {h.get('host')}); its tables are partial." if h else
                       f"Run {r.label} stopped without finishing (the process was killed); its tables are partial. "
                       f"Continue it with `lor2c-probe train --resume --out {r.path}`.")
    return out
