"""scripts/digest.py lays out a report's committed numbers; golden values are the depth-12 gallery reading
(figures/README.md, "Depth 12 (fig7-depth12)"), which were read from the same Parquet tables."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("digest", ROOT / "scripts" / "digest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _digest():
    return _module().digest


def test_digest_quotes_the_depth12_reading() -> None:
    text = _digest()(ROOT / "figures" / "fig7-depth12" / "data")
    lines = text.splitlines()
    lor2c = next(x for x in lines if x.startswith("lor2c (n_seeds 3)"))
    # last epoch (3): layer 0 5.10, top layer 0.23 [0.12, 0.44], as the gallery quotes them
    assert "L0 5.10" in lor2c and "L11 0.23 [0.12, 0.44]" in lor2c
    assert "# gradient ratio, epoch 3" in text
    assert any(x.startswith("im-lor2c s18: step 50 merge lor2c.9, lor2c.10 -> lor2c.9-10") for x in lines)
    assert "# per example (exact McNemar)" in text


def test_digest_of_an_earlier_epoch_and_a_missing_table(tmp_path: Path) -> None:
    digest = _digest()
    early = digest(ROOT / "figures" / "fig7-depth12" / "data", epoch=0)
    assert "# gradient ratio, epoch 0" in early
    assert digest(tmp_path) == ""  # no tables, nothing quoted


def test_run_times_sums_completed_runs_only(tmp_path: Path) -> None:
    mod = _module()
    for name, status, wall, cpu in [("lora-s17", "completed", 1530.0, 2858.0), ("lor2c-s17", "completed", 1392.0, 2634.0),
                                    ("lora-s18", "running", 99.0, 99.0)]:
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "manifest.json").write_text(
            json.dumps({"status": status, "results": {"wall_seconds": wall, "cpu_seconds": cpu}}))
    text = mod.run_times(tmp_path / "runs")
    assert "lora-s17: 1,530 s wall, 2,858 s CPU" in text and "lora-s18" not in text
    assert "total 2 runs: 2,922 s wall, 5,492 s CPU" in text
