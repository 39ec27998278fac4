"""Seeded runs, the kill-and-resume guarantee, hook points and checkpoints, on a tiny BERT."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from lor2c_probe.errors import RunStopped, UserError
from lor2c_probe.record.store import read_manifest, read_table
from lor2c_probe.train.hooks import TrainerCallback
from lor2c_probe.config import TrainConfig
from lor2c_probe.train.build import probe_chunk
from lor2c_probe.train.session import resume_training, run_training
from tests.helpers import tiny_config


class Kill(TrainerCallback):
    """Simulates a crash after optimizer step ``at`` (rows before it may already be flushed)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, state) -> None:
        if state.step == self.at:
            raise KeyboardInterrupt


def _tables(run):
    return read_table(run, "metrics")


@pytest.mark.parametrize("method", ["lor2c", "lora"])
def test_seeded_run_twice_gives_identical_metrics(tiny_models, tiny_data, tmp_path, method):
    cfg = tiny_config(tiny_models["bert"], tiny_data, method=method)
    run_training(cfg, tmp_path / "a", progress=False)
    run_training(cfg, tmp_path / "b", progress=False)
    a, b = _tables(tmp_path / "a"), _tables(tmp_path / "b")
    assert len(a) == 2 * 12 * 3 + 2 * 3  # 12 steps/epoch x (loss, grad_norm, lr) + eval (loss, accuracy, f1)
    pd.testing.assert_frame_equal(a, b)


def test_training_learns_the_tiny_task(tiny_models, tiny_data, tmp_path):
    # LoRA on q,v: on a frozen *random* encoder LoR2C has almost no signal to route (the real-model
    # end-to-end test checks that LoR2C learns); this checks the loop itself learns.
    cfg = tiny_config(tiny_models["bert"], tiny_data, method="lora", epochs=10, lr=2e-2)
    manifest = run_training(cfg, tmp_path / "r", progress=False)
    m = _tables(tmp_path / "r")
    train_loss = m[(m.split == "train") & (m.name == "loss")]["value"].to_numpy()
    assert train_loss[-12:].mean() < train_loss[:12].mean() - 0.15  # measured: 0.70 -> 0.44
    assert manifest["status"] == "completed" and manifest["results"]["best_eval"]["accuracy"] >= 0.7  # measured 0.78


def test_killed_and_resumed_run_equals_uninterrupted(tiny_models, tiny_data, tmp_path):
    cfg = tiny_config(tiny_models["bert"], tiny_data, epochs=3)
    run_training(cfg, tmp_path / "full", progress=False)
    with pytest.raises(RunStopped, match=r"interrupted by SIGINT \(Ctrl-C\) at step 19; rows recorded so far are kept; continue with "
                       r"`lor2c-probe train --resume --out .*cut` \(from epoch-0000\)") as stop:
        run_training(cfg, tmp_path / "cut", progress=False, callbacks=[Kill(at=19)])  # mid epoch 1
    assert stop.value.exit_code == 130
    assert read_manifest(tmp_path / "cut")["status"] == "interrupted"
    assert read_manifest(tmp_path / "cut")["interrupted"]["step"] == 19
    partial = _tables(tmp_path / "cut")
    assert partial["step"].max() == 19  # everything up to the kill was flushed, nothing lost
    manifest = resume_training(tmp_path / "cut", progress=False)
    pd.testing.assert_frame_equal(_tables(tmp_path / "cut"), _tables(tmp_path / "full"))
    assert manifest["status"] == "completed" and manifest["resumes"][0]["from"] == "epoch-0000"
    assert manifest["resumes"][0]["superseded_shards"] > 0
    assert (tmp_path / "cut" / "superseded" / "resume-1" / "metrics").is_dir()
    full = read_manifest(tmp_path / "full")["results"]["final_eval"]
    assert manifest["results"]["final_eval"] == full
    # the time the run keeps: what epoch-0000 had counted plus this session's (the steps redone after the kill count once)
    counted = json.loads((tmp_path / "cut" / "checkpoints" / "epoch-0000" / "state.json").read_text())
    res = manifest["results"]
    assert 0 < counted["elapsed"]["wall"] and 0 < counted["elapsed"]["cpu"]
    for k in ("wall", "cpu"):  # rounding of the two parts to 1 ms each
        assert res[f"{k}_seconds"] == pytest.approx(counted["elapsed"][k] + res[f"{k}_seconds_this_session"], abs=2e-3)


