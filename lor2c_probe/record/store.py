"""RunStore: append rows, flush them as immutable Parquet shards, read tables back.

Layout of a run directory::

    manifest.json                      config, policy, versions, schema version, parameter counts, status
    tables/<table>/part-<seq>.parquet  append-only shards; <seq> is one counter across all tables
    checkpoints/epoch-<e>/             adapter + head (safetensors), optimizer/scheduler/RNG state
    superseded/                        shards a --resume replaced (kept, never deleted)

Every file is written to a hidden temporary name and renamed into place, so a reader never sees a
torn file and a killed run keeps everything up to its last flush.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lor2c_probe.errors import StorageError
from lor2c_probe.record.atomic import fsync_dir, read_json, write_atomic, write_json_atomic
from lor2c_probe.record.schema import TABLES

__all__ = ["MANIFEST", "NullStore", "RunStore", "read_manifest", "read_table", "shard_paths", "write_atomic", "write_json_atomic"]

_SHARD = re.compile(r"^part-(\d{6})\.parquet$")
MANIFEST = "manifest.json"


def shard_paths(root: Path, table: str) -> list[tuple[int, Path]]:
    folder = Path(root) / "tables" / table
    if not folder.is_dir():
        return []
    out = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _SHARD.fullmatch(p.name))]
    return sorted(out)


def read_table(root: str | Path, table: str) -> pd.DataFrame:
    """All rows of ``table`` in write order (an empty frame with the schema's columns if none)."""
    if table not in TABLES:
        raise KeyError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    shards = shard_paths(Path(root), table)
    if not shards:
        return TABLES[table].empty_table().to_pandas()
    return pd.concat([read_table_shard(p, table) for _, p in shards], ignore_index=True)


def read_table_shard(p: Path, table: str) -> pd.DataFrame:
    """One shard's rows; a damaged one is a StorageError naming the file."""
    try:
        return pq.read_table(p, schema=TABLES[table]).to_pandas()
    except (pa.ArrowException, OSError) as e:
        raise StorageError(f"{p}: damaged Parquet shard of table {table!r} ({str(e).splitlines()[0]}); "
                           "move it out of the run folder to read the other shards") from None


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The run's manifest; a missing or damaged one is a StorageError naming the file."""
    m = read_json(Path(root) / MANIFEST, "run manifest")
    if not isinstance(m, dict):
        raise StorageError(f"{Path(root) / MANIFEST}: run manifest is not a JSON object")
    return m


class RunStore:
    """Buffers rows per table and flushes each table's buffer as one new shard."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._buffers: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}  # tables registered later get one on append
        existing = [seq for t in TABLES for seq, _ in shard_paths(self.root, t)]
        self.next_seq = max(existing, default=-1) + 1
        # Called with {table: rows} at each flush, after the shards are written (live sinks: TensorBoard, W&B, MLflow).
        # A listener must not raise (sinks.live catches its sinks' errors): the run store is the record.
        self.listeners: list[Callable[[dict[str, list[dict[str, Any]]]], None]] = []

    def append(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Buffer ``rows``; each must have exactly the schema's columns (pyarrow would fill a misspelled one with nulls)."""
        names = _check_table(table)
        for row in rows:
            if row.keys() != names:
                missing, extra = sorted(names - row.keys()), sorted(row.keys() - names)
                raise KeyError(f"row for table {table!r} does not match its schema: missing {missing}, unexpected {extra}")
        self._buffers.setdefault(table, []).extend(rows)

    def discard_after(self, step: int) -> None:
        """Drop buffered rows recorded after optimizer step ``step`` (a diverged run keeps rows up to its first bad step)."""
        for rows in self._buffers.values():
            rows[:] = [r for r in rows if r["step"] <= step]

    def pending(self, table: str) -> int:
        return len(self._buffers.get(table, []))

    def flush(self) -> None:
        flushed = {t: list(rows) for t, rows in self._buffers.items() if rows} if self.listeners else {}
        for table, rows in self._buffers.items():
            if not rows:
                continue
            schema = TABLES[table]
            data = pa.Table.from_pylist(rows, schema=schema)  # raises on a missing/mistyped column
            folder = self.root / "tables" / table
            if not folder.is_dir():
                folder.mkdir(parents=True)
                fsync_dir(folder.parent)
            sink = pa.BufferOutputStream()
            pq.write_table(data, sink, compression="zstd")
            write_atomic(folder / f"part-{self.next_seq:06d}.parquet", sink.getvalue().to_pybytes())
            self.next_seq += 1
            rows.clear()
        if flushed:
            for listener in self.listeners:
                listener(flushed)

    def truncate_after(self, step: int, label: str) -> int:
        """Resume from optimizer step ``step``: every shard holding a row of a later step moves to ``superseded/<label>/``
        (kept, never deleted) and its rows up to ``step`` are written back as a new shard. Returns the shards moved."""
        moved = 0
        for table in list(TABLES):
            for _, p in shard_paths(self.root, table):
                df = read_table_shard(p, table)
                if "step" not in df.columns or not (df["step"] > step).any():
                    continue
                dest = self.root / "superseded" / label / table
                dest.mkdir(parents=True, exist_ok=True)
                shutil.move(str(p), dest / p.name)
                fsync_dir(p.parent)
                fsync_dir(dest)
                moved += 1
                kept = df[df["step"] <= step]
                if len(kept):
                    self._buffers.setdefault(table, []).extend(kept.to_dict("records"))
        listeners, self.listeners = self.listeners, []  # rows already seen, not new ones
        try:
            self.flush()
        finally:
            self.listeners = listeners
        return moved

    def supersede_from(self, seq: int, label: str) -> int:
        """Move shards numbered >= ``seq`` to ``superseded/<label>/`` (rows a resume recomputes). Returns count."""
        moved, touched = 0, set()
        for table in TABLES:
            for s, p in shard_paths(self.root, table):
                if s >= seq:
                    dest = self.root / "superseded" / label / table
                    dest.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(p), dest / p.name)
                    touched.update({p.parent, dest})
                    moved += 1
        for folder in touched:  # both ends of every rename, so a power cut cannot bring a shard back in both places
            fsync_dir(folder)
        self.next_seq = seq
        return moved

    def read(self, table: str) -> pd.DataFrame:
        return read_table(self.root, table)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.root / MANIFEST, manifest)


def _check_table(table: str) -> frozenset[str]:
    if table not in TABLES:
        raise KeyError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    return frozenset(TABLES[table].names)


class NullStore(RunStore):
    """The store of a rank other than 0 in a distributed launch: rows are dropped, nothing is written.
    Every rank still runs the probes (their collectives need all ranks); rank 0's store records them."""

    def append(self, table: str, rows: list[dict[str, Any]]) -> None:
        _check_table(table)

    def flush(self) -> None:
        return None

    def supersede_from(self, seq: int, label: str) -> int:
        self.next_seq = seq
        return 0

    def truncate_after(self, step: int, label: str) -> int:
        return 0

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        return None
