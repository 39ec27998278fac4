"""Live sinks (``Recorder(log_to=...)``, ``train --log-to``) and ``export --to``: each sink's output read back with its
own library's reader (TensorBoard's EventAccumulator, W&B's protobuf records, the MLflow client on the file store)
and compared with the run store. Scalars: float32 precision for TensorBoard (its event format), exact for W&B and
MLflow (float64 JSON / file store). A failing sink never stops training."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from lor2c_probe.cli import app
from lor2c_probe.record.store import read_manifest, read_table
from lor2c_probe.sinks.base import SCALAR_TABLES, scalar_rows
from tests.families import tiny_inputs, tiny_model

pytest.importorskip("tensorboard")
pytest.importorskip("wandb")
pytest.importorskip("mlflow")
runner = CliRunner()


def _record(out, log_to, steps=6, **kw):
    from peft import LoraConfig, get_peft_model

    from lor2c_probe.recorder import Recorder

    torch.manual_seed(0)
    model = get_peft_model(tiny_model("bert"), LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["classifier"]))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = {**tiny_inputs(model, batch=4, seq=9), "labels": torch.tensor([0, 1, 0, 1])}
    rec = Recorder(out, model, opt, spectra_batch=batch, flush_every=2, log_to=log_to, **kw)
    for epoch in range(2):
        for _ in range(steps // 2):
            model(**batch).loss.backward()
            rec.after_backward()
            opt.step()
            opt.zero_grad()
        rec.epoch_end({"accuracy": 0.25 * (epoch + 1)})
    rec.close()
    return out


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    return _record(tmp_path_factory.mktemp("live") / "run", ("tensorboard", "wandb", "mlflow"))


def _store_scalars(run) -> pd.DataFrame:
    return pd.concat([scalar_rows(t, read_table(run, t)) for t in SCALAR_TABLES], ignore_index=True)


def test_tensorboard_live_equals_the_run_store(live):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(live / "tensorboard"), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    acc.Reload()
    want = _store_scalars(live)
    assert {"metrics/train/loss", "metrics/eval/accuracy", "grads/global/l2"} <= set(want.tag)
    for tag, g in want.groupby("tag"):
        got = {e.step: e.value for e in acc.Scalars(tag)}
        np.testing.assert_allclose([got[int(s)] for s in g.step], g.value, rtol=1e-6, atol=1e-30, err_msg=tag)
    hist = read_table(live, "histograms")
    (source, module, step), g = next(iter(hist.groupby(["source", "module", "step"])))
    [event] = [e for e in acc.Histograms(f"histograms/{source}/{module}") if e.step == step]
    buckets = np.asarray(event.histogram_value.bucket)
    assert buckets.sum() == g["count"].sum() and sorted(buckets[buckets > 0]) == sorted(g["count"].astype(float))
    images = set(acc.Tags()["images"])
    assert {"figures/spectra", "figures/gradient_heatmap"} <= images
    assert sorted(e.step for e in acc.Images("figures/spectra")) == sorted(read_table(live, "spectra")["step"].unique())


def _wandb_history(folder):
    from tests.sinks.wandb_reader import read_run

    [path] = list(folder.glob("wandb/offline-run-*/run-*.wandb"))
    deadline = time.time() + 20
    while True:  # wandb-core may finish writing just after finish() returned: the file ends with an exit record
        history, config, kinds = read_run(path)
        if "exit" in kinds or time.time() > deadline:
            return history, config


def test_wandb_offline_run_equals_the_run_store(live):
    history, config = _wandb_history(live)
    by_step = {}
    for row in history:
        by_step.setdefault(row["_step"], {}).update(row)
    want = _store_scalars(live)
    for tag, step, value in want.itertuples(index=False):
        assert by_step[int(step)][tag] == pytest.approx(value, rel=1e-12, abs=1e-300), (tag, step)
    hist = read_table(live, "histograms")
    (source, module, step), g = next(iter(hist.groupby(["source", "module", "step"])))
    h = by_step[int(step)][f"histograms/{source}/{module}"]
    assert h["_type"] == "histogram" and sum(h["values"]) == g["count"].sum()
    assert by_step[int(read_table(live, "spectra")["step"].max())]["figures/spectra"]["_type"] == "image-file"
    assert config["method"]["value"] == "custom" if "method" in config else True
    assert read_manifest(live)["sinks"]["wandb"]["id"]


def test_mlflow_store_equals_the_run_store(live):
    from mlflow.tracking import MlflowClient

    info = read_manifest(live)["sinks"]["mlflow"]
    client = MlflowClient(tracking_uri=info["tracking_uri"])
    run = client.get_run(info["run_id"])
    assert run.info.status == "FINISHED"
    want = _store_scalars(live)
    for tag, g in want.groupby("tag"):
        got = {m.step: m.value for m in client.get_metric_history(info["run_id"], tag)}
        assert [got[int(s)] for s in g.step] == pytest.approx(list(g.value), rel=1e-12, abs=1e-300), tag
    arts = [a.path for a in client.list_artifacts(info["run_id"], "histograms")]
    assert arts and all(a.endswith(".csv") for a in arts)
    assert client.list_artifacts(info["run_id"], "images")


def test_a_failing_sink_never_stops_training(tmp_path, capsys, monkeypatch):
    from lor2c_probe.sinks.tensorboard import TensorBoardSink

    def boom(self, frame):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TensorBoardSink, "scalars", boom)
    out = _record(tmp_path / "run", ("tensorboard", "nonexistent-ok") if False else ("tensorboard",))
    err = capsys.readouterr().err
    assert err.count("live sink tensorboard failed") == 1 and "No space left on device" in err
    m = read_manifest(out)
    assert m["status"] == "completed" and len(read_table(out, "grads")) > 0


def test_a_missing_sink_package_is_one_notice(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    out = _record(tmp_path / "run", ("wandb",))
    err = capsys.readouterr().err
    assert "live sink wandb not started" in err and "pip install 'lor2c-probe[wandb]'" in err
    assert read_manifest(out)["status"] == "completed"


@pytest.mark.parametrize("to", ["wandb", "mlflow"])
def test_export_after_the_fact_writes_the_same_scalars(live, tmp_path, to):
    res = runner.invoke(app, ["export", str(live), "--to", to, "--out", str(tmp_path / to)])
    assert res.exit_code == 0, res.output
    want = _store_scalars(live)
    if to == "wandb":
        history, _ = _wandb_history(tmp_path / to)
        got = {(t, r["_step"]): v for r in history for t, v in r.items() if not t.startswith("_")}
    else:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=(tmp_path / to).resolve().as_uri())
        [run] = client.search_runs([client.get_experiment_by_name("lor2c-probe").experiment_id])
        got = {(t, m.step): m.value for t in want.tag.unique() for m in client.get_metric_history(run.info.run_id, t)}
    for tag, step, value in want.itertuples(index=False):
        assert got[(tag, int(step))] == pytest.approx(value, rel=1e-12, abs=1e-300), (tag, step)


def test_train_log_to_streams_live_and_refuses_an_unknown_sink(tiny_models, tiny_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    base = ["train", "--model", str(tiny_models["bert"]), "--task", "custom", "--train-file", str(tiny_data["train"]),
            "--eval-file", str(tiny_data["eval"]), "--epochs", "1", "--steps-per-epoch", "4", "--batch-size", "8", "--rank", "2",
            "--device", "cpu", "--no-report"]
    res = runner.invoke(app, [*base, "--log-to", "neptune", "--out", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "unknown --log-to sink 'neptune'" in res.output and not (tmp_path / "bad").exists()
    out = tmp_path / "run"
    res = runner.invoke(app, [*base, "--log-to", "tensorboard", "--out", str(out)])
    assert res.exit_code == 0, res.output
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    want = _store_scalars(out)
    for tag, g in want.groupby("tag"):
        got = {e.step: e.value for e in acc.Scalars(tag)}
        np.testing.assert_allclose([got[int(s)] for s in g.step], g.value, rtol=1e-6, atol=1e-30, err_msg=tag)
    assert read_manifest(out)["config"]["probes"]["log_to"] == ["tensorboard"]
