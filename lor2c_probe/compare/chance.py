"""Did a recorded run learn its task? Its final accuracy against always predicting the majority class (analysis.chance)."""

from __future__ import annotations

from pathlib import Path

from lor2c_probe.analysis.chance import ChanceTest, above_chance
from lor2c_probe.analysis.comparison import final_predictions
from lor2c_probe.record.runs import RecordedRun
from lor2c_probe.record.store import read_table


def chance_of(run_dir: Path) -> ChanceTest | None:
    """None without per-example predictions (regression runs, or runs stopped before their first evaluation)."""
    return above_chance(final_predictions(read_table(run_dir, "predictions")))


def learned(run: RecordedRun) -> ChanceTest | None:
    return above_chance(final_predictions(run.table("predictions"))) if run.has("predictions") else None  # the run's cached table


def failed_runs(runs: list[RecordedRun]) -> dict[str, ChanceTest]:
    """Completed runs whose final accuracy is not above the majority class's share, by label."""
    out = {}
    for r in runs:
        if r.manifest.get("status") == "completed" and (t := learned(r)) is not None and not t.learned:
            out[r.label] = t
    return out
