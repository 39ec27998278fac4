"""Merges and injections on a tiny model: optimizer surgery, training after the change, formulas, the event log."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from lor2c_probe.adapters import get_method
from lor2c_probe.config import AdapterConfig, StructureConfig, TrainConfig
from lor2c_probe.errors import ConfigError, RunStopped
from lor2c_probe.models import load_model
from lor2c_probe.record.store import read_manifest, read_table
from lor2c_probe.structure import ops
from lor2c_probe.structure.ops import find_bank
from lor2c_probe.train.loop import build_optimizer
from lor2c_probe.train.session import run_training
from tests.helpers import tiny_config


def _model(tiny_models, method="im-lor2c", rank=4):
    torch.manual_seed(0)
    model, tok, bb = load_model(str(tiny_models["bert"]), num_labels=2, problem_type="single_label_classification")
    model = get_method(method).attach(model, bb, AdapterConfig(method=method, rank=rank, alpha=8.0, dropout=0.0))
    return model, tok, bb


def _step(model, tok, opt):
    batch = dict(tok(["the movie was great fun", "dull and slow"], padding=True, return_tensors="pt"), labels=torch.tensor([1, 0]))
    model.train()
    model(**batch).loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def test_merge_keeps_survivor_parameters_and_adam_state(tiny_models):
    model, tok, _ = _model(tiny_models)
    opt = build_optimizer(model, TrainConfig(lr=1e-2))
    for _ in range(2):
        _step(model, tok, opt)
    bank = find_bank(model)
    keep, gone = bank.paths["1"], bank.paths["2"]
    keep_A, gone_B = keep.A, gone.B
    moments = opt.state[keep_A]["exp_avg"].clone()
    key = ops.merge(bank, "1", "2", "1", opt)
    assert key == "1-2" and bank.paths["1-2"].A is keep_A  # the same Parameter objects
    assert torch.equal(opt.state[keep_A]["exp_avg"], moments)  # and their AdamW moments
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(gone_B) not in in_opt and gone_B not in opt.state  # the other module left optimizer and state
    before = keep_A.detach().clone()
    _step(model, tok, opt)
    assert keep_A.grad is None and not torch.equal(keep_A, before)  # trained at the next step (the reference bug does not recur)


def test_forward_after_merge_equals_the_merged_formula(tiny_models):
    model, tok, bb = _model(tiny_models, method="merge-lor2c")
    bank = find_bank(model)
    with torch.no_grad():
        for p in bank.parameters():
            p.normal_(0, 0.3)
    opt = build_optimizer(model, TrainConfig())
    ops.merge(bank, "0", "1", "1", opt)
    model.eval()
    enc = tok(["the movie was great fun"], return_tensors="pt")
    with torch.no_grad():
        got = model(**enc).logits
        bank.detach()
        base, layers, s = model.bert, model.bert.encoder.layer, bank.scaling
        h0 = base.embeddings(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"])
        span, p2 = bank.paths["0-1"], bank.paths["2"]
        h2 = layers[1](layers[0](h0)) + s * h0 @ span.A.T @ span.B.T  # reads h_0, adds after block 1
        h3 = layers[2](h2) + s * h2 @ p2.A.T @ p2.B.T
        want = model.classifier(base.pooler(h3))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_injected_lora_trains_at_every_later_step(tiny_models):
    model, tok, _ = _model(tiny_models)
    opt = build_optimizer(model, TrainConfig(lr=1e-2))
    lora = ops.inject(find_bank(model), "1", model, opt)
    assert "1" not in find_bank(model).paths and len(lora) == 4 and all(p.requires_grad for p in lora)
    for _ in range(3):
        before = [p.detach().clone() for p in lora]
        _step(model, tok, opt)
        changed = [not torch.equal(b, p) for b, p in zip(before, lora)]
        assert all(changed[1::2]) and (all(changed) or _ == 0)  # B moves from step 1; A once B is non-zero


def test_emulated_reference_bugs_freeze_the_merged_module_and_the_injected_lora(tiny_models):
    model, tok, _ = _model(tiny_models)
    opt = build_optimizer(model, TrainConfig(lr=1e-2))
    bank = find_bank(model)
    ops.merge(bank, "0", "1", "0", opt, freeze=True)
    lora = ops.inject(bank, "2", model, opt, freeze=True)
    frozen = [p.detach().clone() for p in list(bank.paths["0-1"].parameters()) + lora]
    _step(model, tok, opt)
    assert all(torch.equal(a, b) for a, b in zip(frozen, list(bank.paths["0-1"].parameters()) + lora))


def _struct_cfg(tiny_models, tiny_data, **kw):
    cfg = tiny_config(tiny_models["bert"], tiny_data, method="im-lor2c", epochs=2)
    return replace(cfg, structure=StructureConfig(schedule="step", **kw))


def test_run_logs_events_with_every_candidate_and_counts_follow_the_formula(tiny_models, tiny_data, tmp_path):
    cfg = _struct_cfg(tiny_models, tiny_data, merges=1, injections=1)
    run_training(cfg, tmp_path / "r", progress=False)
    ev = read_table(tmp_path / "r", "events")
    assert ev.kind.tolist() == ["merge", "inject"] and ev.step.tolist() == [6, 7]  # T = 24: step 6; injection one step later
    merge, inject = (json.loads(d) for d in ev.detail_json)
    assert len(merge["candidates"]) == 2 and all({"score_paper", "score_reference"} <= set(c) for c in merge["candidates"])
    d, r, L = 32, 4, 3
    assert merge["params_before"] == 2 * r * d * L and merge["params_after"] == 2 * r * d * (L - 1)  # a merge removes 2rd
    assert inject["params_after"] == inject["params_before"]  # injection is parameter-neutral
    assert merge["loss_window_steps"] == [6, 10] and merge["loss_before_mean"] > 0
    g = read_table(tmp_path / "r", "grads")
    merged = merge["result"]
    assert (g[g.module == merged].step.min() == 7) and g[(g.module == inject["result"]) & (g.stat == "l2") & (g.factor == "B")].value.gt(0).all()
    entry = next(e for e in read_manifest(tmp_path / "r")["recording"]["callbacks"] if e["name"] == "structure")
    assert entry["policy_fields"]["source"] == "features" and entry["policy"] == "paper"


def test_policy_fields_can_be_overridden_one_by_one(tiny_models, tiny_data, tmp_path):
    cfg = _struct_cfg(tiny_models, tiny_data, merges=1, source="weights")
    assert cfg.structure_policy().source == "weights" and cfg.structure_policy().score == "sfs"
    m = run_training(cfg, tmp_path / "r", progress=False)
    entry = next(e for e in m["recording"]["callbacks"] if e["name"] == "structure")
    assert entry["policy_fields"]["source"] == "weights"


def test_bad_structure_input(tiny_models, tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="--merges needs a method that can merge"):
        replace(tiny_config(tiny_models["bert"], tiny_data), structure=StructureConfig(merges=1))
    with pytest.raises(ConfigError, match="merges must be a non-negative integer; got -1"):
        StructureConfig(merges=-1)
    with pytest.raises(ConfigError, match="at most 2 merges"):
        run_training(_struct_cfg(tiny_models, tiny_data, merges=3), tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="after the first half of training"):
        run_training(replace(_struct_cfg(tiny_models, tiny_data, merges=2), structure=StructureConfig(merges=2)), tmp_path / "b", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(ConfigError, match="rank must be even"):
        _model(tiny_models, rank=3)


def test_share_variant_scores_every_layer_and_merge_keeps_the_shared_A(tiny_models):
    from lor2c_probe.probes.spectral import discover

    model, tok, _ = _model(tiny_models, method="im-share-lor2c")
    bank = find_bank(model)
    assert sorted(m.module for m in discover(model)) == ["lor2c.0", "lor2c.1", "lor2c.2"]  # every layer, from B_i A_shared
    opt = build_optimizer(model, TrainConfig(lr=1e-2))
    shared, gone_B = bank.shared_A, bank.paths["1"].B
    ops.merge(bank, "0", "1", "0", opt)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(shared) in in_opt and id(gone_B) not in in_opt
    _step(model, tok, opt)
    assert bank.paths["0-1"].B.abs().sum() > 0  # the merged module trains


@pytest.mark.parametrize("bugs", [False, True])
def test_killed_and_resumed_structured_run_equals_uninterrupted(tiny_models, tiny_data, tmp_path, bugs):
    """Merges and injections happen in epoch 0 (steps 6, 7); the run is killed mid epoch 1 and resumed: the
    changes are replayed, the optimizer state is restored by parameter name, every table matches."""
    from lor2c_probe.train.session import resume_training
    from tests.train.test_session import Kill

    cfg = replace(_struct_cfg(tiny_models, tiny_data, merges=1, injections=1, emulate_reference_bugs=bugs),
                  train=replace(_struct_cfg(tiny_models, tiny_data).train, epochs=3))
    run_training(cfg, tmp_path / "full", progress=False)
    with pytest.raises(RunStopped, match="interrupted by SIGINT"):
        run_training(cfg, tmp_path / "cut", progress=False, callbacks=[Kill(at=16)])
    resume_training(tmp_path / "cut", progress=False)
    for table in ("metrics", "grads", "events", "spectra", "sfs", "activation_grads"):
        pd_a, pd_b = read_table(tmp_path / "cut", table), read_table(tmp_path / "full", table)
        assert len(pd_a) > 0 or table == "events" and len(pd_b) == 0, table
        import pandas as pd

        pd.testing.assert_frame_equal(pd_a, pd_b, check_exact=False, rtol=1e-6, obj=table)


def test_emulated_bugs_can_freeze_every_module_and_the_run_still_completes(tiny_models, tiny_data, tmp_path):
    """On 3 blocks, 1 merge + 1 injection with the reference bugs freeze every adapter (the merged span is
    frozen, the injected LoRA never trains): the probes must keep working and record nothing for them."""
    cfg = _struct_cfg(tiny_models, tiny_data, merges=1, injections=1, emulate_reference_bugs=True)
    m = run_training(cfg, tmp_path / "r", progress=False)
    assert m["status"] == "completed"
    g = read_table(tmp_path / "r", "grads")
    assert not g[(g.step <= 6) & (g.module != "global")].empty
    assert g[(g.step > 7) & (g.module != "global")].empty  # nothing trainable is left, so nothing is recorded


def test_loss_windows_are_the_steps_before_and_after_each_event(tiny_models, tiny_data, tmp_path):
    cfg = _struct_cfg(tiny_models, tiny_data, merges=1, injections=1)
    cfg = replace(cfg, structure=replace(cfg.structure, loss_window=3))
    run_training(cfg, tmp_path / "r", progress=False)
    loss = read_table(tmp_path / "r", "metrics").query("split == 'train' and name == 'loss'").set_index("step")["value"]
    ev = read_table(tmp_path / "r", "events")
    for step, d in zip(ev.step, (json.loads(x) for x in ev.detail_json)):
        assert d["loss_before_mean"] == pytest.approx(loss.loc[step - 2 : step].mean(), rel=1e-6)  # steps s-2..s
        assert d["loss_after_mean"] == pytest.approx(loss.loc[step + 1 : step + 3].mean(), rel=1e-6)  # steps s+1..s+3


def test_injected_lora_is_in_the_global_clip_norm(tiny_models, tiny_data, tmp_path):
    """Regression: the loop listed trainable parameters once at the start, so an injected LoRA was never clipped."""
    cfg = _struct_cfg(tiny_models, tiny_data, merges=1, injections=1)
    run_training(cfg, tmp_path / "r", progress=False)
    g = read_table(tmp_path / "r", "grads")
    for step in (10, 20):
        s = g[(g.step == step) & (g.factor == "all") & (g.stat == "l2")].set_index("module")["value"]
        adapters = float((s.drop("global") ** 2).sum())
        assert float(s["global"]) ** 2 >= adapters * (1 - 1e-6)  # the global norm covers every adapter, lora.* included
        assert any(m.startswith("lora.") for m in s.index)


def test_resume_from_the_final_checkpoint_keeps_the_rows_written_at_the_end(tiny_models, tiny_data, tmp_path):
    """With a loss window longer than the run, both events' rows are written by on_train_end, after the final
    checkpoint. A run killed there and resumed from that checkpoint must write them again, not lose them."""
    from lor2c_probe.train.hooks import TrainerCallback
    from lor2c_probe.train.session import resume_training

    class KillAtEnd(TrainerCallback):
        def on_train_end(self, state) -> None:
            raise KeyboardInterrupt

    cfg = _struct_cfg(tiny_models, tiny_data, merges=1, injections=1)
    cfg = replace(cfg, structure=replace(cfg.structure, loss_window=30))
    run_training(cfg, tmp_path / "full", progress=False)
    assert len(read_table(tmp_path / "full", "events")) == 2
    with pytest.raises(RunStopped):
        run_training(cfg, tmp_path / "cut", progress=False, callbacks=[KillAtEnd()])
    m = resume_training(tmp_path / "cut", progress=False)
    assert m["status"] == "completed" and m["resumes"][0]["from"] == "epoch-0001"
    import pandas as pd

    for table in ("events", "metrics"):
        pd.testing.assert_frame_equal(read_table(tmp_path / "cut", table), read_table(tmp_path / "full", table), obj=table)
