"""Schedule and policy rules on hand-built inputs (no model)."""

from __future__ import annotations

import pytest

from lor2c_probe.errors import ConfigError
from lor2c_probe.structure.policy import POLICIES, choose_injection, choose_merge, merge_candidates, survivor
from lor2c_probe.structure.schedule import check_counts, event_epochs, event_steps, plan_events


@pytest.mark.parametrize(
    "E,M,expected",
    [(30, 6, [2, 4, 6, 8, 10, 12]), (80, 6, [4, 8, 12, 16, 20, 24]), (60, 1, [15]), (40, 3, [4, 8, 12]), (8, 2, [1, 2]), (4, 1, [1]), (10, 0, [])],
)
def test_event_epochs_match_decisions_item_6(E, M, expected):
    assert event_epochs(E, M) == expected  # j * ceil(E / (4M))


def test_event_steps_and_ordering():
    assert event_steps(300, 3) == [25, 50, 75] and event_steps(300, 2) == [38, 75]
    ev = plan_events("step", merges=3, injections=2, epochs=3, total_steps=300)
    assert [(e.kind, e.step) for e in ev] == [("merge", 25), ("inject", 38), ("merge", 50), ("merge", 75), ("inject", 75)]


def test_first_half_rule_and_counts():
    with pytest.raises(ConfigError, match="after the first half of training; use fewer merges"):
        plan_events("epoch", merges=2, injections=0, epochs=3, total_steps=300)  # ceil(3/8)=1 -> epochs 1, 2 > 1.5
    with pytest.raises(ConfigError, match="at most 5 merges"):
        check_counts(6, 0, 6)
    with pytest.raises(ConfigError, match="M \\+ J <= 5"):
        check_counts(3, 3, 6)
    with pytest.raises(ConfigError, match="merges must be a non-negative integer; got -1"):
        check_counts(-1, 0, 6)
    with pytest.raises(ConfigError, match="unknown schedule"):
        plan_events("hourly", merges=1, injections=0, epochs=4, total_steps=10)


SCORES = {"lor2c.0": 0.30, "lor2c.1": 0.10, "lor2c.2": 0.05, "lor2c.4": 0.20, "lor2c.5": 0.50}  # block 3 injected


def test_candidates_respect_gaps():
    assert merge_candidates(list(SCORES)) == [("lor2c.0", "lor2c.1"), ("lor2c.1", "lor2c.2"), ("lor2c.4", "lor2c.5")]
    assert merge_candidates(["lor2c.0-1", "lor2c.2", "lor2c.4"]) == [("lor2c.0-1", "lor2c.2")]


def test_paper_and_reference_choices_on_a_hand_built_table():
    pair, table = choose_merge(SCORES, POLICIES["paper"])
    assert pair == ("lor2c.1", "lor2c.2")  # 0.15, the smallest sum
    assert [round(c["score"], 2) for c in table] == [0.40, 0.15, 0.70]
    m, _ = choose_injection(SCORES, POLICIES["paper"])
    assert m == "lor2c.2"  # smallest SFS
    head = {k: 1 - v for k, v in SCORES.items()}  # the reference scores by head share
    pair, _ = choose_merge(head, POLICIES["reference"])
    assert pair == ("lor2c.4", "lor2c.5")  # 0.8 + 0.5 = 1.3 is the smallest head-share sum
    m, _ = choose_injection(head, POLICIES["reference"])
    assert m == "lor2c.2"  # largest head share (0.95)
    assert survivor("lor2c.1", "lor2c.2", SCORES, POLICIES["paper"]) == "lor2c.1"  # higher SFS = more information
    assert survivor("lor2c.1", "lor2c.2", SCORES, POLICIES["reference"]) == "lor2c.1"
    assert survivor("lor2c.4", "lor2c.5", SCORES, POLICIES["paper"]) == "lor2c.5"
    assert survivor("lor2c.4", "lor2c.5", SCORES, POLICIES["reference"]) == "lor2c.4"
