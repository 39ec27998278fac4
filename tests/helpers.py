"""Shared helpers for building configs and models in tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lor2c_probe.config import AdapterConfig, DataConfig, RunConfig, TrainConfig
from lor2c_probe.record.store import TABLES, read_table, shard_paths


def tiny_config(model_dir: Path, data: dict[str, Path], *, method: str = "lor2c", epochs: int = 2, **train_kw) -> RunConfig:
    train = dict(epochs=epochs, batch_size=8, eval_batch_size=16, lr=5e-3, seed=3, device="cpu", flush_every=3, max_length=32)
    train.update(train_kw)
    return RunConfig(
        model=str(model_dir),
        adapter=AdapterConfig(method=method, rank=4, alpha=8.0, dropout=0.1),
        train=TrainConfig(**train),
        data=DataConfig(task="custom", train_file=str(data["train"]), eval_file=str(data["eval"])),
    )


def rewrite_predictions(run: Path, learned: bool) -> None:
    """A recorded run's predictions: every label right (learned), or the majority label for every example (a run
    that did not learn), so a test knows the outcome whatever the tiny model did."""
    p = read_table(run, "predictions")
    labels = p["label"].to_numpy()
    p["prediction"] = labels if learned else float(np.bincount(labels.astype(int)).argmax())
    for _, shard in shard_paths(run, "predictions"):
        shard.unlink()
    pq.write_table(pa.Table.from_pandas(p, schema=TABLES["predictions"], preserve_index=False),
                   run / "tables" / "predictions" / "part-000000.parquet")
