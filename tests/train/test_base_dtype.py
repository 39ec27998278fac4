"""--base-dtype: frozen pretrained weights stored in bf16/fp16, adapters and a new head in fp32, trained under
autocast in the weights' dtype. CUDA is where this runs for users; here CPU bf16 autocast stands in for it
(resolve_device refuses mixed precision on the CPU, so the end-to-end tests patch it)."""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

from lor2c_probe.cli import app
from lor2c_probe.config import AdapterConfig, ConfigError, DataConfig, RunConfig, TrainConfig
from lor2c_probe.models import load_model
from lor2c_probe.record.store import read_manifest, read_table
from lor2c_probe.train import session
from lor2c_probe.train.build import build_model
from lor2c_probe.train.session import run_training
from tests.helpers import tiny_config
from tests.test_cli import assert_user_error

runner = CliRunner()


def _llama_config(model, data, method: str, base_dtype: str, **structure) -> RunConfig:
    from lor2c_probe.config import StructureConfig

    return RunConfig(
        model=str(model),
        adapter=AdapterConfig(method=method, rank=4, alpha=8.0, dropout=0.0),
        train=TrainConfig(epochs=2, batch_size=8, eval_batch_size=16, lr=5e-3, seed=3, device="cpu", flush_every=3, max_length=96,
                          precision="bf16", base_dtype=base_dtype),
        data=DataConfig(task="alpaca", train_file=str(data["train"]), eval_file=str(data["eval"])),
        structure=StructureConfig(**structure) if structure else StructureConfig(),
    )


@pytest.mark.parametrize("method", ["lor2c", "lora", "im-lor2c", "reslora-ms"])
def test_frozen_weights_in_bf16_trainable_in_fp32(tiny_models, tiny_data, method):
    cfg = tiny_config(tiny_models["roberta"], tiny_data, method=method, precision="bf16", base_dtype="bf16")
    built = build_model(cfg, session.load_task(cfg.data)[2])
    params = dict(built.model.named_parameters())
    # Left fp32 on purpose: the dormant LoRA of im-lor2c and PEFT's frozen copy of the (fp32) head.
    frozen = {n: p.dtype for n, p in params.items() if not p.requires_grad and "lora_" not in n and "original_module" not in n}
    trainable = {n: p.dtype for n, p in params.items() if p.requires_grad}
    assert frozen and set(frozen.values()) == {torch.bfloat16}
    assert any("classifier" in n for n in trainable) and set(trainable.values()) == {torch.float32}


def test_fp32_is_loaded_as_fp32_from_a_half_precision_checkpoint(tiny_llama, tmp_path):
    # transformers 5 loads in the checkpoint's dtype unless told otherwise; Llama-2-7b-hf is stored in fp16.
    model, tok, _ = load_model(str(tiny_llama), num_labels=1, problem_type="", causal=True)
    model.half().save_pretrained(tmp_path / "fp16")
    tok.save_pretrained(tmp_path / "fp16")
    for dtype, want in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        loaded, _, _ = load_model(str(tmp_path / "fp16"), num_labels=1, problem_type="", causal=True, dtype=dtype)
        assert {p.dtype for p in loaded.parameters()} == {want}


def test_bf16_weights_train_like_fp32_weights_under_the_same_autocast(tiny_llama, tiny_alpaca, tmp_path, monkeypatch):
    monkeypatch.setattr(session, "resolve_device", lambda device, precision, base_dtype="fp32": (torch.device("cpu"), precision))
    tables = {}
    for base in ("fp32", "bf16"):
        cfg = _llama_config(tiny_llama, tiny_alpaca, "im-lor2c", base, merges=1, injections=1, schedule="step")
        m = run_training(cfg, tmp_path / base, progress=False)
        assert m["status"] == "completed" and m["config"]["train"]["base_dtype"] == base
        tables[base] = {t: read_table(tmp_path / base, t) for t in ("metrics", "grads", "activation_grads", "spectra", "events")}
    a, b = tables["fp32"], tables["bf16"]
    assert a["events"].kind.tolist() == b["events"].kind.tolist() == ["merge", "inject"]
    loss = lambda t: t["metrics"].query("split == 'train' and name == 'loss'").value.to_numpy()  # noqa: E731
    # Under bf16 autocast the matmuls already run in bf16 either way; what differs is where the weights are rounded
    # (once at load vs per cast, identical values) and the non-matmul ops (norms, embeddings) now reading bf16
    # weights. First step: the same up to bf16 rounding (rel. 2e-2, ~3 bf16 ulps); then the runs drift apart slowly.
    assert loss(b)[0] == pytest.approx(loss(a)[0], rel=2e-2)
    assert all(math.isfinite(v) for v in loss(b)) and loss(b)[-1] < loss(b)[0]
    for t in ("grads", "activation_grads", "spectra"):
        assert len(a[t]) == len(b[t]) and b[t].select_dtypes("number").notna().all().all(), t
    first = lambda t: t["grads"].query("step == 1 and module != 'global' and stat == 'l2'").set_index(["module", "factor"]).value  # noqa: E731
    assert first(b).index.equals(first(a).index) and len(first(a)) > 0
    assert first(b).to_numpy() == pytest.approx(first(a).to_numpy(), rel=0.1)


@pytest.mark.parametrize("method", ["lor2c", "lora", "reslora-ms"])
def test_classifier_trains_with_bf16_weights(tiny_models, tiny_data, tmp_path, monkeypatch, method):
    monkeypatch.setattr(session, "resolve_device", lambda device, precision, base_dtype="fp32": (torch.device("cpu"), precision))
    cfg = tiny_config(tiny_models["bert"], tiny_data, method=method, epochs=1, precision="bf16", base_dtype="bf16")
    m = run_training(cfg, tmp_path / "r", progress=False)
    assert m["status"] == "completed"
    losses = read_table(tmp_path / "r", "metrics").query("split == 'train' and name == 'loss'").value
    assert len(losses) > 0 and all(math.isfinite(v) for v in losses)
    assert read_manifest(tmp_path / "r")["precision"] == "bf16"
    if method == "reslora-ms":  # folded into plain LoRA factors and evaluated again at the end
        assert any(s.startswith("eval_folded:") for s in read_table(tmp_path / "r", "metrics").split)
    else:
        assert not read_table(tmp_path / "r", "spectra").empty


def test_bad_base_dtype_input(tiny_models, tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="base_dtype bf16 computes under bf16 autocast: set precision bf16"):
        TrainConfig(precision="fp32", base_dtype="bf16")
    with pytest.raises(ConfigError, match="unknown base_dtype 'int8'"):
        TrainConfig(base_dtype="int8")
    args = ["train", "--model", str(tiny_models["bert"]), "--task", "custom", "--train-file", str(tiny_data["train"]),
            "--out", str(tmp_path / "r"), "--quiet", "--no-report"]
    if not torch.cuda.is_available():
        res = runner.invoke(app, [*args, "--base-dtype", "bf16", "--device", "cpu"])
        assert_user_error(res, "--base-dtype bf16 needs bf16 autocast on a CUDA device; precision resolved to fp32 here")
    assert_user_error(runner.invoke(app, [*args, "--base-dtype", "fp16", "--precision", "bf16"]),
                      "base_dtype fp16 computes under fp16 autocast")
    assert not (tmp_path / "r").exists()
