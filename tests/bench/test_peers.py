"""``bench --peers``: each peer really runs (its files are read back), the spectra agree with a brute-force SVD, and the
smoke run writes every part of the JSON, with a clear line for a peer that is missing or cannot attach."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lor2c_probe.bench.config import BenchConfig
from lor2c_probe.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    out = tmp_path_factory.mktemp("peers") / "peers.json"
    res = runner.invoke(app, ["bench", "--peers", "--smoke", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return json.loads(out.read_text()), res.output


def test_smoke_writes_every_part(peers):
    data, output = peers
    p = data["peers"]
    assert set(p["monitors"]) == {"tiny|lora", "tiny|lor2c"}
    for m in p["monitors"].values():
        measured, skipped = set(m["variants"]), set(m["unavailable"])
        assert {"none", "ours (grads probe, every step)", "wandb.watch(log_freq=1)", "tensorboard add_histogram (every step)"} <= measured
        assert all(v["ratio_to_none"]["median"] > 0 for v in m["variants"].values())
        assert "backpack BatchL2Grad (trainable nn.Linear only)" in measured | skipped  # measured, or the reason it cannot be
    assert "backpack BatchL2Grad (trainable nn.Linear only)" in p["monitors"]["tiny|lora"]["variants"]
    assert "bare Parameters" in p["monitors"]["tiny|lor2c"]["unavailable"]["backpack BatchL2Grad (trainable nn.Linear only)"]
    sp = p["spectra"]
    assert sp["weightwatcher"]["max_relative_error"] < 1e-5 and sp["ours_vs_dense"]["max_relative_error"] < 1e-5
    assert set(p["train_step"]["tiny"]["methods"]) == {"lora", "dora", "vera", "lor2c", "share-lor2c", "reslora-ms"}
    assert all(e["peak_memory_bytes"] > 0 and e["tokens_per_second"] > 0 for e in p["train_step"]["tiny"]["methods"].values())
    vol = p["volume"]["tiny"]
    assert {"ours (Parquet, the same rows)", "tensorboard (event files)", "wandb (offline run)"} <= set(vol["formats"])
    assert vol["tensorboard_surface_max_relative_difference"] < 1e-5  # float32 event values, the same surface
    assert "wandb analysis" in vol["unavailable"]
    goals = {r["goal"] for r in data["goals"]}
    assert {"peer_grad_probe", "peer_vs_wandb_watch", "peer_spectra_speedup", "peer_spectra_agreement", "peer_lor2c_step"} <= goals
    assert "smoke mode" in output


def test_wandb_watch_really_logs_gradient_histograms(tmp_path):
    from lor2c_probe.bench.harness import make_bench
    from lor2c_probe.bench.peer_monitors import WandbMonitor
    from tests.sinks.wandb_reader import read_run

    b = make_bench("tiny", "lora", "none", tmp_path / "store", device=torch.device("cpu"), precision="fp32", rank=2, batch_size=4, seq_len=8)
    cb = WandbMonitor(tmp_path / "wb", watch_every=1)
    b.trainer.callbacks.append(cb)
    cb.on_train_start(b.trainer.state)
    b.run(3)
    cb.close()
    files = list((tmp_path / "wb").rglob("*.wandb"))
    assert files
    history, _, _ = read_run(files[0])
    keys = set()
    for row in history:
        for k, v in row.items():
            keys |= {k} | ({f"{k}/{kk}" for kk in v} if isinstance(v, dict) and "_type" not in v else set())
    lora_keys = [k for k in keys if k.startswith("gradients/") and "lora_A" in k]
    assert lora_keys and "train/loss" in keys  # a histogram per trainable LoRA tensor, and the loss


def test_tensorboard_histograms_cover_every_trainable_gradient(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import HISTOGRAMS, EventAccumulator

    from lor2c_probe.bench.harness import make_bench
    from lor2c_probe.bench.peer_monitors import TensorBoardHistograms

    b = make_bench("tiny", "lora", "none", tmp_path / "store", device=torch.device("cpu"), precision="fp32", rank=2, batch_size=4, seq_len=8)
    cb = TensorBoardHistograms(tmp_path / "tb", every=2)
    b.trainer.callbacks.append(cb)
    b.run(4)
    cb.close()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={HISTOGRAMS: 0})
    acc.Reload()
    trainable = {f"grad/{n}" for n, p in b.trainer.model.named_parameters() if p.requires_grad}
    assert set(acc.Tags()["histograms"]) == trainable
    assert [e.step for e in acc.Histograms(sorted(trainable)[0])] == [2, 4]


def test_backpack_reads_per_example_norms_of_the_lora_gradients(tmp_path):
    pytest.importorskip("backpack")
    from lor2c_probe.bench.harness import make_bench
    from lor2c_probe.bench.peers_backpack import attach, backpack_variant

    b = attach(make_bench("tiny", "lora", "none", tmp_path, device=torch.device("cpu"), precision="fp32", rank=2, batch_size=4, seq_len=8))
    seen = {}

    class Grab:  # read BackPACK's field before the optimizer step clears the gradients
        def __getattr__(self, name):
            return lambda state: None

        def before_clip(self, state):
            for n, p in state.model.named_parameters():
                if hasattr(p, "batch_l2"):
                    seen[n] = (p.batch_l2.detach().clone(), p.grad.detach().clone())

    b.trainer.callbacks.append(Grab())
    b.run(1)
    lora = [n for n in seen if "lora_A" in n or "lora_B" in n]
    assert lora and all(seen[n][0].shape == (4,) for n in lora)
    # with a mean loss, BackPACK's batch_l2[i] = ||g_i / N||^2: their sum is at least ||sum_i g_i / N||^2 / N (Cauchy-Schwarz)
    for n in lora:
        l2, g = seen[n]
        assert float(l2.sum()) >= float((g**2).sum()) / 4 * (1 - 1e-5)
    assert "bare Parameters" in backpack_variant("tiny", "lor2c")["unavailable"]["backpack BatchL2Grad (trainable nn.Linear only)"]


def test_spectra_agree_with_a_brute_force_svd():
    from lor2c_probe.bench.peers_spectra import _peft_model, measure_spectra

    res = measure_spectra(BenchConfig.smoke_preset(), torch.device("cpu"), log=lambda _: None)
    assert res["adapters"] == 4 and res["ours_vs_dense"]["max_relative_error"] < 1e-5
    # by hand: s * B @ A of one adapter, svdvals in float64
    _, layers = _peft_model("tiny", 8)
    _, mod = layers[0]
    A, B = mod.lora_A["default"].weight.double(), mod.lora_B["default"].weight.double()
    ref = torch.linalg.svdvals(float(mod.scaling["default"]) * B @ A)[:8].detach().numpy()
    from lor2c_probe.updates import update_of

    got = update_of(mod).svdvals().double().detach().numpy()[:8]
    assert np.max(np.abs(got - ref) / ref) < 1e-5


def test_volume_extension_keeps_the_table_shape():
    import pandas as pd

    from lor2c_probe.bench.peers_volume import extend

    g = pd.DataFrame({"step": [1, 1, 2, 2], "epoch": 0, "module": ["lora.0", "lora.0", "lora.0", "lora.0"], "layer": 0,
                      "factor": "all", "stat": ["mean_abs", "numel", "mean_abs", "numel"], "value": [1.0, 64.0, 2.0, 64.0]})
    e = extend(g, 7, 3)
    assert sorted(e.step.unique()) == list(range(1, 8)) and list(e.groupby("step").size()) == [2] * 7
    assert e.epoch.max() == 2 and (e.loc[e.stat == "numel", "value"] == 64.0).all()
    assert not e.loc[e.stat == "mean_abs", "value"].isin([1.0, 2.0]).all()  # jittered


def test_peers_is_one_mode():
    from lor2c_probe.config import ConfigError

    with pytest.raises(ConfigError, match="pick one"):
        BenchConfig(peers=True, probe_sets=True)
    with pytest.raises(ConfigError, match="unknown method 'nope' in step_methods"):
        BenchConfig(step_methods=("lora", "nope"))


def test_a_missing_peer_is_a_line_not_a_failure(monkeypatch):
    from lor2c_probe.bench import peer_monitors

    assert peer_monitors.missing("lor2c_probe") is None
    assert "bench extra" in peer_monitors.missing("no_such_package_xyz")
