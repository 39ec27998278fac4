"""Shared helpers for building configs and models in tests."""

from __future__ import annotations

from pathlib import Path

from lor2c_probe.config import AdapterConfig, DataConfig, RunConfig, TrainConfig


def tiny_config(model_dir: Path, data: dict[str, Path], *, method: str = "lor2c", epochs: int = 2, **train_kw) -> RunConfig:
    train = dict(epochs=epochs, batch_size=8, eval_batch_size=16, lr=5e-3, seed=3, device="cpu", flush_every=3, max_length=32)
    train.update(train_kw)
    return RunConfig(
        model=str(model_dir),
        adapter=AdapterConfig(method=method, rank=4, alpha=8.0, dropout=0.1),
        train=TrainConfig(**train),
        data=DataConfig(task="custom", train_file=str(data["train"]), eval_file=str(data["eval"])),
    )