def test_resume_without_checkpoint_is_a_user_error(tiny_models, tiny_data, tmp_path):
    cfg = tiny_config(tiny_models["bert"], tiny_data)
    with pytest.raises(RunStopped, match="no usable checkpoint .*start it again with .*--overwrite"):  # not "use --resume"
        run_training(cfg, tmp_path / "r", progress=False, callbacks=[Kill(at=2)])
    with pytest.raises(UserError, match="has no usable checkpoint"):
        resume_training(tmp_path / "r", progress=False)
    with pytest.raises(UserError, match="no manifest.json"):
        resume_training(tmp_path / "elsewhere", progress=False)


class Order(TrainerCallback):
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.pre_clip_norm: list[float] = []

    def after_backward(self, s):
        self.seen.append("after_backward")

    def before_clip(self, s):
        self.seen.append("before_clip")
        grads = [p.grad for p in s.model.parameters() if p.grad is not None]
        self.pre_clip_norm.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    def before_optimizer_step(self, s):
        self.seen.append("before_optimizer_step")
        assert float(s.grad_norm) == pytest.approx(self.pre_clip_norm[-1], rel=1e-5)

    def on_step_end(self, s):
        self.seen.append("on_step_end")
        assert all(p.grad is None for p in s.model.parameters())

    def on_epoch_end(self, s):
        self.seen.append("on_epoch_end")


def test_hook_points_fire_in_order_with_accumulation(tiny_models, tiny_data, tmp_path):
    cb = Order()
    cfg = tiny_config(tiny_models["bert"], tiny_data, epochs=1, grad_accum=2, max_grad_norm=1e-3)
    run_training(cfg, tmp_path / "r", progress=False, callbacks=[cb])
    step = ["after_backward", "after_backward", "before_clip", "before_optimizer_step", "on_step_end"]
    assert cb.seen == step * 6 + ["on_epoch_end"]  # 96 examples / 8 per batch / 2 micro-batches
    m = _tables(tmp_path / "r")
    recorded = m[(m.split == "train") & (m.name == "grad_norm")]["value"].to_numpy()
    assert recorded == pytest.approx(cb.pre_clip_norm, rel=1e-5)  # pre-clip, though clipping was active


def test_checkpoint_is_safetensors_and_json_only(tiny_models, tiny_data, tmp_path):
    run_training(tiny_config(tiny_models["bert"], tiny_data, epochs=1), tmp_path / "r", progress=False)
    ckpt = tmp_path / "r" / "checkpoints" / "epoch-0000"
    assert sorted(p.name for p in ckpt.iterdir()) == ["adapter.safetensors", "checksums.json", "state.json", "state.safetensors"]
    state = json.loads((ckpt / "state.json").read_text())
    assert state["epoch"] == 0 and state["step"] == 12


def test_manifest_records_config_counts_and_policy(tiny_models, tiny_data, tmp_path):
    cfg = tiny_config(tiny_models["roberta"], tiny_data, epochs=1)
    m = run_training(cfg, tmp_path / "r", progress=False, policy_sources={"dropout": "policy"})
    assert m["schema_version"] == 1 and m["config"]["adapter"]["method"] == "lor2c"
    assert m["params"]["adapter_params"] == m["params"]["adapter_params_formula"] == 2 * 4 * 32 * 3
    assert m["params"]["trainable_params"] == m["params"]["adapter_params"] + m["params"]["head_params"]
    assert m["policy"]["fields"]["dropout"] == {"value": 0.1, "source": "policy"}
    assert m["model"]["model_type"] == "roberta" and m["model"]["layers_path"] == "roberta.encoder.layer"
    assert m["schedule"] == {"steps_per_epoch": 12, "total_steps": 12, "warmup_steps": 1, "epochs": 1}
    assert {"torch", "transformers", "peft"} <= set(m["versions"])


