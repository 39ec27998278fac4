"""The update-spectra reading against values computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lor2c_probe.analysis.update_spectra import by_run, module_layer, per_module, reading


def _spectra(rows):
    return pd.DataFrame([{"step": s, "epoch": 0, "module": m, "source": "weights", "index": i, "sigma": v}
                         for s, m, sig in rows for i, v in enumerate(sig)])


def test_effective_rank_and_energy_by_hand():
    sp = _spectra([(5, "lora.0.q", [2.0, 1.0, 0.0, 0.0]), (5, "lora.1.q", [1.0, 1.0, 1.0, 1.0]), (1, "lora.0.q", [9.0, 0, 0, 0])])
    t = per_module(sp, "a", k=2).set_index("module")
    p = np.array([4.0, 1.0]) / 5.0  # energies of the last reading (step 5), normalised
    assert t.loc["lora.0.q", "effective_rank"] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert t.loc["lora.0.q", "energy_top1"] == pytest.approx(0.8) and t.loc["lora.0.q", "energy_topk"] == pytest.approx(1.0)
    assert t.loc["lora.1.q", "effective_rank"] == pytest.approx(4.0)  # flat spectrum: every direction counts
    assert t.loc["lora.1.q", "layer"] == 1 and t.loc["lora.0.q", "n"] == 4


def test_zero_update_has_no_rank_and_the_reading_says_so():
    sp = _spectra([(3, "ia3.0.o", [0.0, 0.0])])
    t = by_run(per_module(sp, "ia3", k=2))
    assert np.isnan(t.effective_rank_median.iloc[0])
    assert "exactly zero" in reading(t) and "nan" not in reading(t)


def test_reading_separates_capped_from_free_routes():
    low = _spectra([(1, "lora.0.q", [3.0, 1.0])])
    dense = _spectra([(1, "ia3.0.k", list(np.linspace(2, 0.1, 32)))])
    t = by_run(pd.concat([per_module(low, "lora", 8), per_module(dense, "ia3", 8)]))
    text = reading(t)
    assert "Only ia3 could show an update of full rank (32 values)" in text
    assert "Low rank by construction (their route yields at most the cap, below 32): lora (2)" in text


@pytest.mark.parametrize("module,layer", [("lora.3.q", 3), ("lor2c.2-4", 2), ("ia3.0.attention.output.dense", 0), ("lor2c.shared", -1)])
def test_module_layer(module, layer):
    assert module_layer(module) == layer
