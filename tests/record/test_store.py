from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from lor2c_probe.record.schema import TABLES, columns
from lor2c_probe.record.store import RunStore, read_table


def _row(step, value):
    return {"step": step, "epoch": 0, "split": "train", "name": "loss", "value": value}


def test_append_flush_read_keeps_order_and_dtypes(tmp_path):
    store = RunStore(tmp_path)
    store.append("metrics", [_row(1, 0.5), _row(2, 0.25)])
    store.flush()
    store.append("metrics", [_row(3, 0.125)])
    store.flush()
    df = read_table(tmp_path, "metrics")
    assert list(df.columns) == columns("metrics")
    assert df["step"].tolist() == [1, 2, 3] and df["value"].tolist() == [0.5, 0.25, 0.125]
    assert str(df["step"].dtype) == "int64" and str(df["value"].dtype) == "float64"
    assert sorted(p.name for p in (tmp_path / "tables" / "metrics").iterdir()) == ["part-000000.parquet", "part-000001.parquet"]


def test_unflushed_rows_are_not_visible_and_no_temp_files_remain(tmp_path):
    store = RunStore(tmp_path)
    store.append("metrics", [_row(1, 1.0)])
    assert read_table(tmp_path, "metrics").empty
    store.flush()
    assert not [p for p in (tmp_path / "tables" / "metrics").iterdir() if p.name.startswith(".")]


def test_empty_table_has_schema_columns(tmp_path):
    for table in TABLES:
        assert list(read_table(tmp_path, table).columns) == columns(table)


def test_schema_is_enforced(tmp_path):
    store = RunStore(tmp_path)
    # A missing or misspelled column is refused when the row arrives (pyarrow alone would write it as a null).
    with pytest.raises(KeyError, match=r"table 'metrics' does not match its schema: missing \['value'\], unexpected \[\]"):
        store.append("metrics", [{"step": 1, "epoch": 0, "split": "train", "name": "loss"}])
    with pytest.raises(KeyError, match=r"missing \['value'\], unexpected \['valeu'\]"):
        store.append("metrics", [{"step": 1, "epoch": 0, "split": "train", "name": "loss", "valeu": 1.0}])
    assert store.pending("metrics") == 0  # nothing of a refused batch is buffered
    store.append("metrics", [{"step": "x", "epoch": 0, "split": "train", "name": "loss", "value": 1.0}])  # a mistyped value
    with pytest.raises((TypeError, ValueError, pa.ArrowException)):
        store.flush()
    assert not (tmp_path / "tables").exists() or not any((tmp_path / "tables").rglob("*.parquet"))
    with pytest.raises(KeyError, match="unknown table"):
        store.append("nope", [])


def test_supersede_moves_later_shards_and_reopen_continues_numbering(tmp_path):
    store = RunStore(tmp_path)
    for i in range(3):
        store.append("metrics", [_row(i, float(i))])
        store.flush()
    assert RunStore(tmp_path).next_seq == 3
    moved = store.supersede_from(1, label="resume-1")
    assert moved == 2
    assert read_table(tmp_path, "metrics")["step"].tolist() == [0]
    kept = sorted(p.name for p in (tmp_path / "superseded" / "resume-1" / "metrics").iterdir())
    assert kept == ["part-000001.parquet", "part-000002.parquet"]  # moved, never deleted
    store.append("metrics", [_row(9, 9.0)])
    store.flush()
    assert read_table(tmp_path, "metrics")["step"].tolist() == [0, 9]


def test_read_table_is_plain_pandas(tmp_path):
    store = RunStore(tmp_path)
    store.append("events", [{"step": 4, "epoch": 1, "kind": "merge", "modules": "3,4", "detail_json": "{}"}])
    store.flush()
    df = read_table(tmp_path, "events")
    assert isinstance(df, pd.DataFrame) and df.loc[0, "kind"] == "merge"
