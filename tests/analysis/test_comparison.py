"""Method comparisons on constructed data with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from lor2c_probe.analysis.comparison import final_predictions, paired_by_seed, parity, per_example, summarize


def values(rows):
    return pd.DataFrame(rows, columns=["group", "seed", "value"])


def test_paired_by_seed_by_hand():
    v = values([("lora", 1, 0.80), ("lora", 2, 0.82), ("lora", 3, 0.81),
                ("lor2c", 1, 0.83), ("lor2c", 2, 0.852), ("lor2c", 3, 0.844),  # differences 0.03, 0.032, 0.034
                ("share", 1, 0.802), ("share", 2, 0.819), ("share", 3, 0.811)])  # differences 0.002, -0.001, 0.001
    t = paired_by_seed(v, "lora").set_index("group")
    ref = sps.ttest_1samp([0.03, 0.032, 0.034], 0)
    assert t.loc["lor2c", "difference"] == pytest.approx(0.032) and t.loc["lor2c", "p"] == pytest.approx(ref.pvalue)
    assert t.loc["lor2c", "better"] == "holds" and t.loc["lor2c", "parity"] == "does not hold"  # better by more than 1 point
    assert t.loc["lor2c", "p_sign_flip"] == pytest.approx(0.25)  # 2 of 8 flips: the exact test cannot reject at n = 3
    assert t.loc["share", "parity"] == "holds" and t.loc["share", "better"] == "cannot tell"  # interval inside +-1 point
    assert t.loc["share", "seeds"] == 3
    # one example better on each of two seeds, from different accuracies: the differences agree up to rounding; no
    # spread gives no interval and no p, so neither "better" nor "parity" can be told (a t on rounding read p ~ 0)
    same = paired_by_seed(values([("lora", 1, 1133 / 1275), ("lora", 2, 1102 / 1275),
                                  ("im", 1, 1134 / 1275), ("im", 2, 1103 / 1275)]), "lora").iloc[0]
    assert np.isnan(same.p) and same.better == "cannot tell" and same.parity == "cannot tell"


def test_parity_seeds_when_parity_cannot_be_told():
    # minilm-full's final accuracies, seeds 17-21 (figures/minilm-full/data/comparison.parquet): LoR2C - LoRA differences
    # +1.33, -1.02, -0.63, +0.24, -2.12 points, mean -0.44, SD 1.30: an interval ±0.56 wide (24 seeds) would fit in ±1
    lora = [0.82118, 0.82824, 0.82902, 0.82588, 0.84078]
    lor2c = [0.83451, 0.81804, 0.82275, 0.82824, 0.81961]
    v = values([("lora", s, a) for s, a in zip(range(17, 22), lora)] + [("lor2c", s, a) for s, a in zip(range(17, 22), lor2c)])
    r = paired_by_seed(v, "lora").iloc[0]
    d = np.subtract(lor2c, lora)
    assert r.parity == "cannot tell" and r.sd == pytest.approx(d.std(ddof=1)) and r.parity_seeds == 24
    assert "about 24 seeds would decide it" in summarize(paired_by_seed(v, "lora"), pd.DataFrame(), metric="accuracy")
    # mean beyond the margin (-2 points): more seeds would show "does not hold" once the interval clears -1 point
    far = values([("lora", s, 0.8) for s in range(3)] + [("im", s, 0.8 + x) for s, x in enumerate([-0.005, -0.02, -0.035])])
    r = paired_by_seed(far, "lora").iloc[0]
    # SD 1.5 points, half-width 2 - 1 = 1: t_10 1.5 / sqrt(11) = 1.008 > 1, t_11 1.5 / sqrt(12) = 0.953
    assert r.parity == "cannot tell" and r.parity_seeds == 12
    # decided either way, or no interval: no estimate
    t = paired_by_seed(values([("lora", 1, 0.80), ("lora", 2, 0.82), ("lora", 3, 0.81), ("a", 1, 0.83), ("a", 2, 0.852), ("a", 3, 0.844),
                               ("b", 1, 0.802), ("b", 2, 0.819), ("b", 3, 0.811), ("c", 1, 0.9)]), "lora").set_index("group")
    assert t.parity_seeds.isna().all()


def test_parity_rules():
    assert parity(-0.005, 0.008, 0.01) == "holds"
    assert parity(-0.05, -0.02, 0.01) == "does not hold"
    assert parity(-0.02, 0.005, 0.01) == "cannot tell"
    assert parity(np.nan, np.nan, 0.01) == "cannot tell"


def _preds(correct: np.ndarray, step: int = 10) -> pd.DataFrame:
    labels = np.arange(len(correct)) % 2
    return pd.DataFrame({"step": step, "epoch": 0, "split": "eval", "example": np.arange(len(correct)), "label": labels.astype(float),
                         "prediction": np.where(correct, labels, 1 - labels).astype(float)})


def test_mcnemar_per_seed_against_the_baseline_of_that_seed():
    base = np.ones(100, dtype=bool)
    base[:10] = False  # baseline wrong on 0..9
    other = np.ones(100, dtype=bool)
    other[5:30] = False  # wrong on 5..29: right-only-under-other 0..4 (5), right-only-under-base 10..29 (20)
    m = per_example({("lora", 1): _preds(base), ("lor2c", 1): _preds(other)}, "lora")
    r = m.iloc[0]
    assert (r.only_group, r.only_baseline, r.examples) == (5, 20, 100)
    assert r.p == pytest.approx(sps.binomtest(5, 25, 0.5).pvalue) and r.difference == pytest.approx(-0.15)
    assert r.verdict == "differ" and r.low < -0.15 < r.high
    with pytest.raises(ValueError, match="different examples"):
        per_example({("lora", 1): _preds(base), ("lor2c", 1): _preds(other[:50])}, "lora")


def test_final_predictions_take_the_last_eval():
    p = pd.concat([_preds(np.zeros(4, dtype=bool), step=5), _preds(np.ones(4, dtype=bool), step=10)])
    last = final_predictions(p)
    assert (last.step == 10).all() and (last.prediction == last.label).all()


def test_summary_states_test_n_interval_and_verdicts():
    v = values([("lora", 1, 0.80), ("lora", 2, 0.82), ("lor2c", 1, 0.83), ("lor2c", 2, 0.84)])
    base = np.ones(40, dtype=bool)
    m = per_example({("lora", 1): _preds(base), ("lor2c", 1): _preds(base)}, "lora")
    text = summarize(paired_by_seed(v, "lora"), m, metric="accuracy")
    assert "lor2c - lora: final accuracy difference +2.50 points" in text and "paired t across n = 2 seeds" in text
    assert "Better than lora: cannot tell" in text and "Parity within +-1 point(s)" in text
    assert "exact McNemar on 40 shared eval examples" in text and "0 vs 0 discordant" in text and "nan" not in text.lower()


def test_summary_names_why_there_is_no_interval():
    same = values([("lora", 1, 0.80), ("lora", 2, 0.82), ("lor2c", 1, 0.81), ("lor2c", 2, 0.83)])  # +1 point on both seeds
    text = summarize(paired_by_seed(same, "lora"), pd.DataFrame(), metric="accuracy")
    assert "[no interval: the seeds' differences are identical]" in text and "nan" not in text.lower()
    one = summarize(paired_by_seed(values([("lora", 1, 0.80), ("lor2c", 1, 0.81)]), "lora"), pd.DataFrame(), metric="accuracy")
    assert "[no interval: one seed]" in one and "exact sign-flip p = " in one and "nan" not in one.lower()


def test_no_shared_seed_is_named():
    text = summarize(paired_by_seed(values([("lora", 1, 0.80), ("lor2c", 2, 0.81)]), "lora"), pd.DataFrame(), metric="accuracy")
    assert "[no interval: no seed shared with the baseline]" in text and "n = 0 seeds" in text
