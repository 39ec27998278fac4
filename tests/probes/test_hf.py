"""The HF Trainer callback records the same tables as the built-in loop for the same seed, data and optimizer.

Setup that makes the two trajectories identical: dropout off, and one batch per epoch holding every
training example (so the two loops' different shuffles see the same batch), the same AdamW and schedule.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from lor2c_probe.record.store import read_table
from lor2c_probe.train.hooks import TrainerCallback
from lor2c_probe.train.session import run_training
from tests.helpers import tiny_config


class NoDropout(TrainerCallback):
    def on_train_start(self, s):
        for m in s.model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0


@pytest.mark.parametrize("method", ["lor2c", "lora"])
def test_trainer_callback_tables_equal_builtin_loop(tiny_models, tiny_data, tmp_path, method):
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from lor2c_probe.data.load import load_task
    from lor2c_probe.probes.hf import ProbeCallback
    from lor2c_probe.train.batches import encode
    from lor2c_probe.train.loop import Plan, build_optimizer, linear_schedule
    from lor2c_probe.train.build import build_model

    cfg = tiny_config(tiny_models["bert"], tiny_data, method=method, epochs=3, max_grad_norm=0.05)
    cfg = dataclasses.replace(cfg, adapter=dataclasses.replace(cfg.adapter, dropout=0.0),
                              data=dataclasses.replace(cfg.data, max_train_examples=16),
                              train=dataclasses.replace(cfg.train, batch_size=16))
    run_training(cfg, tmp_path / "loop", progress=False, callbacks=[NoDropout()])

    train_ex, _, spec, _ = load_task(cfg.data)
    built = build_model(cfg, spec)
    for m in built.model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    enc = encode(built.tokenizer, train_ex, cfg.train.max_length, False)
    dataset = [{**{k: v[i] for k, v in enc.features.items()}, "labels": int(enc.labels[i])} for i in range(len(enc))]
    opt = build_optimizer(built.model, cfg.train)
    plan = Plan.make(len(enc), cfg.train)
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf-out"), per_device_train_batch_size=16, num_train_epochs=3,
        max_grad_norm=cfg.train.max_grad_norm, logging_steps=1, save_strategy="no", report_to="none",
        use_cpu=True, seed=cfg.train.seed, disable_tqdm=True,
    )
    cb = ProbeCallback(tmp_path / "hf", method=method, markers=("lor2c." if method == "lor2c" else "lora_",), scaling=cfg.adapter.scaling)
    Trainer(
        model=built.model, args=args, train_dataset=dataset, data_collator=DataCollatorWithPadding(built.tokenizer),
        optimizers=(opt, linear_schedule(opt, plan.warmup_steps, plan.total_steps)), callbacks=[cb],
    ).train()

    for table, keys in (("grads", ["step", "epoch", "module", "layer", "factor", "stat"]), ("activation_grads", ["step", "epoch", "layer", "stat"])):
        ours = read_table(tmp_path / "loop", table).sort_values(keys, ignore_index=True)
        theirs = read_table(tmp_path / "hf", table).sort_values(keys, ignore_index=True)
        assert len(ours) > 0
        pd.testing.assert_frame_equal(ours[keys], theirs[keys])
        # Same values up to float summation order (the two loops order the batch differently).
        np.testing.assert_allclose(theirs["value"], ours["value"], rtol=2e-4, atol=1e-9)
    clip = read_table(tmp_path / "hf", "grads").query("module == 'global' and stat == 'clip_coef'")["value"]
    assert (clip < 1).all()  # clipping was active, and the recorded statistics are still the pre-clip ones
    assert set(read_table(tmp_path / "hf", "metrics")["name"]) >= {"loss", "learning_rate"}
