"""PEFT methods as registry lines: --peft-config, PEFT's own target defaults, AdaLoRA's schedule, unplaced tensors,
and `params` on any config.json (formula = instantiated count)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from lor2c_probe.adapters import METHODS, get_method
from lor2c_probe.cli import app
from lor2c_probe.config import AdapterConfig
from lor2c_probe.errors import UserError
from lor2c_probe.models import backbone_of
from lor2c_probe.record.store import read_manifest, read_table
from tests.families import save_tiny, tiny_inputs, tiny_model
from tests.test_cli import assert_user_error, tiny_args

runner = CliRunner()


def _lora_config_file(folder, **kw):
    from peft import LoraConfig

    LoraConfig(r=2, lora_alpha=4, target_modules=["query", "value"], **kw).save_pretrained(str(folder))
    return folder / "adapter_config.json"


def test_peft_config_file_trains_end_to_end(tiny_models, tiny_data, tmp_path):
    cfg_file = _lora_config_file(tmp_path / "cfg", use_dora=True, inference_mode=True)  # as a saved adapter says
    out = tmp_path / "r"
    res = runner.invoke(app, tiny_args(tiny_models["bert"], tiny_data, out, "--method", "peft", "--peft-config", str(cfg_file),
                                       "--probes", "grads,spectra"))
    assert res.exit_code == 0, res.output
    m = read_manifest(out)
    assert m["method"]["name"] == "peft" and m["params"]["adapter_params"] > 0
    [grads_entry] = [c for c in m["recording"]["callbacks"] if c["name"] == "gradients"]
    assert grads_entry["unplaced"] == {}
    grads = read_table(out, "grads")
    assert {"A", "B", "m"} <= set(grads.factor)  # DoRA's magnitude, from the file's use_dora
    assert set(grads.loc[grads.module != "global", "layer"]) == {0, 1, 2}
    spectra = read_table(out, "spectra")
    assert {f"lora.{i}.{p}" for i in range(3) for p in "qv"} <= set(spectra.module)


def test_peft_config_errors_are_one_line(tiny_models, tiny_data, tmp_path):
    assert_user_error(runner.invoke(app, tiny_args(tiny_models["bert"], tiny_data, tmp_path / "a", "--method", "peft")),
                      "--method peft needs --peft-config")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"peft_type": "NOPE"}))
    assert_user_error(runner.invoke(app, tiny_args(tiny_models["bert"], tiny_data, tmp_path / "b", "--method", "peft", "--peft-config", str(bad))),
                      "peft_type 'NOPE' is not one of PEFT's")
    assert_user_error(runner.invoke(app, tiny_args(tiny_models["bert"], tiny_data, tmp_path / "c", "--method", "lora", "--peft-config", str(bad))),
                      "--peft-config FILE.json goes with --method peft")
    assert not any((tmp_path / n).exists() for n in "abc")


def test_no_peft_default_targets_asks_for_target_modules(tiny_data, tmp_path):
    save_tiny("distilbert", tmp_path / "distilbert")
    res = runner.invoke(app, tiny_args(tmp_path / "distilbert", tiny_data, tmp_path / "r", "--method", "lora"))
    assert_user_error(res, "--target-modules")
    res = runner.invoke(app, tiny_args(tmp_path / "distilbert", tiny_data, tmp_path / "r2", "--method", "lora", "--target-modules", "q_lin,v_lin"))
    assert res.exit_code == 0, res.output
    m = read_manifest(tmp_path / "r2")
    assert m["model"]["targets"] == ["q_lin", "v_lin"] and m["model"]["layers_path"] == "distilbert.transformer.layer"
    assert m["params"]["adapter_params"] == m["params"]["adapter_params_formula"]


def test_gpt2_classifier_trains_with_lor2c_and_lora(tiny_data, tmp_path):
    """GPT-2: blocks found at transformer.h, LoRA on the fused c_attn (Conv1D), LoR2C on the block input and output."""
    save_tiny("gpt2", tmp_path / "gpt2")
    for method in ("lora", "lor2c"):
        out = tmp_path / method
        res = runner.invoke(app, tiny_args(tmp_path / "gpt2", tiny_data, out, "--method", method, "--probes", "grads,activations,spectra"))
        assert res.exit_code == 0, res.output
        m = read_manifest(out)
        assert m["model"]["layers_path"] == "transformer.h" and m["status"] == "completed"
        grads = read_table(out, "grads")
        assert set(grads.loc[grads.module != "global", "layer"]) == {0, 1, 2}
        assert not read_table(out, "activation_grads").empty


def test_unplaced_tensors_are_named_not_dropped(tmp_path):
    """LoRA on BERT's pooler sits outside the block stack: its tensors are kept as unplaced rows with the reason."""
    from peft import LoraConfig, get_peft_model

    from lor2c_probe.probes.gradients import GradientProbe

    model = tiny_model("bert")
    bb = backbone_of(model)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["query", "value", "pooler.dense"]))
    x = tiny_inputs(peft_model)
    peft_model(**x, labels=torch.tensor([0, 1])).loss.backward()
    probe = GradientProbe(("lora_",), scaling=1.0, layers_path=bb.layers_path)
    probe.bind(peft_model)
    assert len(probe.unplaced) == 2 and all("outside the block stack bert.encoder.layer" in why for why in probe.unplaced.values())
    modules = {r.module for r in probe.index.roles}
    assert {f"lora.{i}" for i in range(3)} <= modules
    assert sum(m.startswith("unplaced:") for m in modules) == 2
    assert probe.manifest_entry()["unplaced"] == probe.unplaced

    from lor2c_probe.compare.gradients import unplaced_warning
    from lor2c_probe.record.runs import RecordedRun

    run = RecordedRun("x", tmp_path, {"recording": {"callbacks": [probe.manifest_entry()]}})
    line = unplaced_warning(run)
    assert line.startswith("Warning: x: 2 trainable tensor(s) have no layer") and "\n" not in line


