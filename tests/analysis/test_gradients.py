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
    trend_by_epoch,
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


def test_trend_by_epoch_describes():
    s = gradient_ratio_surface(LOR2C, LORA)
    t = trend_by_epoch(s)
    row = t.set_index("epoch").loc[0]
    assert row.spearman_rho == pytest.approx(-1.0) and row.lowest_over_highest == pytest.approx(4.0)
    assert row.layers_ratio_above_1 == 1


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


def _surface(ratios_by_epoch):
    rows = [(e, layer, r, 1.0, r, "ok") for e, rs in enumerate(ratios_by_epoch) for layer, r in enumerate(rs)]
    return pd.DataFrame(rows, columns=["epoch", "layer", "numerator", "denominator", "ratio", "status"])


def test_module_layer_steps_is_the_series_behind_the_epoch_values():
    from lor2c_probe.analysis.gradients import module_layer_steps

    steps = module_layer_steps(LOR2C)
    assert steps.groupby(["epoch", "layer"])["value"].mean().tolist() == [5.0, 2.0, 3.0, 3.0]  # == module_layer_values
    assert len(steps) == 8  # 2 layers x 4 steps (the merged module gives each of its layers its value)
