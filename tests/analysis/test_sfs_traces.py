from __future__ import annotations

import json

import pandas as pd

from lor2c_probe.analysis.sfs_traces import event_effects, sfs_traces


def _sfs(rows):
    return pd.DataFrame([(s, 0, m, "features", 2, v) for s, m, v in rows], columns=["step", "epoch", "module", "source", "k", "value"])


EVENTS = pd.DataFrame(
    [(10, 0, "merge", "lor2c.0,lor2c.1", json.dumps({"result": "lor2c.0-1", "kept_factors_of": "lor2c.1", "loss_before_mean": 0.7, "loss_after_mean": 0.6})),
     (20, 0, "inject", "lor2c.2", json.dumps({"result": "lora.2"}))],
    columns=["step", "epoch", "kind", "modules", "detail_json"],
)
SFS = _sfs([(5, "lor2c.0", 0.4), (10, "lor2c.0", 0.3), (5, "lor2c.1", 0.2), (10, "lor2c.1", 0.25), (15, "lor2c.0-1", 0.1),
            (5, "lor2c.2", 0.5), (20, "lor2c.2", 0.45)])


def test_traces_link_merged_modules_to_their_parents():
    t = sfs_traces(SFS, EVENTS)
    assert t[t.module == "lor2c.0-1"].parents.tolist() == ["lor2c.0,lor2c.1"] and t[t.module == "lor2c.0"].parents.iloc[0] == ""


def test_event_effects_before_and_after():
    e = event_effects(SFS, EVENTS).set_index("kind")
    assert e.loc["merge", "sfs_before"] == {"lor2c.0": 0.3, "lor2c.1": 0.25} and e.loc["merge", "sfs_after"] == 0.1
    assert e.loc["merge", "sfs_after_step"] == 15 and e.loc["merge", "loss_after_mean"] == 0.6
    assert e.loc["inject", "sfs_before"] == {"lor2c.2": 0.45} and pd.isna(e.loc["inject", "sfs_after"])  # the LoR2C trace ends