def test_adalora_schedule_reduces_the_rank_budget():
    """The loop's after_optimizer_step point runs PEFT's update_and_allocate; the final budget masks E."""
    from lor2c_probe.adapters.adalora_schedule import AdaLoraSchedule
    from lor2c_probe.train.hooks import TrainState

    model = tiny_model("bert")
    bb = backbone_of(model)
    cfg = AdapterConfig(method="adalora", rank=4, alpha=8.0, dropout=0.0)
    peft_model = get_method("adalora").attach(model, bb, cfg)
    [cb] = get_method("adalora").callbacks(peft_model, 20)
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    state = TrainState(peft_model, opt, None, lambda *a: None, torch.device("cpu"), "lora_")
    cb.on_train_start(state)
    x = tiny_inputs(peft_model)
    for step in range(20):
        state.step = step
        peft_model(**x, labels=torch.tensor([0, 1])).loss.backward()
        opt.step()
        cb.after_optimizer_step(state)
        opt.zero_grad()
    E = [p for n, p in peft_model.named_parameters() if "lora_E" in n]
    kept = sum(int((e != 0).sum()) for e in E)
    assert kept == 2 * len(E)  # target_r = rank / 2 per layer on average: PEFT's budget after the final allocation
    assert isinstance(cb, AdaLoraSchedule) and cb.manifest_entry()["total_step"] == 20


@pytest.mark.parametrize("family", ["gpt2", "deberta-v2", "qwen2"])
def test_params_accepts_any_config_json(family, tmp_path):
    """`params --arch config.json`: every PEFT method's formula equals the count of the instantiated model."""
    folder = save_tiny(family, tmp_path / family)
    res = runner.invoke(app, ["params", "--arch", str(folder / "config.json"), "--rank", "4"])
    assert res.exit_code == 0, res.output
    printed = {line.split()[0]: int(line.split()[1].replace(",", "")) for line in res.output.splitlines()[1:] if line.startswith("  ")}
    model = tiny_model(family, "causal-lm" if family in ("gpt2", "qwen2") else "seq-cls")
    for method in ("lora", "dora", "adalora", "vera", "ia3") + (() if family == "gpt2" else ("loha", "lokr")):
        m = tiny_model(family, "causal-lm" if family in ("gpt2", "qwen2") else "seq-cls")
        bb = backbone_of(m, causal=family in ("gpt2", "qwen2"))
        wrapped = get_method(method).attach(m, bb, AdapterConfig(method=method, rank=4, alpha=8.0))
        counted = sum(p.numel() for n, p in wrapped.named_parameters() if p.requires_grad and any(k in n for k in METHODS[method].markers))
        assert printed[method] == counted, (method, printed[method], counted)
    del model
    res = runner.invoke(app, ["params", "--arch", str(folder), "--memory", "--method", "lora", "--rank", "4", "--seq-len", "16",
                              "--precision", "fp32"])
    assert res.exit_code == 0, res.output
    assert "total per GPU" in res.output


