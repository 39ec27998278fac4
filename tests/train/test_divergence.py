"""A diverged run is never called healthy: detected without a per-step sync, rows kept up to the first bad
step, status ``diverged``, one line, exit 3; ``--on-nonfinite skip-step`` skips and counts bad updates."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from lor2c_probe.cli import app
from lor2c_probe.errors import RunDiverged
from lor2c_probe.record.store import read_manifest, read_table
from lor2c_probe.train.hooks import TrainerCallback
from lor2c_probe.train.session import run_training
from tests.helpers import tiny_config
from tests.test_cli import tiny_args

runner = CliRunner()


class PoisonGrad(TrainerCallback):
    """Makes one adapter gradient NaN before the clip of optimizer step ``at`` (1-based, as recorded)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def before_clip(self, state) -> None:  # noqa: ANN001
        if state.step + 1 == self.at:
            p = next(p for n, p in state.model.named_parameters() if p.grad is not None and "lor2c" in n)
            p.grad.view(-1)[0] = float("nan")


def test_huge_lr_without_clipping_ends_diverged(tiny_models, tiny_data, tmp_path):
    """The observed case: --lr 1e30 --max-grad-norm 0 used to end `completed` with NaN checkpoints and 'final 0.5000'.
    The warmup's first step has lr 0 (transformers' linear schedule), so step 2 is the first update at lr ~1e30 and
    step 3 the first loss of the broken weights."""
    out = tmp_path / "r"
    res = runner.invoke(app, tiny_args(tiny_models["bert"], tiny_data, out, "--lr", "1e30", "--max-grad-norm", "0", "--epochs", "2",
                                       report=True))
    assert res.exit_code == 3, res.output
    lines = [x for x in res.output.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1 and "error: training diverged at step 3 (epoch 0): the loss is not finite" in lines[0]
    assert "final 0.5" not in res.output and "eval accuracy" not in res.output
    m = read_manifest(out)
    assert m["status"] == "diverged" and m["diverged"]["step"] == 3 and m["diverged"]["what"] == "loss" and "results" not in m
    metrics = read_table(out, "metrics")
    assert metrics.step.max() == 3 and "eval" not in set(metrics.split)  # no eval of the broken model
    assert math.isnan(metrics[(metrics.step == 3) & (metrics.name == "loss")].value.iloc[0])
    assert not (out / "checkpoints").exists()  # no checkpoint of a diverged model is ever written
    html = (out / "report" / "report.html").read_text()
    assert 'class="banner"' in html and "DIVERGED at step 3" in html


def test_rows_are_kept_up_to_the_first_bad_step(tiny_models, tiny_data, tmp_path):
    cfg = tiny_config(tiny_models["bert"], tiny_data, epochs=2, flush_every=5)
    with pytest.raises(RunDiverged, match="diverged at step 7 \\(epoch 0\\): the gradient norm is not finite"):
        run_training(cfg, tmp_path / "r", progress=False, callbacks=[PoisonGrad(at=7)])
    for table in ("metrics", "grads", "activation_grads"):
        assert read_table(tmp_path / "r", table).step.max() == 7, table  # detected at the flush after step 10; 8..10 dropped
    assert read_manifest(tmp_path / "r")["diverged"]["step"] == 7


def test_skip_step_skips_and_counts_the_bad_update(tiny_models, tiny_data, tmp_path):
    cfg = tiny_config(tiny_models["bert"], tiny_data, epochs=1, on_nonfinite="skip-step")
    m = run_training(cfg, tmp_path / "r", progress=False, callbacks=[PoisonGrad(at=4)])
    assert m["status"] == "completed" and m["results"]["skipped_steps"] == 1
    metrics = read_table(tmp_path / "r", "metrics")
    skipped = metrics[metrics.name == "skipped_step"]
    assert len(skipped) == 12 and skipped.set_index("step").value.to_dict()[4] == 1.0 and skipped.value.sum() == 1.0
    ckpt = load_file(str(tmp_path / "r" / "checkpoints" / "epoch-0000" / "adapter.safetensors"))
    assert all(torch.isfinite(t).all() for t in ckpt.values())


def test_a_non_finite_weight_is_caught_before_the_checkpoint(tiny_models, tiny_data, tmp_path):
    class Overflow(TrainerCallback):  # after the last step of epoch 0: the flags saw finite values, the weights are not
        def on_epoch_end(self, state) -> None:  # noqa: ANN001
            with torch.no_grad():
                next(p for n, p in state.model.named_parameters() if p.requires_grad and "lor2c" in n).fill_(float("inf"))

    with pytest.raises(RunDiverged, match="diverged at step 12 .*value of a trainable parameter or optimizer moment"):
        run_training(tiny_config(tiny_models["bert"], tiny_data, epochs=2), tmp_path / "r", progress=False, callbacks=[Overflow()])
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_watching_for_divergence_adds_no_host_sync_to_a_step(tiny_models, tiny_data, tmp_path, monkeypatch):
    """Every way a tensor reaches the host, called from lor2c-probe's code during the steps between two flushes: none
    (stop mode). The model's own forward (transformers checks its masks) is not ours and not counted."""
    from lor2c_probe.train import loop

    syncs = []
    steps = []
    real_step = loop.Trainer.train_step

    def step(self, *a, **k):  # noqa: ANN001, ANN002, ANN003
        steps.append(1)
        with pytest.MonkeyPatch.context() as mp:
            for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
                mp.setattr(torch.Tensor, name, _counting(getattr(torch.Tensor, name), syncs, name))
            return real_step(self, *a, **k)

    monkeypatch.setattr(loop.Trainer, "train_step", step)
    cfg = tiny_config(tiny_models["bert"], tiny_data, epochs=1, flush_every=50)
    run_training(cfg, tmp_path / "r", progress=False)
    assert len(steps) == 12 and syncs == []
    # the counter does see a sync: skip-step reads its flag on the host every step (as AMP's GradScaler does)
    run_training(tiny_config(tiny_models["bert"], tiny_data, epochs=1, flush_every=50, on_nonfinite="skip-step"), tmp_path / "s",
                 progress=False)
    assert len(syncs) == 12 and all(s.startswith("__bool__ from") and s.split(" from ")[1].split(":")[0].endswith("loop.py") for s in syncs)


def _counting(fn, seen, name):  # noqa: ANN001, ANN202
    import sys

    def wrapped(self, *a, **k):  # noqa: ANN001, ANN002, ANN003
        caller = sys._getframe(1).f_code.co_filename
        if "lor2c_probe" in caller:
            seen.append(f"{name} from {caller}:{sys._getframe(1).f_lineno}")
        return fn(self, *a, **k)

    return wrapped
