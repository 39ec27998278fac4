"""The public Recorder in a plain PyTorch loop: gradient statistics against ``p.grad`` by hand (accumulated,
pre-clip), AMP's loss scale divided out, a step the scaler skips, resume from a checkpoint step, faults, and the
folder rules. Tolerances: float32 sums in a different order, relative 1e-5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lor2c_probe.errors import UserError
from lor2c_probe.record.store import read_manifest, read_table
from tests.families import tiny_inputs, tiny_model


def lora_model(seed: int = 0):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    return get_peft_model(tiny_model("bert"), LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["classifier"]))


def batch_for(model, seed=0):
    torch.manual_seed(100 + seed)
    return {**tiny_inputs(model, batch=4, seq=9), "labels": torch.tensor([0, 1, 0, 1])}


class GradsByHand:
    """A callback that keeps each recorded step's per-module mean |g| computed naively from ``p.grad``."""

    def __init__(self, model):
        self.model, self.seen = model, {}

    def __getattr__(self, name):  # every other loop point: nothing
        if name.startswith(("on_", "after_", "before_")):
            return lambda state: None
        raise AttributeError(name)

    def before_clip(self, state):
        per = {}
        for n, p in self.model.named_parameters():
            if p.requires_grad and "lora_" in n and p.grad is not None:
                layer = int(n.split(".layer.")[1].split(".")[0])
                a = per.setdefault(f"lora.{layer}", [0.0, 0])  # a block's LoRA layers (query, value) are one module
                a[0] += float(p.grad.abs().sum())
                a[1] += p.grad.numel()
        self.seen[state.step + 1] = {m: s / n for m, (s, n) in per.items()}

    def manifest_entry(self):
        return None


def train(out, *, steps=4, accum=2, scaler=None, clip=0.01, resume_step=None, model=None, extra_cb=(), **kw):
    from lor2c_probe.recorder import Recorder

    model = model or lora_model()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    by_hand = GradsByHand(model)
    rec = Recorder(out, model, opt, grad_accum=accum, scaler=scaler, resume_step=resume_step, callbacks=[by_hand, *extra_cb],
                   max_grad_norm=clip, flush_every=2, **kw)
    start = resume_step or 0
    for step in range(start, start + steps):
        for micro in range(accum):
            loss = model(**batch_for(model, step * accum + micro)).loss
            (scaler.scale(loss / accum) if scaler else loss / accum).backward()
            rec.after_backward(loss)
        if scaler:
            scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        (scaler.step(opt), scaler.update()) if scaler else opt.step()
        opt.zero_grad()
    rec.close()
    return by_hand, model


def module_means(out):
    g = read_table(out, "grads").query("factor == 'all' and stat == 'mean_abs' and module != 'global'")
    return {int(s): dict(zip(d["module"], d["value"])) for s, d in g.groupby("step")}


def test_gradients_equal_p_grad_by_hand_accumulated_and_pre_clip(tmp_path):
    by_hand, _ = train(tmp_path / "run")
    got = module_means(tmp_path / "run")
    assert sorted(got) == [1, 2, 3, 4] and set(got[1]) == set(by_hand.seen[1]) == {"lora.0", "lora.1", "lora.2"}
    for step, mods in got.items():
        for m, v in mods.items():
            assert v == pytest.approx(by_hand.seen[step][m], rel=1e-5), (step, m)
    clip = read_table(tmp_path / "run", "grads").query("module == 'global' and stat == 'clip_coef'")["value"]
    assert (clip < 1).all()  # the loop clipped, and the statistics are the pre-clip ones
    m = read_table(tmp_path / "run", "metrics").query("split == 'train'")
    assert set(m["name"]) == {"loss", "grad_norm", "lr"} and sorted(m["step"].unique()) == [1, 2, 3, 4]
    man = read_manifest(tmp_path / "run")
    assert man["status"] == "completed" and man["results"]["steps"] == 4 and man["model"]["num_layers"] == 3


def test_a_gradscaler_scale_is_divided_out(tmp_path):
    """The same run with a loss scale of 2^10 (gradients unscaled by the loop before clipping, as AMP asks) and
    with the scale divided out by the Recorder (it reads before unscale_) records the unscaled run's values."""
    plain, _ = train(tmp_path / "plain")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    train(tmp_path / "scaled", scaler=scaler)
    a, b = module_means(tmp_path / "plain"), module_means(tmp_path / "scaled")
    for step in a:
        for m in a[step]:
            assert b[step][m] == pytest.approx(a[step][m], rel=1e-4), (step, m)
    act_a = read_table(tmp_path / "plain", "activation_grads").sort_values(["step", "layer", "stat"])["value"].to_numpy()
    act_b = read_table(tmp_path / "scaled", "activation_grads").sort_values(["step", "layer", "stat"])["value"].to_numpy()
    np.testing.assert_allclose(act_b, act_a, rtol=1e-4)


