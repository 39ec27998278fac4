from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lor2c_probe.analysis.low_rank import (
    control_spectrum,
    energy_shares,
    left_singular_vectors,
    low_rank_evidence,
    phi,
    subspace_similarity,
)


def _spectra(sigmas_by_module, epoch=0, step=10, source="weights"):
    rows = [(step, epoch, m, source, i, s) for m, sig in sigmas_by_module.items() for i, s in enumerate(sig)]
    return pd.DataFrame(rows, columns=["step", "epoch", "module", "source", "index", "sigma"])


def test_energy_shares_by_hand():
    assert energy_shares(np.array([3.0, 1.0, 0.0, 0.0]), (1, 2, 4)) == {1: 0.9, 2: 1.0, 4: 1.0}
    assert energy_shares(np.zeros(3), (1,)) == {1: 0.0}


def test_control_has_the_same_frobenius_norm_and_is_seeded():
    c = control_spectrum(32, 5.0, seed=3)
    assert np.sqrt((c**2).sum()) == pytest.approx(5.0) and np.array_equal(c, control_spectrum(32, 5.0, seed=3))


def test_rank_two_map_against_control():
    n = 32
    summary, curves = low_rank_evidence(_spectra({"lor2c.0": [4.0, 2.0] + [0.0] * (n - 2), "lor2c.1": [1.0] * n}), ks=(1, 2, 8))
    s = summary.set_index("module")
    assert s.loc["lor2c.0", "top2_energy"] == 1.0 and s.loc["lor2c.0", "top1_energy"] == pytest.approx(16 / 20)
    assert s.loc["lor2c.0", "control_top2_energy"] < 0.3  # a Gaussian 32 x 32 spreads its energy
    assert s.loc["lor2c.0", "top8_vs_control"] == pytest.approx(1.0 / s.loc["lor2c.0", "control_top8_energy"])
    assert s.loc["lor2c.0", "top8_vs_control"] > 1.3  # a 32 x 32 Gaussian holds ~60 % of its energy in 8 directions
    assert s.loc["lor2c.1", "top8_energy"] == pytest.approx(8 / 32) and s.loc["lor2c.1", "stable_rank"] == pytest.approx(32)
    learned = curves[(curves.module == "lor2c.0") & (curves.kind == "learned")]
    assert learned.cumulative_energy.iloc[1] == pytest.approx(1.0) and learned.sigma_normalized.iloc[1] == 0.5


def test_uses_the_last_step_of_each_epoch_and_rejects_bad_input():
    early = _spectra({"lor2c.0": [1.0, 1.0]}, step=5)
    late = _spectra({"lor2c.0": [1.0, 0.0]}, step=10)
    summary, _ = low_rank_evidence(pd.concat([early, late]), ks=(1,))
    assert summary.top1_energy.tolist() == [1.0]
    with pytest.raises(ValueError, match="k must be a positive integer; got 0"):
        low_rank_evidence(late, ks=(0,))
    with pytest.raises(ValueError, match="no 'features' spectra recorded"):
        low_rank_evidence(late, source="features")
    with pytest.raises(ValueError, match="spectra table is empty"):
        low_rank_evidence(late.iloc[:0])
    zero, _ = low_rank_evidence(_spectra({"lor2c.0": [0.0] * 4}), ks=(1,))
    assert not zero.drop(columns=["module"]).isna().any().any()  # zero matrix: all defined


def test_phi_on_constructed_subspaces():
    e = np.eye(6)
    assert phi(e[:, :3], e[:, :3], 3, 3) == pytest.approx(1.0)
    assert phi(e[:, :2], e[:, 2:4], 2, 2) == 0.0
    assert phi(e[:, [0, 1]], e[:, [0, 2]], 2, 2) == pytest.approx(0.5)
    assert phi(e[:, [0, 1]], e[:, [1]], 2, 1) == pytest.approx(1.0)  # min(i, j) normalisation
    grid = subspace_similarity(e[:, :3], e[:, :3], 5, 2)
    assert len(grid) == 3 * 2 and grid.phi.between(0, 1).all()
    with pytest.raises(ValueError, match="needs 4 and 1 singular vectors"):
        phi(e[:, :3], e[:, :3], 4, 1)


def test_factor_route_equals_dense_svd():
    rng = np.random.default_rng(0)
    B, A = rng.standard_normal((20, 4)), rng.standard_normal((4, 20))
    U, s = left_singular_vectors((B, A))
    Ud, sd = left_singular_vectors(B @ A)
    np.testing.assert_allclose(s, sd[:4], rtol=1e-10)
    assert phi(U, Ud, 4, 4) == pytest.approx(1.0)
    for k in range(4):  # same directions one by one (up to sign)
        assert abs(U[:, k] @ Ud[:, k]) == pytest.approx(1.0, abs=1e-8)


def test_residual_maps_from_a_checkpoint(tiny_models, tiny_data, tmp_path):
    from safetensors.numpy import load_file

    from lor2c_probe.analysis.checkpoints import residual_maps
    from lor2c_probe.train.session import run_training
    from tests.helpers import tiny_config

    run_training(tiny_config(tiny_models["bert"], tiny_data, method="share-lor2c", epochs=1), tmp_path / "r", progress=False)
    maps = residual_maps(tmp_path / "r", scaling=2.0)
    t = load_file(str(tmp_path / "r" / "checkpoints" / "epoch-0000" / "adapter.safetensors"))
    sB, A = maps["lor2c.1"]
    np.testing.assert_allclose(sB @ A, 2.0 * t["lor2c.paths.1.B"].astype(np.float64) @ t["lor2c.shared_A"].astype(np.float64))


