"""The figure title stays clear of the first row's axes titles, for one run and for many (tall figures)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lor2c_probe.plots.spectra import low_rank_figure


def _curves(runs: int) -> pd.DataFrame:
    rows = []
    for r in range(runs):
        for kind in ("learned", "control"):
            for layer in range(2):
                s = np.sort(np.random.default_rng(r).random(16))[::-1]
                e = np.cumsum(s**2) / np.sum(s**2)
                rows += [{"run": f"run {r}", "epoch": 0, "layer": layer, "kind": kind, "index": i, "sigma_normalized": s[i] / s[0],
                          "cumulative_energy": e[i]} for i in range(16)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("runs", [1, 6])
def test_suptitle_clears_the_axes_titles(runs):
    fig = low_rank_figure(_curves(runs), title="Learned residual maps: weight spectra vs a same-norm Gaussian control")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # the report's figures are bare Figures; extents in pixels
    canvas.draw()
    renderer = canvas.get_renderer()
    top = fig._suptitle.get_window_extent(renderer)
    for ax in fig.axes:
        box = ax.title.get_window_extent(renderer)
        assert box.y1 < top.y0, (runs, box, top)  # below the suptitle, not overlapping it
    assert top.y1 <= fig.bbox.y1 + 0.5  # and the suptitle is inside the figure