def test_a_step_the_scaler_skips_is_recorded_as_skipped(tmp_path):
    class Inf:
        """Poison one gradient at step 2's backward end: the scaler then skips that optimizer step."""

        def __init__(self, model):
            self.p = next(p for n, p in model.named_parameters() if "lora_A" in n)

        def __getattr__(self, name):
            if name.startswith(("on_", "after_", "before_")):
                return lambda state: None
            raise AttributeError(name)

        def before_clip(self, state):
            if state.step + 1 == 2:
                self.p.grad[0, 0] = float("inf")

        def manifest_entry(self):
            return None

    model = lora_model()
    train(tmp_path / "run", scaler=torch.amp.GradScaler("cpu", init_scale=4.0), model=model, extra_cb=(Inf(model),), clip=1e9)
    m = read_table(tmp_path / "run", "metrics").query("split == 'train' and name == 'skipped_step'")
    assert list(m["step"]) == [2]
    assert read_manifest(tmp_path / "run")["results"]["skipped_steps"] == 1


def test_resume_supersedes_later_rows_and_continues(tmp_path):
    out = tmp_path / "run"
    train(out, steps=4)
    before = read_table(out, "grads")
    train(out, steps=3, resume_step=2)  # the loop restarted from its checkpoint at step 2
    after = read_table(out, "grads")
    assert sorted(after["step"].unique()) == [1, 2, 3, 4, 5]
    kept = after[after["step"] <= 2].sort_values(["step", "module", "factor", "stat"], ignore_index=True)
    old = before[before["step"] <= 2].sort_values(["step", "module", "factor", "stat"], ignore_index=True)
    assert kept.equals(old)  # rows up to the resume step are the original ones
    assert any((out / "superseded").rglob("*.parquet"))  # the replaced rows are kept aside, not deleted
    man = read_manifest(out)
    assert man["resumes"][0]["from_step"] == 2 and man["results"]["steps"] == 5


def test_folder_rules_and_a_failed_loop(tmp_path):
    from lor2c_probe.recorder import Recorder

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    model = lora_model()
    with pytest.raises(UserError, match="already exists"):
        Recorder(tmp_path / "mine", model)
    with pytest.raises(UserError, match="no manifest.json written by lor2c-probe"):
        Recorder(tmp_path / "mine", model, resume_step=3)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    with pytest.raises(RuntimeError, match="data loader broke"):
        with Recorder(tmp_path / "run", model, opt, flush_every=1) as rec:
            model(**batch_for(model)).loss.backward()
            rec.after_backward()
            opt.step()
            raise RuntimeError("data loader broke")
    man = read_manifest(tmp_path / "run")
    assert man["status"] == "failed" and man["stopped"]["reason"] == "RuntimeError: data loader broke"
    assert len(read_table(tmp_path / "run", "grads")) > 0  # what was recorded stays readable


def test_bad_options_are_one_line_errors(tmp_path):
    from lor2c_probe.config import ConfigError
    from lor2c_probe.recorder import RecorderConfig

    with pytest.raises(ConfigError, match="every must be a positive integer; got 0"):
        RecorderConfig(every=0)
    with pytest.raises(ConfigError, match="unknown probe 'gradz'"):
        RecorderConfig(probes="gradz")
    with pytest.raises(ConfigError, match="unknown sink 'neptune'"):
        RecorderConfig(log_to="neptune")


def test_windows_counted_per_epoch_and_a_short_last_window(tmp_path):
    """The loop counts its accumulation windows per epoch (``i`` restarts) with 5 backwards per epoch at accum 2, and
    steps the short last window too: every optimizer step is recorded once, none as skipped, gradients as stepped."""
    from lor2c_probe.recorder import Recorder

    model = lora_model()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    by_hand = GradsByHand(model)
    rec = Recorder(tmp_path / "run", model, opt, grad_accum=2, callbacks=[by_hand], flush_every=2)
    steps = 0
    for epoch in range(2):
        for i in range(5):
            loss = model(**batch_for(model, epoch * 5 + i)).loss
            (loss / 2).backward()
            rec.after_backward(loss)
            if (i + 1) % 2 == 0 or i == 4:
                opt.step()
                opt.zero_grad()
                steps += 1
        rec.epoch_end()
    rec.close()
    m = read_table(tmp_path / "run", "metrics")
    assert "skipped_step" not in set(m["name"])
    assert sorted(m.query("name == 'loss'")["step"]) == list(range(1, steps + 1)) == list(range(1, 7))
    got = module_means(tmp_path / "run")
    for step, mods in got.items():
        for mod, v in mods.items():
            assert v == pytest.approx(by_hand.seen[step][mod], rel=1e-5), (step, mod)
    assert list(m.query("name == 'loss'").groupby("epoch").size()) == [3, 3]
