"""CUDA paths (bf16/fp16 autocast, fp32 adapters). Skipped cleanly on machines without a GPU."""

from __future__ import annotations

import math

import pytest
import torch

from lor2c_probe.record.store import read_table
from lor2c_probe.train.session import run_training
from tests.helpers import tiny_config

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("method", ["lor2c", "lora"])
def test_mixed_precision_training_on_cuda(tiny_models, tiny_data, tmp_path, method, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("GPU without bf16")
    cfg = tiny_config(tiny_models["bert"], tiny_data, method=method, epochs=1, device="cuda", precision=precision)
    m = run_training(cfg, tmp_path / "r", progress=False)
    assert m["precision"] == precision and m["device"]["type"] == "cuda"
    losses = read_table(tmp_path / "r", "metrics").query("split == 'train' and name == 'loss'")["value"]
    assert len(losses) == 12 and all(math.isfinite(v) for v in losses)


def test_auto_precision_picks_bf16_on_cuda():
    from lor2c_probe.train.build import resolve_device

    device, precision = resolve_device("auto", "auto")
    assert device.type == "cuda" and precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")


@pytest.mark.parametrize("method", ["lor2c", "im-lor2c"])
def test_bf16_base_weights_on_cuda(tiny_models, tiny_data, tmp_path, method):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("GPU without bf16")
    cfg = tiny_config(tiny_models["bert"], tiny_data, method=method, epochs=1, device="cuda", precision="auto", base_dtype="bf16")
    m = run_training(cfg, tmp_path / "r", progress=False)
    assert m["precision"] == "bf16" and m["config"]["train"]["base_dtype"] == "bf16"
    losses = read_table(tmp_path / "r", "metrics").query("split == 'train' and name == 'loss'")["value"]
    assert len(losses) == 12 and all(math.isfinite(v) for v in losses)
    assert not read_table(tmp_path / "r", "spectra").empty