def test_reference_policy_optimizer_groups(tiny_models, tiny_data, tmp_path):
    from lor2c_probe.train.loop import build_optimizer
    from lor2c_probe.config import TrainConfig
    from lor2c_probe.train.build import build_model
    from lor2c_probe.data.load import load_task

    cfg = tiny_config(tiny_models["bert"], tiny_data)
    _, _, spec, _ = load_task(cfg.data)
    model = build_model(cfg, spec).model
    opt = build_optimizer(model, TrainConfig(lr=1e-3, head_lr_scale=0.5, weight_decay=0.01))
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["adapters"]["lr"] == 1e-3 and groups["head"]["lr"] == 5e-4
    assert all(g["weight_decay"] == 0.01 for g in opt.param_groups)
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(
        p.numel() for p in model.parameters() if p.requires_grad
    )


@pytest.mark.parametrize("warmup, total", [(2, 6), (0, 5), (1, 1), (3, 10)])
def test_lr_schedule_is_transformers_linear_warmup(warmup, total):
    """The built-in schedule gives, step for step, the lr of transformers.get_linear_schedule_with_warmup (issue 19)."""
    from transformers import get_linear_schedule_with_warmup

    from lor2c_probe.train.loop import linear_schedule

    def lrs(make):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.AdamW([p], lr=1.0)
        sched = make(opt)
        out = []
        for _ in range(total + 1):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    ours = lrs(lambda o: linear_schedule(o, warmup, total))
    assert ours == lrs(lambda o: get_linear_schedule_with_warmup(o, warmup, total))
    if warmup == 2 and total == 6:  # by hand: 0, 1/2 during warmup, then (6 - s) / 4
        assert ours[:6] == pytest.approx([0.0, 0.5, 1.0, 0.75, 0.5, 0.25])


@pytest.mark.parametrize("train, chunk", [
    (dict(), 16),  # batch 32, eval 64: the chunk's own cap
    (dict(batch_size=4), 4),  # never more examples than a training micro-batch
    (dict(batch_size=32, grad_accum=8), 4),
    (dict(batch_size=30, grad_accum=8), 4),  # micro-batches of 3 and 4: the larger one
    (dict(eval_batch_size=8), 8),
])
def test_spectral_reading_chunk_never_exceeds_a_micro_batch(train, chunk):
    # A reading's no-grad forward on `chunk` examples then holds fewer activations than a step keeps for backward.
    assert probe_chunk(TrainConfig(**train)) == chunk


def test_progress_bar_shows_the_loss_once_known_and_never_nan(tiny_models, tiny_data, tmp_path, capsys):
    """A run shorter than --flush-every used to show `loss nan` throughout; now `–` until a flush, then the loss."""
    import re

    from rich.console import Console

    from lor2c_probe.train import loop

    seen = []
    real = loop._progress

    def progress(enabled):  # the real bar, rendered into a recording console
        bar = real(enabled, Console(record=True, force_terminal=False, width=120))
        seen.append(bar)
        return bar

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "_progress", progress)
        run_training(tiny_config(tiny_models["bert"], tiny_data, epochs=1, flush_every=50), tmp_path / "r", progress=True)
    text = seen[0].console.export_text()
    assert "nan" not in text
    assert re.search(r"loss \d\.\d{4}", text), text


def test_predictions_table_reproduces_the_eval_accuracy(tiny_models, tiny_data, tmp_path):
    # Per-example predictions (for McNemar) must be the ones the eval metrics were computed from.
    cfg = tiny_config(tiny_models["bert"], tiny_data, method="lora")
    run_training(cfg, tmp_path / "r", progress=False)
    pred, m = read_table(tmp_path / "r", "predictions"), _tables(tmp_path / "r")
    acc = m[(m.split == "eval") & (m.name == "accuracy")].set_index("epoch")["value"]
    assert sorted(pred.epoch.unique()) == sorted(acc.index) and set(pred.split) == {"eval"}
    for epoch, g in pred.groupby("epoch"):
        assert list(g.example) == list(range(len(g)))  # every eval example once, in eval order
        assert (g.label == g.prediction).mean() == pytest.approx(acc[epoch], abs=1e-12)
    assert set(pred.label.unique()) <= {0.0, 1.0}
