"""compare/spectrum.py's phi effect: each seed's mean phi over layers against the chance mean, tested across seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from lor2c_probe.compare.spectrum import _phi_effect


def phi_table(per_seed: dict[int, list[float]], chance: float = 0.01) -> pd.DataFrame:
    rows = [(s, layer, v, chance) for s, vals in per_seed.items() for layer, v in enumerate(vals)]
    return pd.DataFrame(rows, columns=["seed", "layer", "phi", "chance_mean"])


def test_phi_effect_is_a_t_test_across_seeds_of_the_mean_over_layers():
    t = phi_table({17: [0.2, 0.3], 18: [0.1, 0.2], 19: [0.25, 0.15]})
    excess = np.array([0.25, 0.15, 0.20]) - 0.01  # per-seed means over layers minus chance
    ref = sps.ttest_1samp(excess, 0)
    half = sps.t.ppf(0.975, 2) * excess.std(ddof=1) / np.sqrt(3)
    text = _phi_effect(t)
    assert "Mean phi over layers per seed: 0.250, 0.150, 0.200" in text
    assert f"above chance by {excess.mean():+.3f} [{excess.mean() - half:+.3f}, {excess.mean() + half:+.3f}]" in text
    assert f"n = 3 seeds, p = {ref.pvalue:.2g}" in text and text.endswith("above chance holds.")


def test_phi_effect_at_chance_cannot_tell_and_one_seed_is_not_tested():
    assert _phi_effect(phi_table({17: [0.011, 0.009], 18: [0.012, 0.008], 19: [0.009, 0.010]})).endswith("above chance cannot tell.")
    one = _phi_effect(phi_table({17: [0.2, 0.3]}))
    assert one == "Mean phi over layers 0.250 (chance 0.010): one seed, no test across seeds."


def test_phi_effect_subtracts_each_maps_own_chance():
    t = phi_table({17: [0.2, 0.3], 18: [0.1, 0.2], 19: [0.25, 0.15]})
    t.loc[t.seed == 19, "chance_mean"] = 0.05  # a pair of maps with another (i, j, d)
    excess = np.array([0.25 - 0.01, 0.15 - 0.01, 0.20 - 0.05])
    assert f"above chance by {excess.mean():+.3f}" in _phi_effect(t) and "(chance" not in _phi_effect(t)
