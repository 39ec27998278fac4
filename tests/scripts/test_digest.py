"""scripts/digest.py lays out a report's committed numbers; golden values are the depth-12 gallery reading
(figures/README.md, "Depth 12 (fig7-depth12)"), which were read from the same Parquet tables."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _digest():
    spec = importlib.util.spec_from_file_location("digest", ROOT / "scripts" / "digest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.digest


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
