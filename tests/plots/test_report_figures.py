"""The multi-seed block-input profile: its line and band are computed on the log scale it is drawn on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from lor2c_probe.plots.report import activation_profile_figure


def test_seed_band_is_the_exponentiated_t_interval_of_log_norms():
    # group "lor2c": two seeds whose norms differ tenfold at layer 0: a linear t band (t_0.975,1 = 12.7) would reach
    # below zero; the log-scale band is exp(mean log -+ t * sd(log) / sqrt(2)) around the geometric mean
    rows = [("lor2c", "lor2c s1", 1, 0, 1.0), ("lor2c", "lor2c s2", 1, 0, 10.0),
            ("lor2c", "lor2c s1", 1, 1, 2.0), ("lor2c", "lor2c s2", 1, 1, 2.0),
            ("lor2c", "lor2c s1", 0, 0, 99.0), ("lor2c", "lor2c s2", 0, 0, 99.0),  # an earlier epoch: not drawn
            ("lora", "lora s1", 1, 0, 3.0), ("lora", "lora s1", 1, 1, 4.0)]  # one run: a plain line
    profiles = pd.DataFrame(rows, columns=["group", "method", "epoch", "layer", "value"])
    fig = activation_profile_figure(profiles, stat="l2")
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    banded = lines["lor2c (geometric mean of 2 seeds)"]
    assert banded.get_ydata() == pytest.approx([10 ** 0.5, 2.0])
    assert lines["lora"].get_ydata().tolist() == [3.0, 4.0]
    (band,) = ax.collections
    ys = band.get_paths()[0].vertices[:, 1]
    half = sps.t.ppf(0.975, 1) * np.log(10) / np.sqrt(2) / np.sqrt(2)  # sd of (0, ln 10) is ln 10 / sqrt 2
    low, high = np.exp(np.log(10) / 2 - half), np.exp(np.log(10) / 2 + half)
    assert ys.min() == pytest.approx(low, rel=1e-9) and ys.max() == pytest.approx(high, rel=1e-9) and ys.min() > 0


def _metrics(accs: list[float], ci: list[tuple[float, float]] | None = None) -> pd.DataFrame:
    rows = [("train", "loss", s, 0.7 - 0.01 * s) for s in range(1, 5)]
    rows += [("eval", "accuracy", 2 * (i + 1), a) for i, a in enumerate(accs)]
    m = pd.DataFrame(rows, columns=["split", "name", "step", "value"])
    if ci is not None:
        ev = m.split == "eval"
        m.loc[ev, "ci_low"], m.loc[ev, "ci_high"] = [c[0] for c in ci], [c[1] for c in ci]
    return m


def test_eval_points_carry_the_intervals_they_are_given():
    from lor2c_probe.plots.report import training_curves_figure, training_curves_plotly

    metrics = {"lora": _metrics([0.8, 0.9], [(0.75, 0.84), (0.86, 0.93)]), "lor2c": _metrics([0.5, 0.6])}
    fig = training_curves_figure(metrics, headline="accuracy")
    (bars,) = [c for c in fig.axes[1].containers if c.has_yerr]  # only the run whose rows carry an interval
    segs = bars.lines[2][0].get_segments()
    assert segs[0][:, 1] == pytest.approx([0.75, 0.84]) and segs[1][:, 1] == pytest.approx([0.86, 0.93])  # asymmetric, as given
    ply = training_curves_plotly(metrics, headline="accuracy")
    ev = {t.name: t for t in ply.data if t.xaxis == "x2"}
    assert list(ev["lora"].error_y.arrayminus) == pytest.approx([0.05, 0.04]) and list(ev["lora"].error_y.array) == pytest.approx([0.04, 0.03])
    assert ev["lor2c"].error_y.array is None
