"""The gradient-ratio claims on constructed per-seed tables whose answers are known (values by hand or by scipy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from lor2c_probe.analysis.gradient_claims import above_one, aggregate_seeds, overall, step_intervals, summarize, trend_tests

COLS = ["seed", "epoch", "layer", "numerator", "denominator", "ratio", "status"]


def per_seed(ratios: dict[int, list[list[float]]]) -> pd.DataFrame:
    """{seed: [[ratio of layer 0, 1, ...] per epoch]} -> per-seed ratio rows (denominator 1)."""
    rows = [(s, e, layer, r, 1.0, r, "ok") for s, epochs in ratios.items() for e, rs in enumerate(epochs) for layer, r in enumerate(rs)]
    return pd.DataFrame(rows, columns=COLS)


def test_aggregate_over_seeds_uses_a_t_interval_of_the_log_ratio():
    t = per_seed({1: [[2.0, 1.0]], 2: [[3.0, 1.0]], 3: [[4.0, 1.0]]})
    s = aggregate_seeds(t).set_index("layer")
    # layer 0: ratios 2, 3, 4: geometric mean 24^(1/3) = 2.8845; logs' sd 0.34824, t_0.975,2 = 4.3027 ->
    # exp(ln 2.8845 -+ 4.3027 * 0.34824 / sqrt(3)) = [1.2144, 6.8512] (by hand with numpy and scipy.stats.t.ppf)
    assert s.loc[0, "ratio"] == pytest.approx(24 ** (1 / 3), rel=1e-12) and s.loc[0, "n_seeds"] == 3
    assert s.loc[0, "ci_method"] == "t over seeds (log scale)"
    assert (s.loc[0, "ci_low"], s.loc[0, "ci_high"]) == pytest.approx((1.2144, 6.8512), abs=1e-4)
    assert s.loc[1, "ratio"] == pytest.approx(1.0) and np.isnan(s.loc[1, "ci_low"])  # identical seeds: no spread, no interval


def test_two_seeds_far_apart_keep_a_positive_interval_and_a_zero_ratio_falls_back_to_linear():
    # ratios 1 and 10: on the linear scale t_0.975,1 = 12.706 gives 5.5 -+ 57.2, below zero; on the log scale
    # [exp(ln sqrt(10) - 12.706 * ln 10 / 2), ...] = [1.40e-6, 7.13e6], wide but positive, around sqrt(10) = 3.162
    s = aggregate_seeds(per_seed({1: [[1.0]], 2: [[10.0]]})).iloc[0]
    assert s.ratio == pytest.approx(10 ** 0.5) and s.ci_low == pytest.approx(1.4025e-6, rel=1e-3) and s.ci_high == pytest.approx(7.1302e6, rel=1e-3)
    z = aggregate_seeds(per_seed({1: [[0.0]], 2: [[2.0]]})).iloc[0]  # a numerator of exactly 0 in one seed: no log
    assert z.ci_method == "t over seeds (linear: a ratio of 0)" and z.ratio == 1.0
    assert (z.ci_low, z.ci_high) == pytest.approx((1 - 12.7062, 1 + 12.7062), abs=1e-3)  # sd sqrt(2), se 1


def test_aggregate_keeps_undefined_cells_and_counts_seeds():
    t = per_seed({1: [[2.0, 1.0]], 2: [[4.0, 1.0]]})
    t.loc[(t.seed == 2) & (t.layer == 0), ["ratio", "status"]] = [np.nan, "zero_denominator"]
    t = pd.concat([t, pd.DataFrame([(1, 0, 2, 0.0, 0.0, np.nan, "zero_both"), (2, 0, 2, 0.0, 0.0, np.nan, "zero_both")], columns=COLS)])
    s = aggregate_seeds(t).set_index("layer")
    assert s.loc[0, "ratio"] == 2.0 and s.loc[0, "n_seeds"] == 1 and np.isnan(s.loc[0, "ci_low"])  # one seed defines it
    assert s.loc[0, "ci_method"] == "one seed of 2: no interval"
    assert s.loc[2, "status"] == "zero_both" and s.loc[2, "n_seeds"] == 0 and np.isnan(s.loc[2, "ratio"])


def test_one_seed_takes_the_step_interval():
    steps = lambda vals: pd.DataFrame([(i + 1, 0, 0, v) for i, v in enumerate(vals)], columns=["step", "epoch", "layer", "value"])  # noqa: E731
    rng = np.random.default_rng(0)
    den = rng.lognormal(0, 0.5, 60)
    ci = step_intervals(steps(2 * den * rng.lognormal(0, 0.1, 60)), steps(den))
    s = aggregate_seeds(per_seed({17: [[2.0]]}), ci)
    assert s.ci_method.iloc[0] == "block bootstrap over steps" and s.ci_low.iloc[0] < 2.0 < s.ci_high.iloc[0]
    assert s.ci_high.iloc[0] - s.ci_low.iloc[0] < 0.3  # 10% step noise over 60 steps: a narrow interval


def test_trend_is_a_t_test_across_seeds_of_each_seeds_rho():
    down = {1: [[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]], 2: [[6.0, 5.0, 4.0, 3.0, 1.0, 2.0]], 3: [[5.0, 6.0, 4.0, 3.0, 2.0, 1.0]]}
    row = trend_tests(per_seed(down), perms=2000).iloc[0]
    rhos = np.array([sps.spearmanr(range(6), d[0]).statistic for d in down.values()])  # -1, -0.943, -0.943 (scipy)
    ref = sps.ttest_1samp(rhos, 0)
    half = sps.t.ppf(0.975, 2) * rhos.std(ddof=1) / np.sqrt(3)
    assert row.rho == pytest.approx(rhos.mean()) and row.p == pytest.approx(ref.pvalue) and row.seeds == 3 and row.n == 18
    assert (row.rho_low, row.rho_high) == pytest.approx((max(-1.0, rhos.mean() - half), rhos.mean() + half))
    assert row.rho_seeds == "-1.00, -0.94, -0.94" and row.verdict == "holds" and row.verdict_without_top == "holds"
    assert row.p_within == pytest.approx(1 / 2001)  # beside it: every pooled within-seed shuffle is weaker
    up = trend_tests(per_seed({1: [[1.0, 2, 3, 4, 5, 6]], 2: [[1.0, 2, 3, 4, 6, 5]], 3: [[2.0, 1, 3, 4, 5, 6]]}), perms=2000)
    assert up.verdict.iloc[0] == "does not hold"


def test_equal_rho_on_every_seed_has_no_spread_so_no_verdict():
    same = [[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]]
    row = trend_tests(per_seed({1: same, 2: same, 3: same}), perms=500).iloc[0]
    assert row.identical and np.isnan(row.p) and row.verdict == "cannot tell"


def test_one_seed_trend_is_within_run_evidence_never_a_verdict():
    down = [[6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.25]]
    row = trend_tests(per_seed({17: down}), perms=2000).iloc[0]
    # a perfect order over 8 layers: the within-run permutation p is 1/2001 (8! = 40,320 orders), yet one run says
    # nothing about another seed of the method
    assert row.rho == pytest.approx(-1.0) and row.p_within == pytest.approx(1 / 2001) and row.seeds == 1 and np.isnan(row.p)
    assert row.verdict == "cannot tell" and row.verdict_without_top == "cannot tell"


def test_smooth_profiles_without_a_trend_pass_the_within_seed_permutation_not_the_seed_test():
    # no trend in the method: each seed's ratio over 6 layers is an independent random walk (a smooth seed-specific
    # profile). Holds should come at most ~2.5% of the time (one-sided claim at alpha = 0.05).
    rng = np.random.default_rng(11)
    holds = within = 0
    trials = 150
    for _ in range(trials):
        walks = {s: [list(np.exp(np.cumsum(rng.normal(0, 0.3, 6))))] for s in (1, 2, 3)}
        row = trend_tests(per_seed(walks), perms=200).iloc[0]
        holds += row.verdict == "holds"
        within += row.p_within < 0.05 and row.rho < 0
    assert holds <= 0.05 * trials  # 2.5% expected; binomial(150, 0.025) exceeds 7 with probability ~0.05
    assert within >= 3 * max(holds, 1)  # the pooled within-seed permutation is fooled far more often


def test_trend_cannot_tell_from_noise_and_holm_spans_epochs():
    rng = np.random.default_rng(4)
    falling = {1: [6.0, 5, 4, 3, 2, 1], 2: [6.0, 5, 4, 3, 1, 2], 3: [5.0, 6, 4, 3, 2, 1]}
    noise = {s: [list(rng.lognormal(0, 0.3, 6)), falling[s]] for s in (1, 2, 3)}
    t = trend_tests(per_seed(noise), perms=2000).set_index("epoch")
    assert t.loc[0, "verdict"] == "cannot tell" and t.loc[1, "verdict"] == "holds"
    assert t.loc[1, "p_holm"] == pytest.approx(min(1.0, 2 * t.loc[1, "p"]))  # the smaller p of two is doubled (Holm)


def test_top_layer_carrying_the_trend_is_seen():
    flat_then_drop = [[3.0, 3.2, 2.9, 3.1, 3.0, 0.5]]
    t = trend_tests(per_seed({1: flat_then_drop, 2: [[3.1, 2.9, 3.0, 3.2, 3.05, 0.4]], 3: [[2.95, 3.1, 3.2, 2.9, 3.0, 0.6]]}), perms=2000)
    # the top layer has the lowest ratio (rho < 0 with it); without it the layers carry no order: nothing to claim
    assert t.rho.iloc[0] < 0 and abs(t.rho_without_top.iloc[0]) < 0.5 and t.verdict_without_top.iloc[0] == "cannot tell"


def test_summary_states_the_seed_test_and_the_trend_without_the_top_layer():
    down = {1: [[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]], 2: [[6.0, 5.0, 4.0, 3.0, 1.0, 2.0]], 3: [[5.0, 6.0, 4.0, 3.0, 2.0, 1.0]]}
    t = per_seed(down)
    text = summarize(t, aggregate_seeds(t), numerator="lor2c", denominator="lora", stat="mean_abs", factor="all")
    tr = trend_tests(t).iloc[0]
    assert "per seed -1.00, -0.94, -0.94: mean -0.96" in text and "t-test across n = 3 seeds" in text
    assert f"without layer 5: mean rho {tr.rho_without_top:+.2f} [{tr.rho_without_top_low:+.2f}, {tr.rho_without_top_high:+.2f}]" in text
    assert "n = 3 seeds: holds" in text and "within-run evidence" in text
    one = per_seed({1: down[1]})
    text1 = summarize(one, aggregate_seeds(one), numerator="lor2c", denominator="lora", stat="mean_abs", factor="all")
    assert "(within-run evidence): cannot tell at n = 1 seed" in text1 and "rises toward lower layers: cannot tell at n = 1 seed" in text1


def test_above_one_by_hand():
    t = per_seed({1: [[2.0, 2.0]], 2: [[4.0, 1.0]], 3: [[1.0, 4.0]]})  # geometric means 2, 2, 2
    a = above_one(t)
    # identical seeds (as when the seed changes nothing): no spread, so no p; the claim cannot be told, not "p = 0"
    assert a.n == 3 and np.exp(a.estimate) == pytest.approx(2.0) and a.identical and np.isnan(a.p)
    t2 = per_seed({1: [[2.0]], 2: [[0.5]], 3: [[1.5]]})
    b = above_one(t2)
    assert b.p == pytest.approx(sps.ttest_1samp(np.log([2.0, 0.5, 1.5]), 0).pvalue)


def test_overall_verdict_needs_every_epoch():
    assert overall(["holds", "holds"]) == "holds (in all 2 epochs)"
    assert overall(["does not hold"]) == "does not hold (in all 1 epochs)"
    assert overall(["cannot tell", "cannot tell"]).startswith("cannot tell")
    assert overall(["holds", "cannot tell", "does not hold"]) == "mixed: holds in 1 of 3 epochs, does not hold in 1, cannot tell in 1"
    assert overall([]).startswith("cannot tell")


def test_summary_states_test_n_effect_interval_and_verdict():
    down = [[6.0, 5.0, 4.0, 3.0, 2.0, 1.0], [5.0, 4.0, 3.5, 3.0, 2.0, 1.5]]
    down2 = [[6.0, 5.0, 4.0, 3.0, 1.0, 2.0], [5.0, 4.0, 3.5, 3.0, 1.5, 2.0]]  # each seed orders its layers a little differently
    down3 = [[5.0, 6.0, 4.0, 3.0, 2.0, 1.0], [4.0, 5.0, 3.5, 3.0, 2.0, 1.5]]
    seeded = per_seed({1: down, 2: [[x * 1.1 for x in e] for e in down2], 3: [[x * 0.9 for x in e] for e in down3]})
    text = summarize(seeded, aggregate_seeds(seeded), numerator="lor2c", denominator="lora", stat="mean_abs", factor="all", paper_claim=True)
    assert "3 seed(s) (1, 2, 3); cell intervals: t over seeds (log scale) (95%)" in text
    assert "t-test across n = 3 seeds p = " in text and "pooled within-seed permutation p = " in text and "over 18 (layer, seed) pairs" in text
    assert "Paper claim (LoR2C's gradient ratio to LoRA rises toward lower layers): holds (in all 2 epochs)" in text
    assert "Paper claim (LoR2C's modules receive larger gradients than LoRA's): holds" in text and "n = 3 seeds" in text
    assert "nan" not in text.lower()
    share = summarize(seeded, aggregate_seeds(seeded), numerator="share-lor2c", denominator="lora", stat="mean_abs", factor="all",
                      paper_claim=True, method="share-lor2c")
    assert "Paper claim (LoR2C's modules receive larger gradients than LoRA's), tested on share-lor2c: holds" in share
    labelled = summarize(seeded, aggregate_seeds(seeded), numerator="lor2c [reference]", denominator="lora", stat="mean_abs",
                         factor="all", paper_claim=True, method="lor2c")  # a label is not a variant
    assert "Paper claim (LoR2C's modules receive larger gradients than LoRA's): holds" in labelled


def test_summary_with_one_seed_says_cannot_tell_and_never_prints_nan():
    seeded = per_seed({17: [[1.2, 1.1, 0.0], [1.0, 1.0, 1.0]]})
    seeded.loc[seeded.ratio == 0.0, ["ratio", "status"]] = [np.nan, "zero_denominator"]
    text = summarize(seeded, aggregate_seeds(seeded), numerator="dora", denominator="lora", stat="mean_abs", factor="all")
    assert "Paper claim" not in text and "Trend: the dora / lora ratio rises toward lower layers" in text
    assert "dora's module gradient exceeds lora's: cannot tell at n = 1 seed" in text
    assert "zero_denominator: lora's statistic is exactly 0" in text and "at layers [2]" in text
    assert "nan" not in text.lower() and "inf" not in text.lower()
    empty = seeded.assign(status="numerator_missing", ratio=np.nan)
    assert "no claim can be tested" in summarize(empty, aggregate_seeds(empty), numerator="a", denominator="b", stat="l2", factor="all")
