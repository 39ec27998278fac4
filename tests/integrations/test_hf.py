"""The HF Trainer callback records the same tables as the built-in loop (tests/integrations/parity.py), with the
built-in loop's metric names; the Trainer's own warmup schedule gives the same lr at every step; it resumes."""

from __future__ import annotations

import json

import pytest

from lor2c_probe.record.store import read_manifest, read_table
from tests.integrations.loops import hf_trainer
from tests.integrations.parity import assert_same_tables, builtin_run, config, setup


def trainer(s, cfg, out, tmp_path, **kw):
    return hf_trainer(s, cfg, out, tmp_path, **kw)


@pytest.fixture(scope="module", params=["lor2c", "lora"])
def runs(request, tiny_models, tiny_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"hf-{request.param}")
    cfg = config(tiny_models, tiny_data, request.param)
    loop = builtin_run(cfg, tmp / "loop")
    trainer(setup(cfg), cfg, tmp / "hf", tmp).train()
    return cfg, loop, tmp / "hf"


def test_trainer_records_the_builtin_loops_tables(runs):
    _, loop, hf = runs
    assert_same_tables(loop, hf)  # grads, activation_grads, updates, spectra, sfs, histograms; train loss, grad_norm, lr
    clip = read_table(hf, "grads").query("module == 'global' and stat == 'clip_coef'")["value"]
    assert (clip < 1).all()  # clipping was active, and the recorded statistics are still the pre-clip ones


def test_trainer_metric_names_are_the_builtin_loops(runs):
    _, loop, hf = runs
    m, ours = read_table(hf, "metrics"), read_table(loop, "metrics")
    assert set(m.query("split == 'train'")["name"]) == {"loss", "grad_norm", "lr"}
    assert set(m.query("split == 'eval'")["name"]) == {"loss"}  # no eval_ prefix, no runtime
    # The Trainer's eval loss after each epoch is the built-in loop's (same model, same examples).
    a = m.query("split == 'eval' and name == 'loss'").sort_values("step")
    b = ours.query("split == 'eval' and name == 'loss'").sort_values("step")
    assert list(a["step"]) == list(b["step"]) and list(a["epoch"]) == list(b["epoch"])
    assert a["value"].to_numpy() == pytest.approx(b["value"].to_numpy(), rel=2e-4)
    man = read_manifest(hf)
    assert man["status"] == "completed" and set(man["results"]["trainer"]) >= {"train_runtime", "train_loss"}
    assert "train_runtime" not in set(m["name"])


def test_trainer_resumes_into_the_same_run(tiny_models, tiny_data, tmp_path):
    """Two epochs with checkpoints, then resume_from_checkpoint for the third: the rows equal an uninterrupted run's."""
    cfg = config(tiny_models, tiny_data, "lora")
    full = tmp_path / "full"
    trainer(setup(cfg), cfg, full, tmp_path / "a").train()
    part = tmp_path / "part"
    trainer(setup(cfg), cfg, part, tmp_path / "b", save=True).train()  # all three epochs, checkpoints at each
    ckpt = sorted((tmp_path / "b" / "hf-out").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[1]
    with pytest.raises(Exception, match="already exists"):  # without resume, a used folder is refused
        trainer(setup(cfg), cfg, part, tmp_path / "c").train()
    trainer(setup(cfg), cfg, part, tmp_path / "b", save=True).train(resume_from_checkpoint=str(ckpt))
    assert_same_tables(full, part)
    man = read_manifest(part)
    assert man["status"] == "completed" and man["resumes"][0]["from_step"] == int(ckpt.name.split("-")[1])
    assert man["resumes"][0]["superseded_shards"] > 0 and any((part / "superseded").rglob("*.parquet"))
    json.dumps(man)


def test_reentrant_gradient_checkpointing_reads_each_step_once(tiny_models, tiny_data, tmp_path):
    """A reentrant checkpoint runs a nested backward per block: the end of the step's backward is still found once
    (hooked on the model's output, not on a parameter), so the gradients equal the built-in loop's."""
    cfg = config(tiny_models, tiny_data, "lora")
    loop = builtin_run(cfg, tmp_path / "loop")
    s = setup(cfg)
    t = trainer(s, cfg, tmp_path / "hf", tmp_path, probes="grads,histograms")
    t.args.gradient_checkpointing = True
    t.args.gradient_checkpointing_kwargs = {"use_reentrant": True}
    t.train()
    assert_same_tables(loop, tmp_path / "hf", ("grads", "updates"))
    m = read_table(tmp_path / "hf", "metrics")
    assert "skipped_step" not in set(m["name"]) and sorted(m.query("split == 'train' and name == 'loss'")["step"]) == [1, 2, 3]
