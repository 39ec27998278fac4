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


def test_trend_holds_when_every_seed_rises_toward_lower_layers():
    down = [[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]]
    t = trend_tests(per_seed({1: down, 2: down, 3: down}), perms=2000, reps=300)
    row = t.iloc[0]
    # every seed perfectly ordered: rho = -1; a within-seed permutation matches that with probability (1/720)^3
    assert row.rho == pytest.approx(-1.0) and row.p == pytest.approx(1 / 2001) and row.n == 18 and row.seeds == 3
    assert row.verdict == "holds" and row.verdict_without_top == "holds"
    up = trend_tests(per_seed({1: [[1.0, 2, 3, 4, 5, 6]], 2: [[1.0, 2, 3, 4, 5, 6]]}), perms=2000, reps=300)
    assert up.verdict.iloc[0] == "does not hold"


def test_one_seed_trend_is_within_run_evidence_never_a_verdict():
    down = [[6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.25]]
    row = trend_tests(per_seed({17: down}), perms=2000, reps=300).iloc[0]
    # a perfect order over 8 layers: the within-run permutation p is 1/2001 (8! = 40,320 orders), yet one run says
    # nothing about another seed of the method
    assert row.rho == pytest.approx(-1.0) and row.p == pytest.approx(1 / 2001) and row.seeds == 1
    assert row.verdict == "cannot tell" and row.verdict_without_top == "cannot tell"
    two = trend_tests(per_seed({17: down, 18: down}), perms=2000, reps=300).iloc[0]
    assert two.verdict == "holds" and two.n_without_top == 14  # 7 layers below the top, 2 seeds


def test_summary_states_the_trend_without_the_top_layer_with_interval_and_n():
    down = [[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]]
    t = per_seed({1: down, 2: down, 3: down})
    text = summarize(t, aggregate_seeds(t), numerator="lor2c", denominator="lora", stat="mean_abs", factor="all")
    tr = trend_tests(t).iloc[0]
    assert f"without layer 5: rho = -1.00 [{tr.rho_without_top_low:+.2f}, {tr.rho_without_top_high:+.2f}]" in text
    assert "n = 15 pairs: holds" in text
    one = summarize(per_seed({1: down}), aggregate_seeds(per_seed({1: down})), numerator="lor2c", denominator="lora",
                    stat="mean_abs", factor="all")
    assert "cannot tell at n = 1 seed (p and interval within this run)" in one


def test_trend_cannot_tell_from_noise_and_holm_spans_epochs():
    rng = np.random.default_rng(4)
    noise = {s: [list(rng.lognormal(0, 0.3, 6)), [6.0, 5, 4, 3, 2, 1]] for s in (1, 2, 3)}
    t = trend_tests(per_seed(noise), perms=2000, reps=300).set_index("epoch")
    assert t.loc[0, "verdict"] == "cannot tell" and t.loc[1, "verdict"] == "holds"
    assert t.loc[1, "p_holm"] == pytest.approx(min(1.0, 2 * t.loc[1, "p"]))  # the smaller p of two is doubled (Holm)


def test_top_layer_carrying_the_trend_is_seen():
    flat_then_drop = [[3.0, 3.2, 2.9, 3.1, 3.0, 0.5]]
    t = trend_tests(per_seed({1: flat_then_drop, 2: [[3.1, 2.9, 3.0, 3.2, 3.05, 0.4]], 3: [[2.95, 3.1, 3.2, 2.9, 3.0, 0.6]]}), perms=2000, reps=300)
    # the top layer has the lowest ratio (rho < 0 with it); without it the layers carry no order: nothing to claim
    assert t.rho.iloc[0] < 0 and abs(t.rho_without_top.iloc[0]) < 0.5 and t.verdict_without_top.iloc[0] == "cannot tell"


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
    seeded = per_seed({1: down, 2: [[x * 1.1 for x in e] for e in down], 3: [[x * 0.9 for x in e] for e in down]})
    text = summarize(seeded, aggregate_seeds(seeded), numerator="lor2c", denominator="lora", stat="mean_abs", factor="all", paper_claim=True)
    assert "3 seed(s) (1, 2, 3); cell intervals: t over seeds (log scale) (95%)" in text
    assert "permutation p = " in text and "n = 18 (layer, seed) pairs: holds" in text
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
