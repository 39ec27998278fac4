"""The ratio analysis on hand-written tables: every expected number below is checked by hand."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lor2c_probe.analysis.gradients import (
    AlignmentError,
    activation_grad_ratio,
    check_alignment,
    gradient_ratio_surface,
    module_layer_values,
    summarize,
    trend_by_epoch,
    zero_layers,
)


def grads(rows):
    """rows: (step, epoch, module, layer, factor, stat, value)."""
    return pd.DataFrame(rows, columns=["step", "epoch", "module", "layer", "factor", "stat", "value"])


# LoR2C run: two layers, two epochs with two steps each; a merged module appears in epoch 1.
LOR2C = grads(
    [
        (1, 0, "lor2c.0", 0, "all", "mean_abs", 4.0),
        (2, 0, "lor2c.0", 0, "all", "mean_abs", 6.0),  # epoch 0, layer 0: mean 5
        (1, 0, "lor2c.1", 1, "all", "mean_abs", 2.0),
        (2, 0, "lor2c.1", 1, "all", "mean_abs", 2.0),  # epoch 0, layer 1: 2
        (3, 1, "lor2c.0-1", 0, "all", "mean_abs", 3.0),  # epoch 1: merged 0-1 covers both layers: 3
        (4, 1, "lor2c.0-1", 0, "all", "mean_abs", 3.0),
        (1, 0, "global", -1, "all", "l2", 9.0),
        (1, 0, "lor2c.shared", -1, "A", "mean_abs", 7.0),  # no layer: not in the surface
    ]
)
LORA = grads(
    [
        (1, 0, "lora.0", 0, "all", "mean_abs", 1.0),
        (2, 0, "lora.0", 0, "all", "mean_abs", 1.5),  # 1.25 -> ratio 5 / 1.25 = 4
        (1, 0, "lora.1", 1, "all", "mean_abs", 2.0),
        (2, 0, "lora.1", 1, "all", "mean_abs", 2.0),  # 2 -> ratio 1
        (3, 1, "lora.0", 0, "all", "mean_abs", 0.0),
        (4, 1, "lora.0", 0, "all", "mean_abs", 0.0),  # 0 -> zero_denominator
        (3, 1, "lora.1", 1, "all", "mean_abs", 1.0),
        (4, 1, "lora.1", 1, "all", "mean_abs", 2.0),  # 1.5 -> ratio 3 / 1.5 = 2
    ]
)


def test_module_layer_values_expands_spans_and_drops_layerless_modules():
    v = module_layer_values(LOR2C)
    assert v[["epoch", "layer", "value"]].values.tolist() == [[0, 0, 5.0], [0, 1, 2.0], [1, 0, 3.0], [1, 1, 3.0]]
    assert v["modules"].tolist() == ["lor2c.0", "lor2c.1", "lor2c.0-1", "lor2c.0-1"]


def test_ratio_surface_hand_checked():
    s = gradient_ratio_surface(LOR2C, LORA)
    assert s[["epoch", "layer"]].values.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert s["numerator"].tolist() == [5.0, 2.0, 3.0, 3.0]
    assert s["denominator"].tolist() == [1.25, 2.0, 0.0, 1.5]
    np.testing.assert_allclose(s["ratio"], [4.0, 1.0, np.nan, 2.0])
    assert s["status"].tolist() == ["ok", "ok", "zero_denominator", "ok"]


def test_missing_layers_and_zero_both_are_explicit():
    den = LORA[LORA.layer == 0]
    s = gradient_ratio_surface(LOR2C, den)
    assert s.set_index(["epoch", "layer"])["status"].to_dict() == {
        (0, 0): "ok", (0, 1): "denominator_missing", (1, 0): "zero_denominator", (1, 1): "denominator_missing"
    }
    zero = grads([(1, 0, "a.0", 0, "all", "mean_abs", 0.0)])
    assert gradient_ratio_surface(zero, zero)["status"].tolist() == ["zero_both"]


def test_zero_layers_and_trend():
    s = gradient_ratio_surface(LOR2C, LORA)
    assert zero_layers(s) == []
    z = gradient_ratio_surface(LOR2C, LORA.assign(value=np.where(LORA.layer == 0, 0.0, LORA.value)))
    assert zero_layers(z) == [0]
    t = trend_by_epoch(s)
    row = t.set_index("epoch").loc[0]
    assert row.spearman_rho == pytest.approx(-1.0) and row.lowest_over_highest == pytest.approx(4.0)
    assert row.layers_ratio_above_1 == 1


def test_summary_states_the_verdict_and_the_undefined_cells():
    text = summarize(gradient_ratio_surface(LOR2C, LORA), numerator="lor2c", denominator="lora", stat="mean_abs", factor="all")
    assert "epoch 0: ratio 4 at the lowest layer, 1 at the highest (x4)" in text
    assert "holds: in every epoch the ratio clearly rises toward lower layers" in text  # epoch 1 has one defined cell only
    assert "zero_denominator" in text
    flat = gradient_ratio_surface(LORA, LOR2C)  # inverse: ratio falls toward lower layers in epoch 0
    assert "does not hold" in summarize(flat, numerator="lora", denominator="lor2c", stat="mean_abs", factor="all")


def test_alignment_errors_say_which():
    check_alignment(LOR2C, LORA)
    with pytest.raises(AlignmentError, match=r"epochs do not align: numerator alone has \[1\]"):
        check_alignment(LOR2C, LORA[LORA.epoch == 0])
    deeper = pd.concat([LORA, grads([(1, 0, "lora.2", 2, "all", "mean_abs", 1.0), (3, 1, "lora.2", 2, "all", "mean_abs", 1.0)])])
    with pytest.raises(AlignmentError, match=r"layers do not align: denominator alone has \[2\]"):
        check_alignment(LOR2C, deeper)


def test_unknown_stat_or_factor_lists_what_exists():
    with pytest.raises(ValueError, match="statistic 'median' is not recorded; available: mean_abs"):
        gradient_ratio_surface(LOR2C, LORA, stat="median")
    with pytest.raises(ValueError, match="factor 'B' is not recorded; available: A, all"):
        gradient_ratio_surface(LOR2C, LORA, factor="B")


def test_activation_ratio():
    ag = lambda vals: pd.DataFrame(  # noqa: E731
        [(s, 0, layer, "l2", v) for s, (layer, v) in enumerate(vals, start=1)], columns=["step", "epoch", "layer", "stat", "value"]
    )
    r = activation_grad_ratio(ag([(0, 2.0), (1, 4.0)]), ag([(0, 1.0), (1, 8.0)]))
    assert r["ratio"].tolist() == [2.0, 0.5]


def test_analysis_package_imports_no_torch():
    code = "import sys, lor2c_probe.analysis.gradients; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_summary_reports_layers_that_are_zero_everywhere():
    zero_l0 = LORA.assign(value=np.where(LORA.layer == 0, 0.0, LORA.value))
    s = gradient_ratio_surface(LOR2C, zero_l0)
    text = summarize(s, numerator="lor2c", denominator="lora", stat="mean_abs", factor="all")
    assert "Layers whose statistic is zero in every epoch (no ratio): [0]." in text
    assert not np.isinf(s["ratio"]).any() and s.loc[s.layer == 0, "status"].eq("zero_denominator").all()


def _surface(ratios_by_epoch):
    rows = [(e, layer, r, 1.0, r, "ok") for e, rs in enumerate(ratios_by_epoch) for layer, r in enumerate(rs)]
    return pd.DataFrame(rows, columns=["epoch", "layer", "numerator", "denominator", "ratio", "status"])


def test_verdict_separates_clear_weak_and_single_layer_trends():
    kw = dict(numerator="a", denominator="b", stat="mean_abs", factor="all")
    # epoch 0: weak (non-monotone), epoch 1: clear. Ratios by layer 0..4.
    partly = summarize(_surface([[2, 3, 1, 4, 0.5], [4, 3, 2, 1.5, 1]]), **kw)
    assert "holds only partly: a clear rise toward lower layers (rho <= -0.5) in 1 of 2 epochs, a weak one in 1" in partly
    # A clear rise carried by the top layer alone: rho = -0.7 with it, -0.4 without (scipy.stats.spearmanr).
    carried = summarize(_surface([[3.1, 3.0, 3.2, 2.9, 0.5]]), **kw)
    assert "holds: in every epoch" in carried and "that layer carries the trend" in carried
    # Exactly on the threshold (-0.5 computed as -0.49999999999999994) counts as clear.
    edge = trend_by_epoch(_surface([[3.3, 3.0, 3.2, 2.9, 3.1, 0.4]]))
    assert "carries the trend" not in summarize(_surface([[3.3, 3.0, 3.2, 2.9, 3.1, 0.4]]), **kw)
    assert edge.spearman_rho_without_top.iloc[0] == pytest.approx(-0.5)
    t = trend_by_epoch(_surface([[4, 3, 2, 1.5, 1]]))
    assert t.spearman_rho.iloc[0] == pytest.approx(-1.0) and t.spearman_rho_without_top.iloc[0] == pytest.approx(-1.0)


def test_summary_is_neutral_and_never_prints_nan():
    """Any pair of methods: the paper's claim only when asked for; undefined numbers in words; missing cells named."""
    kw = dict(numerator="dora", denominator="lora", stat="mean_abs", factor="all")
    s = _surface([[1.2, 1.1, 0.0], [1.0, 1.0, 1.0], [0.9, 1.3]])  # a zero top ratio, a constant epoch, two layers only
    missing = pd.DataFrame([(2, 2, np.nan, 1.0, np.nan, "numerator_missing"), (0, 3, 0.0, 0.0, np.nan, "zero_both")],
                           columns=s.columns)
    text = summarize(pd.concat([s, missing], ignore_index=True), **kw)
    assert "nan" not in text.lower() and "inf" not in text.lower()
    assert "Paper claim" not in text and "A rise of the dora / lora ratio toward lower layers" in text
    assert "epoch 0: ratio 1.2 at the lowest layer, 0 at the highest;" in text  # lowest / highest = inf: left out
    assert "numerator_missing: dora records no module there) at layers [2]" in text
    assert "zero_both: both statistics are exactly 0) at layers [3]" in text
    paper = summarize(_surface([[3, 2, 1]]), **{**kw, "numerator": "lor2c"}, paper_claim=True)
    assert paper.count("Paper claim (LoR2C's gradient ratio to LoRA rises toward lower layers) holds") == 1


def test_weak_trends_alone_are_not_called_a_partial_hold():
    text = summarize(_surface([[2, 3, 1, 4, 0.5], [2, 3, 1, 4, 0.5]]), numerator="a", denominator="b", stat="l2", factor="all")
    assert "holds" not in text and "is not clear: the ratio rises toward lower layers only weakly" in text
