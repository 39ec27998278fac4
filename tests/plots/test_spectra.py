"""The per-layer low-rank figure draws each layer's interval across seeds as its whisker."""

from __future__ import annotations

import pandas as pd
import pytest

from lor2c_probe.plots.spectra import low_rank_layers_figure


def test_whiskers_are_the_interval_and_the_control_is_dashed():
    layers = pd.DataFrame({"group": ["dense", "dense"], "layer": [0, 1], "seeds": [3, 3],
                           "top8_energy": [0.3, 0.8], "top8_energy_low": [0.2, 0.6], "top8_energy_high": [0.45, 0.9],
                           "control_top8_energy": [0.1, 0.1], "effective_rank": [40.0, 20.0], "effective_rank_low": [35.0, float("nan")],
                           "effective_rank_high": [44.0, float("nan")], "control_effective_rank": [50.0, 50.0]})
    fig = low_rank_layers_figure(layers, k=8, title="t")
    energy, rank = fig.axes[0], fig.axes[1]
    (bars,) = energy.containers
    segs = bars.lines[2][0].get_segments()
    assert segs[0][:, 1] == pytest.approx([0.2, 0.45]) and segs[1][:, 1] == pytest.approx([0.6, 0.9])
    rank_segs = rank.containers[0].lines[2][0].get_segments()
    assert rank_segs[1][:, 1] == pytest.approx([20.0, 20.0])  # no interval at layer 1: a zero-length whisker
    dashed = [ln for ln in energy.get_lines() if ln.get_linestyle() == "--"]
    assert [list(ln.get_ydata()) for ln in dashed] == [[0.1, 0.1]]
    assert "dense (3 seeds)" in [t.get_text() for t in energy.get_legend().get_texts()]
