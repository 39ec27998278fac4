"""Which run directories of a study count as its completed runs."""

from __future__ import annotations

import json
from pathlib import Path

from lor2c_probe.record.runs import completed_run_dirs


def _run(folder: Path, name: str, status: str) -> Path:
    d = folder / "runs" / name
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"status": status}))
    return d


def test_completed_run_dirs_skips_unfinished_and_moved_aside_runs(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    keep = [_run(a, "lora-s17", "completed"), _run(a, "lora-s18", "completed"), _run(b, "lor2c-s17", "completed")]
    _run(a, "lora-s19", "running")
    _run(a, "lora-s20", "interrupted")
    _run(a, "lora-s17.replaced-20261202T070827Z", "completed")  # an earlier copy of lora-s17, moved aside
    (a / "runs" / "notes").mkdir()  # no manifest: not a run
    assert completed_run_dirs([a, b]) == keep
    assert completed_run_dirs([tmp_path / "missing"]) == []
