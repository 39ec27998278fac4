"""``lor2c-probe bench``: the smoke run writes a complete, valid JSON; bad input fails before measuring;
the statistics and goal verdicts are checked against hand computations. Timings are never asserted."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lor2c_probe.bench.config import BenchConfig
from lor2c_probe.bench.suite import GOALS, goals_table
from lor2c_probe.bench.timing import paired, summary
from lor2c_probe.cli import app
from tests.test_cli import assert_user_error

runner = CliRunner()


def _finite_numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _finite_numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _finite_numbers(v)
    elif isinstance(obj, float):
        yield obj


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    res = runner.invoke(app, ["bench", "--smoke", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_smoke_run_writes_valid_json_with_every_goal(smoke):
    out, output = smoke
    data = json.loads(out.read_text())
    env = data["environment"]
    assert env["device"] == "cpu" and env["versions"]["torch"] == torch.__version__ and env["torch_threads"] >= 1
    assert data["config"]["smoke"] is True and data["config"]["shapes"] == ["tiny"]
    assert {r["goal"] for r in data["goals"]} == {g.key for g in GOALS} - PROBE_SET_GOALS - PEER_GOALS  # those: --probe-sets, --peers
    assert all(r["value"] is not None and r["value"] > 0 and r["met"] is None for r in data["goals"])  # smoke: not judged
    tiny = data["shapes"]["tiny"]
    assert set(tiny["steps"]["methods"]) == {"lora", "lor2c"}
    for m, e in tiny["steps"]["methods"].items():
        assert len(e["seconds_per_step"]["none"]["all"]) == 2  # reps
        rec = e["recording"]
        assert rec["modules"] == 2 and rec["steps"] == 1 + 2 * 2  # tiny: 2 layers; warmup + reps * steps
        assert rec["bytes"]["grads"] > 0 and rec["bytes"]["activation_grads"] > 0
        assert tiny["memory"][m]["ratio"] > 0 and tiny["spectral_probe"][m]["modules"] >= 2
        assert tiny["memory"][m]["plan_bytes"] > 0 and tiny["memory"][m]["plan_over_measured"] > 0  # the planner, side by side
    assert all(math.isfinite(x) for x in _finite_numbers(data))
    assert "smoke mode" in output and f"wrote {out}" in output


PROBE_SET_GOALS = {"probes_and_sinks", "recording_volume_histograms"}
PEER_GOALS = {"peer_grad_probe", "peer_vs_wandb_watch", "peer_spectra_speedup", "peer_spectra_agreement", "peer_lor2c_step"}


def test_probe_sets_times_every_probe_and_sink_against_none(tmp_path):
    from lor2c_probe.bench.probe_sets import VARIANTS

    out = tmp_path / "ps.json"
    res = runner.invoke(app, ["bench", "--smoke", "--probe-sets", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    ps = data["shapes"]["tiny"]["probe_sets"]
    assert set(ps["variants"]) == set(VARIANTS) and ps["flush_every"] == 3
    for v, e in ps["variants"].items():
        assert len(e["seconds_per_step"]["all"]) == 2 and e["amortized_ratio"]["median"] > 0, v
        assert (e["epoch_end_seconds"] is not None) == VARIANTS[v][0].spectra, v
    assert ps["variants"]["all"]["recording"]["bytes"]["histograms"] > 0
    assert {r["goal"] for r in data["goals"]} == PROBE_SET_GOALS
    assert [r["method"] for r in data["goals"] if r["goal"] == "probes_and_sinks"] == [
        "lora all", "lora all+tensorboard", "lora all+wandb", "lora all+mlflow"]


def test_existing_output_is_never_replaced_without_overwrite(smoke, tmp_path):
    out, _ = smoke
    before = out.read_bytes()
    assert_user_error(runner.invoke(app, ["bench", "--smoke", "--out", str(out)]), "pass --overwrite")
    assert out.read_bytes() == before


@pytest.mark.parametrize("args,message", [
    (["--shapes", "gpt5"], "unknown shape 'gpt5'; choose from: minilm, roberta-base, tiny"),
    (["--methods", "lora,lora"], "methods must be distinct"),
    (["--methods", "nosuch"], "unknown method 'nosuch'"),
    (["--reps", "1"], "reps must be at least 2"),
    (["--steps", "0"], "steps must be a positive integer; got 0"),
    (["--svd-dims", "768,x"], "--svd-dims must be a comma list of integers"),
    (["--device", "tpu"], "device must be cpu, cuda or auto"),
    (["--precision", "bf16", "--device", "cpu"], "precision bf16 needs a CUDA device"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "b.json"
    assert_user_error(runner.invoke(app, ["bench", "--smoke", "--out", str(out), *args]), message)
    assert not out.exists()


def test_out_must_be_a_json_file(tmp_path):
    assert_user_error(runner.invoke(app, ["bench", "--smoke", "--out", str(tmp_path / "b.txt")]), "--out must name a .json file")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_fails_before_measuring(tmp_path):
    assert_user_error(runner.invoke(app, ["bench", "--smoke", "--device", "cuda", "--out", str(tmp_path / "b.json")]),
                      "no CUDA device is available")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_smoke_on_cuda(tmp_path):
    out = tmp_path / "b.json"
    res = runner.invoke(app, ["bench", "--smoke", "--device", "cuda", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["environment"]["device"].startswith("cuda") and data["environment"]["gpu_memory_bytes"] > 0
    assert "cuda_max_allocated" in data["shapes"]["tiny"]["memory"]["lor2c"]["raw"]["all"][0]


def test_summary_and_paired_ratios_match_numpy():
    a, b = [1.0, 3.0, 2.0, 5.0], [2.0, 2.0, 4.0, 4.0]
    s = summary(a)
    q1, q3 = np.percentile(a, [25, 75])  # numpy's linear interpolation = statistics' "inclusive" method
    assert s["median"] == 2.5 and s["iqr"] == pytest.approx(q3 - q1) and (s["min"], s["max"]) == (1.0, 5.0)
    p = paired(a, b)
    assert p["all"] == [0.5, 1.5, 0.5, 1.25] and p["median"] == statistics.median([0.5, 1.5, 0.5, 1.25])
    assert summary([4.0])["iqr"] == 0.0


def _fake_result(speedup, grads, both, amort, step_ratio, mem, volume):
    method = lambda r: {  # noqa: E731
        "probe_overhead": {"grads": {"median": grads}, "grads+activations": {"median": both}},
        "ratio_to_baseline": {"median": r}, "recording": {"bytes_per_module_step": volume}}
    return {
        "svd": [{"d": 384, "r": 8, "speedup": 10.0}, {"d": 768, "r": 8, "speedup": speedup}],
        "shapes": {"minilm": {
            "steps": {"methods": {"lora": method(1.0), "lor2c": method(step_ratio)}},
            "spectral_probe": {m: {"amortized_ratio": {"100": 1.5, "359": amort}} for m in ("lora", "lor2c")},
            "memory": {m: {"ratio": mem, "measure": "rss"} for m in ("lora", "lor2c")},
        }},
    }


def test_goal_verdicts_follow_each_goals_direction():
    cfg = BenchConfig(shapes=("minilm",))
    rows = goals_table(cfg, _fake_result(300.0, 1.03, 1.0501, 1.02, 1.0, 1.021, 1024.0))
    verdict = {(r["goal"], r["method"]): r["met"] for r in rows}
    assert verdict[("factor_qr_speedup", None)] is True  # >= 300, boundary included
    assert verdict[("grad_probe", "lor2c")] is True and verdict[("grad_act_probes", "lor2c")] is False
    assert verdict[("spectral_amortized", "lor2c")] is True  # read at the 359-step default epoch, not the 100-step one
    assert verdict[("lor2c_vs_lora_step", "lor2c")] is True and ("lor2c_vs_lora_step", "lora") not in verdict
    assert verdict[("peak_memory", "lora")] is False and verdict[("recording_volume", "lora")] is True
    rows = goals_table(cfg, _fake_result(299.9, 1.0, 1.0, 1.0, 1.001, 1.0, 1025.0))
    verdict = {(r["goal"], r["method"]): r["met"] for r in rows}
    assert verdict[("factor_qr_speedup", None)] is False and verdict[("lor2c_vs_lora_step", "lor2c")] is False
    assert verdict[("recording_volume", "lor2c")] is False


def test_roberta_base_shape_matches_the_bundled_arch():
    from lor2c_probe.adapters.base import ARCH_SHAPES
    from lor2c_probe.bench.shapes import SHAPES

    c = SHAPES["roberta-base"].config()
    ref = ARCH_SHAPES["roberta-base"]
    assert (c.hidden_size, c.num_hidden_layers, c.model_type) == (ref.hidden_size, ref.num_layers, "roberta")


def test_memory_child_peak_is_its_own_not_the_parents():
    """Linux carries ru_maxrss across exec from the forking parent; the child must read its own high-water mark."""
    from lor2c_probe.bench.memory import _run_child, _status_kib

    ballast = np.ones(60_000_000)  # 480 MB written, so resident in this (parent) process
    parent_rss = _status_kib("VmRSS")
    spec = {"shape": "tiny", "method": "lor2c", "probes": "none", "device": "cpu", "precision": "fp32", "rank": 2,
            "batch_size": 4, "seq_len": 16, "steps": 1, "threads": 1}
    got = _run_child(spec)
    assert ballast[-1] == 1.0
    assert got["rss_base_kib"] <= got["rss_peak_kib"] < parent_rss - 300_000  # a tiny run: far below the parent's RSS
    assert 0 < got["rss_peak_kib"] - got["rss_base_kib"] < 200_000


@pytest.mark.parametrize("method", ["lora", "lor2c"])
def test_llama_shapes_train_as_causal_lms_with_every_probe(tmp_path, method):
    from lor2c_probe.bench.harness import make_bench
    from lor2c_probe.bench.shapes import SHAPES
    from lor2c_probe.record.store import read_table

    c = SHAPES["llama-1b"].config()  # TinyLlama-1.1B: d from hidden_size, v_proj 4 x 64 = 256 wide
    assert (c.hidden_size, c.num_hidden_layers, c.num_key_value_heads, c.model_type) == (2048, 22, 4, "llama")
    bench = make_bench("tiny-llama", method, "all", tmp_path, device=torch.device("cpu"), precision="fp32", rank=2, batch_size=4, seq_len=16)
    assert bench.backbone.causal and torch.equal(bench.batch["labels"], bench.batch["input_ids"])  # loss on every token
    bench.run(2)
    bench.epoch_end()
    bench.trainer.flush()
    loss = read_table(tmp_path, "metrics").query("name == 'loss'").value
    # Random weights on random tokens: the causal loss starts near ln(vocab) = ln(1000) = 6.91.
    assert len(loss) == 2 and loss.iloc[0] == pytest.approx(math.log(1000), abs=0.3)
    want = {"lora.0", "lora.1"} if method == "lora" else {"lor2c.0", "lor2c.1"}
    assert want <= set(read_table(tmp_path, "grads").module)
    assert not read_table(tmp_path, "spectra").empty and not read_table(tmp_path, "activation_grads").empty


def test_memory_only_measures_peak_memory_next_to_the_plan(tmp_path, monkeypatch):
    # The child processes are the smoke test's and test_memory_child_peak_is_its_own_not_the_parents' to check;
    # here fixed readings (KiB) stand in for them, so the JSON's arithmetic can be checked exactly.
    peaks = {"none": 3000, "all": 3060}
    monkeypatch.setattr("lor2c_probe.bench.memory._run_child",
                        lambda spec: {"rss_base_kib": 1000, "rss_peak_kib": peaks[spec["probes"]]})
    out = tmp_path / "mem.json"
    res = runner.invoke(app, ["bench", "--smoke", "--memory-only", "--shapes", "tiny-llama", "--methods", "lor2c", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["svd"] == [] and set(data["shapes"]) == {"tiny-llama"} and set(data["shapes"]["tiny-llama"]) == {"description", "memory"}
    assert [(r["goal"], r["method"]) for r in data["goals"]] == [("peak_memory", "lor2c")]
    mem = data["shapes"]["tiny-llama"]["memory"]["lor2c"]
    assert mem["bytes"] == {"none": [2000 * 1024], "all": [2060 * 1024]} and mem["ratio"] == pytest.approx(1.03)
    assert mem["plan_bytes"] > 0 and mem["plan_over_measured"] == pytest.approx(mem["plan_bytes"] / (2000 * 1024))
    assert "plans" in res.output


def test_durability_measures_the_cost_of_fsync_and_the_lock(tmp_path):
    from lor2c_probe.record import atomic

    out = tmp_path / "d.json"
    res = runner.invoke(app, ["bench", "--smoke", "--durability", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert [r["goal"] for r in data["goals"]] == ["durability"] and data["svd"] == []
    d = data["shapes"]["tiny"]["durability"]
    assert set(d["flush_seconds"]) == {"fsync=True", "fsync=False"} and d["flush_every"] == 5
    assert len(d["direct_step_ratio"]["all"]) == 2 and d["lock_seconds"]["median"] > 0 and d["amortized_ratio"] > 0
    assert d["amortized_ratio"] == pytest.approx(1 + d["flush_extra_seconds"] / (5 * d["step_seconds"]["median"])
                                                 + (d["checkpoint_extra_seconds"] + d["lock_seconds"]["median"]) / (d["epoch_steps"] * d["step_seconds"]["median"]))
    assert atomic.DURABLE is True  # restored after the unsynced variant
    assert_user_error(runner.invoke(app, ["bench", "--smoke", "--durability", "--memory-only", "--out", str(tmp_path / "x.json")]),
                      "pick one")
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "results"}')
    assert_user_error(runner.invoke(app, ["bench", "--smoke", "--out", str(mine), "--overwrite"]), "not a benchmark file that lor2c-probe wrote")
    assert mine.read_text() == '{"my": "results"}'
