"""The integrations' parity harness: the built-in loop and another loop on the same tiny model, seed and batches.

What makes the two trajectories identical: dropout off; one batch per epoch holding every training example (so the
loops' different shuffles see the same batch); the same AdamW groups (``build_optimizer``), linear warmup schedule
and clipping; the spectral probe batch of the built-in run given to the other loop.
Tolerances: float summation order differs between the loops (rtol 2e-4 on gradient statistics; 1e-4 on spectra and SFS,
with an absolute 1e-6 of the table's largest value for the near-zero tail);
histogram counts may move across a bin edge by float noise (at most 1% of a module's entries)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lor2c_probe.config import ProbeConfig
from lor2c_probe.record.store import read_table
from lor2c_probe.train.hooks import TrainerCallback
from tests.helpers import tiny_config

TABLE_KEYS = {
    "grads": ["step", "epoch", "module", "layer", "factor", "stat"],
    "activation_grads": ["step", "epoch", "layer", "stat"],
    "updates": ["step", "epoch", "module", "layer", "stat"],
    "sfs": ["step", "module", "source", "k"],
    "spectra": ["step", "module", "source", "index"],
}
N, EPOCHS, MAX_NORM = 16, 3, 0.05


class NoDropout(TrainerCallback):
    def on_train_start(self, s):
        no_dropout(s.model)


def no_dropout(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0


def config(tiny_models, tiny_data, method: str):
    cfg = tiny_config(tiny_models["bert"], tiny_data, method=method, epochs=EPOCHS, max_grad_norm=MAX_NORM, warmup_ratio=0.2)
    return dataclasses.replace(
        cfg, adapter=dataclasses.replace(cfg.adapter, dropout=0.0), data=dataclasses.replace(cfg.data, max_train_examples=N),
        train=dataclasses.replace(cfg.train, batch_size=N, flush_every=2),
        probes=ProbeConfig(grads=True, activations=True, spectra=True, spectra_examples=8, bottom_every=2, extra=("histograms",)),
    )


def builtin_run(cfg, out: Path) -> Path:
    from lor2c_probe.train.session import run_training

    run_training(cfg, out, progress=False, callbacks=[NoDropout()])
    return out


@dataclass
class Setup:
    model: torch.nn.Module
    tokenizer: Any
    dataset: list[dict[str, Any]]  # one dict of python lists per example (HF-style)
    eval_dataset: list[dict[str, Any]]  # the built-in run's eval split
    batch: dict[str, torch.Tensor]  # every training example, padded: the one batch of each epoch
    probe_batch: dict[str, torch.Tensor]  # the built-in run's spectral probe batch
    encoded: Any  # the training set as the built-in loop encodes it (train.batches.Encoded)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    plan: Any


def setup(cfg) -> Setup:
    from lor2c_probe.data.load import load_task
    from lor2c_probe.probes.spectral import probe_batch
    from lor2c_probe.train.batches import collate, encode
    from lor2c_probe.train.build import build_model
    from lor2c_probe.train.loop import Plan, build_optimizer, linear_schedule

    train_ex, eval_ex, spec, _ = load_task(cfg.data)
    built = build_model(cfg, spec)
    no_dropout(built.model)
    enc = encode(built.tokenizer, train_ex, cfg.train.max_length, False)
    dataset = [{**{k: v[i] for k, v in enc.features.items()}, "labels": int(enc.labels[i])} for i in range(len(enc))]
    ev = encode(built.tokenizer, eval_ex, cfg.train.max_length, False)
    eval_dataset = [{**{k: v[i] for k, v in ev.features.items()}, "labels": int(ev.labels[i])} for i in range(len(ev))]
    pdata, _ = probe_batch(cfg, enc)
    pb = collate(pdata, np.arange(len(pdata)))
    pb.pop("labels")
    opt = build_optimizer(built.model, cfg.train)
    plan = Plan.make(len(enc), cfg.train)
    return Setup(built.model, built.tokenizer, dataset, eval_dataset, collate(enc, np.arange(len(enc))), pb, enc, opt,
                 linear_schedule(opt, plan.warmup_steps, plan.total_steps), plan)


def assert_same_tables(loop: Path, other: Path, tables=tuple(TABLE_KEYS), *, metrics=("loss", "grad_norm", "lr")) -> None:
    for table in tables:
        keys = TABLE_KEYS[table]
        ours = read_table(loop, table).sort_values(keys, ignore_index=True)
        theirs = read_table(other, table).sort_values(keys, ignore_index=True)
        assert len(ours) > 0, table
        pd.testing.assert_frame_equal(ours[keys], theirs[keys], obj=table)
        col = "sigma" if table == "spectra" else "value"
        # Spectra: relative 1e-4, and 1e-6 of the module's largest value for the tail (float32 SVD noise near zero).
        atol = 1e-6 * float(ours[col].abs().max()) if table in ("spectra", "sfs") else 1e-9
        np.testing.assert_allclose(theirs[col], ours[col], rtol=1e-4 if table in ("spectra", "sfs") else 2e-4, atol=atol, err_msg=table)
    h_ours, h_theirs = read_table(loop, "histograms"), read_table(other, "histograms")
    assert len(h_ours) > 0
    key = ["step", "module", "source"]
    a = h_ours.pivot_table(index=key, columns="bin", values="count", aggfunc="sum", fill_value=0)
    b = h_theirs.pivot_table(index=key, columns="bin", values="count", aggfunc="sum", fill_value=0)
    a, b = a.align(b, fill_value=0)
    assert list(a.index) == list(b.index)
    np.testing.assert_array_equal(a.sum(axis=1), b.sum(axis=1))  # every entry counted once
    assert ((a - b).abs().sum(axis=1) <= 0.02 * a.sum(axis=1) + 2).all()  # moved across an edge: both sides count it
    m_ours, m_theirs = read_table(loop, "metrics"), read_table(other, "metrics")
    for name in metrics:
        x = m_ours.query("split == 'train' and name == @name").sort_values("step")
        y = m_theirs.query("split == 'train' and name == @name").sort_values("step")
        assert list(x["step"]) == list(y["step"]), name
        np.testing.assert_allclose(y["value"], x["value"], rtol=2e-4, atol=1e-9, err_msg=name)
