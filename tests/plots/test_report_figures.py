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
