"""Runs that did not learn their task: named in the training and gradient sections, left out of the low-rank test and
phi (compare_spectra, the report's low-rank section) and of the paper-claim lines. Predictions are rewritten so a run's
outcome is known; the failed copy's spectra are made flat so that counting it would change the numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lor2c_probe.record.runs import load_runs
from lor2c_probe.record.store import TABLES, read_table, shard_paths
from tests.helpers import rewrite_predictions


def copy_run(src: Path, dst: Path, *, seed: int, learned: bool, flat: bool = False, **manifest) -> Path:
    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    m["config"]["train"]["seed"] = seed
    (dst / "manifest.json").write_text(json.dumps({**m, **manifest}))
    rewrite_predictions(dst, learned)
    if flat:  # every singular value equal: top-8 energy 8/d, far from the learned map's
        sp = read_table(dst, "spectra").assign(sigma=1.0)
        for _, shard in shard_paths(dst, "spectra"):
            shard.unlink()
        pq.write_table(pa.Table.from_pandas(sp, schema=TABLES["spectra"], preserve_index=False), dst / "tables" / "spectra" / "part-000000.parquet")
    return dst


def test_failed_run_named_and_left_out(recorded, tmp_path):
    from lor2c_probe.compare.chance import failed_runs
    from lor2c_probe.compare.claims import paper_claims
    from lor2c_probe.compare.spectrum import compare_spectra
    from lor2c_probe.report.sections import low_rank_section, training_section

    good = copy_run(recorded["full"], tmp_path / "runs" / "full-s3", seed=3, learned=True)
    bad = copy_run(recorded["full"], tmp_path / "runs" / "full-s4", seed=4, learned=False, flat=True)
    runs = load_runs([good, bad])
    assert list(failed_runs(runs)) == [runs[1].label]

    alone = compare_spectra(load_runs([good]), "weights", (8,), strict_phi=False).claims.iloc[0]
    both = compare_spectra(load_runs([good, copy_run(bad, tmp_path / "x" / "full-s4", seed=4, learned=True)]), "weights", (8,),
                           strict_phi=False).claims.iloc[0]
    assert both.top8_energy != pytest.approx(alone.top8_energy)  # counted, the flat copy moves the estimate
    mixed = compare_spectra(runs, "weights", (8,), strict_phi=False)
    c = mixed.claims.iloc[0]
    # left out: the test rests on the learned run alone (one seed: its layers are the unit)
    assert c.left_out == 1 and c.seeds == 1 and c.unit == "layer" and c.top8_energy == pytest.approx(alone.top8_energy)
    assert "1 run(s) that did not learn the task left out" in mixed.summary

    claim = paper_claims(runs)[3]
    assert claim.effect.startswith(f"top-8 energy {alone.top8_energy:.1%}") and f"left out ({runs[1].label})" in claim.n

    training = training_section(runs).blocks
    table = next(b for b in training if getattr(b, "data", None) == "chance").frame
    assert list(table.reading) == ["learned", "at chance"] and table.top_prediction_share.iloc[1] == 1.0
    assert any(isinstance(b, str) and f"{runs[1].label} did not learn the task" in b for b in training)
    blocks = low_rank_section(runs).blocks
    assert any(isinstance(b, str) and b.startswith("Read with care") for b in blocks)
    by_layer_fig = next(b for b in blocks if getattr(b, "stem", None) == "low_rank_layers").draw()
    (bars,) = by_layer_fig.axes[0].containers  # the learned run alone: its per-layer top-8 energy, one seed
    drawn = bars.lines[0].get_ydata()
    summary = mixed.summary_table
    own = summary[(summary.run == runs[0].label) & (summary.epoch == summary.epoch.max())].sort_values("layer").top8_energy
    assert list(drawn) == pytest.approx(list(own))

    rewrite_predictions(good, learned=False)  # no run learned: numbers from all, no verdict
    runs = load_runs([good, bad])
    c = compare_spectra(runs, "weights", (8,), strict_phi=False).claims.iloc[0]
    assert c.left_out == 2 and c.seeds == 2 and c.verdict == "cannot tell (no run of it learned the task)"
    claim = paper_claims(runs)[3]
    assert claim.verdict.startswith("cannot tell (no full-rank run learned the task") and "2 seeds; no run learned the task (" in claim.n


def test_diverged_runs_and_rank_r_maps(recorded, tmp_path):
    from lor2c_probe.compare.chance import failed_runs
    from lor2c_probe.compare.spectrum import compare_spectra

    full = copy_run(recorded["full"], tmp_path / "full", seed=3, learned=True, status="diverged", diverged={"step": 7})
    assert failed_runs(load_runs([full])) == {"full-rank-residual": "full-rank-residual diverged at step 7."}
    damaged = copy_run(recorded["full"], tmp_path / "damaged", seed=3, learned=False)
    shard = shard_paths(damaged, "predictions")[0][1]
    shard.write_bytes(shard.read_bytes()[:50])  # a damaged table: no test, rather than a failed claim line
    assert failed_runs(load_runs([damaged])) == {}
    # a rank-2 LoR2C map none of whose runs learned keeps "not tested": its top-8 share is 1 by construction
    lor2c = copy_run(recorded["im-lor2c"], tmp_path / "im", seed=3, learned=False)
    c = compare_spectra(load_runs([lor2c]), "weights", (8,), strict_phi=False).claims.iloc[0]
    assert c.left_out == 1 and c.verdict == "not tested (rank <= k)"
