"""Sinks: what the run store records, streamed into the tools researchers already use (TensorBoard, W&B, MLflow).

A sink is one module with a class implementing ``base.Sink`` plus one line here. The same sink serves a live run
(``train --log-to``, ``Recorder(log_to=...)``: ``live.LiveSinks`` forwards every flush) and ``lor2c-probe export``
(``export.export_run``: a finished run's tables). Torch-free; each sink imports its library only when opened.
"""

from __future__ import annotations

SINKS: dict[str, str] = {
    "tensorboard": "lor2c_probe.sinks.tensorboard:TensorBoardSink",
    "wandb": "lor2c_probe.sinks.wandb:WandbSink",
    "mlflow": "lor2c_probe.sinks.mlflow:MlflowSink",
}