def test_phi_null_matches_its_expectation_and_a_planted_subspace_is_detected():
    from lor2c_probe.analysis.low_rank import phi_null, phi_test

    null = phi_null(64, 4, 4, draws=1000, seed=1)
    assert null.mean() == pytest.approx(4 / 64, rel=0.1)  # E[phi(i, j)] = max(i, j) / d for a random subspace
    t = phi_test(np.array([0.9, null.mean()]), 64, 4, 4, draws=1000, seed=2)
    assert t.p.iloc[0] == pytest.approx(1 / 1001) and t.p.iloc[1] > 0.3
    assert t.p_holm.iloc[0] == pytest.approx(2 / 1001)


def test_claim_table_across_seeds():
    import pandas as pd

    from lor2c_probe.analysis.low_rank import claim_table

    rows = []
    for seed, top in ((1, 0.6), (2, 0.62), (3, 0.58)):
        for layer in range(3):
            rows.append({"group": "dense", "seed": seed, "epoch": 2, "layer": layer, "n": 32, "top8_energy": top, "control_top8_energy": 0.4,
                         "effective_rank": 10.0 + layer, "control_effective_rank": 28.0, "stable_rank": 2.0, "control_stable_rank": 9.0})
            rows.append({"group": "lor2c", "seed": seed, "epoch": 2, "layer": layer, "n": 8, "top8_energy": 1.0, "control_top8_energy": 1.0,
                         "effective_rank": 5.0, "control_effective_rank": 7.0, "stable_rank": 1.5, "control_stable_rank": 4.0})
    c = claim_table(pd.DataFrame(rows), 8).set_index("group")
    assert c.loc["dense", "unit"] == "seed" and c.loc["dense", "n"] == 3
    assert c.loc["dense", "top8_energy"] == pytest.approx(0.6) and c.loc["dense", "difference"] == pytest.approx(0.2)
    assert c.loc["dense", "verdict"] == "holds" and c.loc["dense", "effective_rank"] == pytest.approx(11.0)
    assert c.loc["lor2c", "verdict"] == "not tested (rank <= k)"
    one = claim_table(pd.DataFrame([r for r in rows if r["seed"] == 1]), 8).set_index("group")
    assert one.loc["dense", "unit"] == "layer" and one.loc["dense", "verdict"] == "cannot tell (one seed)"


def test_by_layer_is_a_t_interval_across_seeds_per_layer_and_skips_rank_k_maps():
    from scipy import stats as sps

    from lor2c_probe.analysis.low_rank import by_layer

    rows = []
    for seed, (e0, e1) in {17: (0.2, 0.8), 18: (0.3, 0.9), 19: (0.25, 0.7)}.items():
        for layer, e in ((0, e0), (1, e1)):
            rows.append(("dense", seed, 1, layer, 64, e, 0.1, 30.0 + seed, 50.0))
            rows.append(("dense", seed, 0, layer, 64, 0.0, 0.1, 0.0, 50.0))  # an earlier epoch: not read
            rows.append(("lor2c", seed, 1, layer, 8, 1.0, 1.0, 5.0, 6.0))  # 8 directions: top-8 energy is 1 by construction
    summary = pd.DataFrame(rows, columns=["group", "seed", "epoch", "layer", "n", "top8_energy", "control_top8_energy",
                                          "effective_rank", "control_effective_rank"])
    t = by_layer(summary, 8).set_index("layer")
    assert set(t.group) == {"dense"} and (t.seeds == 3).all()
    vals = np.array([0.8, 0.9, 0.7])
    half = sps.t.ppf(0.975, 2) * vals.std(ddof=1) / np.sqrt(3)  # by hand: mean 0.8, sd 0.1
    assert t.loc[1, "top8_energy"] == pytest.approx(0.8) and (t.loc[1, "top8_energy_low"], t.loc[1, "top8_energy_high"]) == pytest.approx((0.8 - half, 0.8 + half))
    assert t.loc[0, "control_top8_energy"] == pytest.approx(0.1) and t.loc[0, "effective_rank"] == pytest.approx(48.0)
    one = by_layer(summary[summary.seed == 17], 8)
    assert one.top8_energy_low.isna().all() and (one.seeds == 1).all()  # one seed: the value, no interval


def test_by_layer_counts_runs_not_modules():
    from lor2c_probe.analysis.low_rank import by_layer

    # two unplaced modules of one run share layer -1: they are averaged into that run's one value, not two samples
    rows = [("dense", "dense s1", 1, 1, -1, 64, 0.2, 0.1, 30.0, 50.0), ("dense", "dense s1", 1, 1, -1, 64, 0.4, 0.1, 20.0, 50.0),
            ("dense", "dense s2", 2, 1, -1, 64, 0.5, 0.1, 10.0, 50.0)]
    summary = pd.DataFrame(rows, columns=["group", "run", "seed", "epoch", "layer", "n", "top8_energy", "control_top8_energy",
                                          "effective_rank", "control_effective_rank"])
    row = by_layer(summary, 8).iloc[0]
    assert row.seeds == 2 and row.top8_energy == pytest.approx((0.3 + 0.5) / 2) and row.effective_rank == pytest.approx(17.5)