def test_a_missing_config_is_one_line():
    with pytest.raises(UserError, match="unknown --arch 'no/such-model'"):
        from lor2c_probe.compare.params import shape_for

        shape_for("no/such-model")


def test_gpt2_im_lor2c_merges_and_injects(tiny_data, tmp_path):
    """The merge/inject family on a decoder whose blocks are transformer.h: the dormant LoRA on c_attn is found,
    trained by the optimizer from the start, and switched on by the injection."""
    save_tiny("gpt2", tmp_path / "gpt2")
    out = tmp_path / "im"
    args = tiny_args(tmp_path / "gpt2", tiny_data, out, "--method", "im-lor2c", "--merges", "1", "--injections", "1",
                     "--schedule", "step", "--probes", "grads,spectra", "--spectra-every", "4")
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    events = read_table(out, "events")
    assert set(events["kind"]) >= {"merge", "inject"}, events
    grads = read_table(out, "grads")
    injected = grads[grads.module.str.startswith("lora.")]
    assert not injected.empty and (injected[injected.stat == "l2"].value > 0).any()  # the injected LoRA trains


def test_refusals_are_one_line(tiny_models, tiny_data, tmp_path):
    save_tiny("gpt2", tmp_path / "gpt2")
    assert_user_error(runner.invoke(app, tiny_args(tmp_path / "gpt2", tiny_data, tmp_path / "a", "--method", "loha")),
                      "PEFT LoHaConfig: Target module")  # PEFT's LoHa has no Conv1D layer
    assert_user_error(runner.invoke(app, tiny_args(tiny_models["bert"], tiny_data, tmp_path / "b", "--method", "lor2c",
                                                   "--target-modules", "query")), "lor2c does not use it")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_adalora_rank_pattern_survives_a_checkpoint_and_skipped_steps_allocate_nothing():
    from lor2c_probe.train.hooks import TrainState

    model = tiny_model("bert")
    peft_model = get_method("adalora").attach(model, backbone_of(model), AdapterConfig(method="adalora", rank=4, alpha=8.0, dropout=0.0))
    [cb] = get_method("adalora").callbacks(peft_model, 10)
    config = peft_model.peft_config["default"]
    assert (config.total_step, config.tinit, config.tfinal) == (10, 1, 2)  # set at construction: a resume sees it too
    pattern = {"x": [True, False]}
    config.rank_pattern = pattern
    saved = json.loads(json.dumps(cb.state_dict()))
    config.rank_pattern = None
    cb.load_state_dict(saved, torch.device("cpu"))
    assert config.rank_pattern == pattern
    state = TrainState(peft_model, None, None, lambda *a: None, torch.device("cpu"), "lora_", extras={"skipped_update": True})
    cb.after_optimizer_step(state)  # would fail on the fake pattern if it allocated


def test_tuner_layers_without_an_exact_route_are_named_not_fatal():
    """LoRA on an embedding has no update route here: the reading goes on and the manifest names the layer."""
    from peft import LoraConfig, get_peft_model

    from lor2c_probe.probes.spectral import SpectralProbe

    model = tiny_model("bert")
    bb = backbone_of(model)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["query", "word_embeddings"]))
    probe = SpectralProbe(scaling=1.0, layers_path=bb.layers_path, probe_data=None, ks=(1,))
    spectra = probe.spectra_now(peft_model, ("weights",))
    assert {m for _, m in spectra} == {f"lora.{i}.q" for i in range(3)}
    [(module, why)] = probe.unmeasured.items()
    assert module.startswith("unplaced:") and "Embedding" in why
    assert probe.manifest_entry()["unmeasured"] == probe.unmeasured
