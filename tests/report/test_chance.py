"""Runs that did not learn their task: named in the training section, left out of the low-rank test (compare_spectra,
the report's low-rank section, the paper-claim line). Predictions are rewritten so a run's outcome is known."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lor2c_probe.record.runs import load_runs
from tests.helpers import rewrite_predictions


def copy_run(src: Path, dst: Path, *, seed: int, learned: bool) -> Path:
    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    m["config"]["train"]["seed"] = seed
    (dst / "manifest.json").write_text(json.dumps(m))
    rewrite_predictions(dst, learned)
    return dst


def test_failed_run_named_and_left_out(recorded, tmp_path):
    from lor2c_probe.compare.chance import failed_runs
    from lor2c_probe.compare.claims import paper_claims
    from lor2c_probe.compare.spectrum import compare_spectra
    from lor2c_probe.report.sections import low_rank_section, training_section

    good = copy_run(recorded["full"], tmp_path / "runs" / "full-s3", seed=3, learned=True)
    bad = copy_run(recorded["full"], tmp_path / "runs" / "full-s4", seed=4, learned=False)
    runs = load_runs([good, bad])
    assert list(failed_runs(runs)) == [runs[1].label]

    both = compare_spectra(load_runs([good]), "weights", (8,), strict_phi=False).claims.iloc[0]
    mixed = compare_spectra(runs, "weights", (8,), strict_phi=False)
    c = mixed.claims.iloc[0]
    # the failed seed is left out: the test rests on the learned run alone (one seed: its layers are the unit)
    assert c.left_out == 1 and c.seeds == 1 and c.unit == "layer" and c.top8_energy == both.top8_energy
    assert "1 run(s) that did not learn the task left out" in mixed.summary

    claim = paper_claims(runs)[3]
    assert "1 of 2 full-rank run(s) did not learn the task" in claim.n and "left out" in claim.n

    training = training_section(runs).blocks
    table = next(b for b in training if getattr(b, "data", None) == "chance").frame
    assert list(table.learned) == [True, False] and table.top_prediction_share.iloc[1] == 1.0
    assert any(isinstance(b, str) and f"{runs[1].label} did not learn the task" in b for b in training)
    assert any(isinstance(b, str) and b.startswith("Read with care") for b in low_rank_section(runs).blocks)

    rewrite_predictions(good, learned=False)  # no run learned: numbers from all, no verdict
    runs = load_runs([good, bad])
    c = compare_spectra(runs, "weights", (8,), strict_phi=False).claims.iloc[0]
    assert c.left_out == 2 and c.seeds == 2 and c.verdict == "cannot tell (no run of it learned the task)"
    claim = paper_claims(runs)[3]
    assert claim.verdict.startswith("cannot tell (no full-rank run learned the task") and "2 of 2" in claim.n
