"""The registries: every method's parameters are classified, every probe covers every method it claims, and a toy
method, probe and report section registered from the tests folder run end to end through `train` and `report`."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from lor2c_probe import adapters, probes
from lor2c_probe.adapters import METHODS, MethodSpec, get_method
from lor2c_probe.cli import app
from lor2c_probe.config import AdapterConfig
from lor2c_probe.models import load_model
from lor2c_probe.probes import PROBES, ProbeContext, ProbeSpec, build_probes
from lor2c_probe.record import schema
from lor2c_probe.record.naming import classify, is_head
from lor2c_probe.report import sections
from lor2c_probe.report.sections import SectionSpec
from tests.test_cli import tiny_args

runner = CliRunner()


# Every registered method but `peft`, which needs a config file (tests/adapters/test_peft_config.py covers it).
BUILDABLE = [m for m in METHODS if m != "peft"]


def _attached(model_dir, method):
    torch.manual_seed(0)
    model, _, bb = load_model(str(model_dir), num_labels=2, problem_type="single_label_classification")
    return get_method(method).attach(model, bb, AdapterConfig(method=method, rank=2)), bb


def _roles(model, bb, names):
    from lor2c_probe.probes.placement import place

    placement = place(model, names, bb.layers_path)
    assert placement.unplaced == {}, placement.unplaced
    return placement.roles


@pytest.mark.parametrize("method", BUILDABLE)
def test_every_adapter_parameter_of_every_method_is_placed(tiny_models, method):
    """Placed at (layer, module, factor): by classify for lor2c-probe's own modules, by PEFT's tuner layers otherwise."""
    model, bb = _attached(tiny_models["bert"], method)
    spec = METHODS[method]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad and not is_head(n)]
    assert trainable, method
    roles = _roles(model, bb, trainable)
    kinds = {r.kind for r in roles.values()}
    assert "other" not in kinds, [n for n, r in roles.items() if r.kind == "other"]
    assert kinds <= spec.kinds, (kinds, spec.kinds)
    assert all(r.layer >= 0 or r.kind == "lor2c-shared" for r in roles.values())
    assert all(any(m in n for m in spec.markers) for n in trainable)  # the probes select by these markers
    frozen_names = [n for n, p in model.named_parameters() if not p.requires_grad and any(m in n for m in spec.markers)
                    and (classify(n).adapter or ".lora_" in n)]
    frozen = {classify(n).kind for n in frozen_names}
    assert frozen <= ({"lora"} if spec.dormant_lora else set()), frozen  # only a dormant LoRA waits frozen


@pytest.mark.parametrize("method", BUILDABLE)
def test_every_probe_covers_every_method_it_claims(tiny_models, tiny_data, method):
    """The ResLoRA gap (the spectral probe silently recorded nothing for it) cannot come back unnoticed."""
    from lor2c_probe.options import config_from_options
    from lor2c_probe.probes.gradients import GradientProbe
    from lor2c_probe.probes.histograms import HistogramProbe
    from lor2c_probe.probes.spectral import SpectralProbe, discover

    model, bb = _attached(tiny_models["bert"], method)
    cfg, _ = config_from_options({"method": method, "rank": 2, "task": "custom", "train_file": str(tiny_data["train"])})
    from lor2c_probe.adapters import markers

    ctx = ProbeContext(markers(method), bb.layers_path, cfg.adapter.scaling, cfg.adapter.scaling, chunk=2)
    roles = list(_roles(model, bb, [n for n, p in model.named_parameters() if p.requires_grad and not is_head(n)]).values())
    for spec in PROBES.values():
        if spec.covers is None or not (METHODS[method].kinds & spec.covers):
            continue
        [probe] = build_probes((spec.name,), ctx)
        if isinstance(probe, HistogramProbe):
            probe.bind(model)
            assert {m for m, _ in probe.modules} == {r.module for r in roles}, spec.name
        elif isinstance(probe, GradientProbe):
            probe.bind(model)
            assert {r.module for r in probe.index.roles} == {r.module for r in roles}, spec.name
        elif isinstance(probe, SpectralProbe):
            found = {m.module for m in discover(model, bb.layers_path)}
            want = {r.module if r.kind == "lor2c" else f"{r.module}.{r.proj}" for r in roles if r.kind != "lor2c-shared"}
            assert want <= found, (spec.name, sorted(want - found))
        else:
            pytest.fail(f"probe {spec.name} claims adapter kinds {sorted(spec.covers)}: add its coverage check here")


@pytest.fixture
def toy_registered():
    adapters.register(MethodSpec("toy-top", "tests.extension_toy:TopOnlyMethod", ("lor2c.",), frozenset({"lor2c"})))
    schema.register_table("toy_norms", __import__("tests.extension_toy", fromlist=["TABLE"]).TABLE)
    probes.register(ProbeSpec("toy-norms", "tests.extension_toy:build", ("toy_norms",)))
    from tests.extension_toy import norm_section

    sections.register(SectionSpec("toy_norms", norm_section))
    yield
    METHODS.pop("toy-top")
    schema.TABLES.pop("toy_norms")
    PROBES.pop("toy-norms")
    sections.SECTIONS.pop()


def test_a_toy_method_probe_and_section_run_through_train_and_report(toy_registered, tiny_models, tiny_data, tmp_path):
    out = tmp_path / "toy"
    res = runner.invoke(app, tiny_args(tiny_models["bert"], tiny_data, out, "--method", "toy-top", "--probes", "grads,toy-norms",
                                       "--epochs", "1"))
    assert res.exit_code == 0, res.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["method"]["name"] == "toy-top" and m["params"]["adapter_params"] == 2 * 2 * 32  # 2 r d, r = 2, d = 32
    assert m["config"]["probes"]["extra"] == ["toy-norms"]
    from lor2c_probe.record.store import read_table

    norms = read_table(out, "toy_norms")
    assert norms.step.tolist() == list(range(1, len(norms) + 1)) and (norms.value > 0).all()
    assert set(read_table(out, "grads").module) >= {"lor2c.2"}  # the gradient probe classified the toy's path
    res = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "rep"), "--static"])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert meta["sections"]["toy_norms"] == "drawn" and "toy_norms" in meta["figures"]
