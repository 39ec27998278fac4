"""Did a recorded run learn its task? Diverged runs did not; completed classification runs are compared with always
predicting the majority class (``analysis.chance``)."""

from __future__ import annotations

from pathlib import Path

from lor2c_probe.analysis.chance import ChanceTest, above_chance
from lor2c_probe.analysis.comparison import final_predictions
from lor2c_probe.errors import StorageError
from lor2c_probe.record.runs import RecordedRun
from lor2c_probe.record.store import read_table


def chance_of(run_dir: Path) -> ChanceTest | None:
    """None without a test: no predictions (runs recorded before the table existed, or stopped before their first
    evaluation), a regression task, a single-class eval set."""
    return above_chance(final_predictions(read_table(run_dir, "predictions")))


def learned(run: RecordedRun) -> ChanceTest | None:
    """None without a test, as ``chance_of``; also when the predictions table is damaged (the sections that read it
    for themselves say so)."""
    if run.manifest.get("task", {}).get("regression") or not run.has("predictions"):
        return None
    try:
        return above_chance(final_predictions(run.table("predictions")))  # the run's cached table
    except StorageError:
        return None


def failed_runs(runs: list[RecordedRun]) -> dict[str, str]:
    """Label -> why, for the runs that did not learn their task: diverged, or completed at chance."""
    out = {}
    for r in runs:
        status = r.manifest.get("status")
        if status == "diverged":
            out[r.label] = f"{r.label} diverged at step {(r.manifest.get('diverged') or {}).get('step', '?')}."
        elif status == "completed" and (t := learned(r)) is not None and t.at_chance:
            out[r.label] = t.describe(r.label)
    return out
