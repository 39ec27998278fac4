"""MLflow, to a local file store under ``<folder>`` (``mlflow ui --backend-store-uri file://<folder>``): scalars as
metrics at their step, figures as images at their step, each flush's histogram rows as a CSV artifact
(``histograms/step-<S>.csv``: MLflow has no histogram type), the run configuration as params.
Needs ``mlflow-skinny`` (``pip install 'lor2c-probe[mlflow]'``).

MLflow 3 keeps the file store in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE``, which this sink sets: it needs
no database and no server. Metric keys allow ``[A-Za-z0-9_-. /:]`` on Linux; any other character becomes ``_``.
"""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lor2c_probe.sinks.base import missing

_BAD = re.compile(r"[^A-Za-z0-9_\-. /:]")
BATCH = 1000  # MLflow's limit of metrics per log_batch


def metric_key(tag: str) -> str:
    return _BAD.sub("_", tag)


class MlflowSink:
    name = "mlflow"

    def __init__(self, folder: Path, *, run_name: str, config: dict[str, Any], start_step: int = 0, previous: dict[str, Any] | None = None) -> None:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        try:
            from mlflow.entities import Metric, Param
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise missing("mlflow-skinny", "mlflow") from None
        self.Metric = Metric
        folder.mkdir(parents=True, exist_ok=True)
        self.uri = folder.resolve().as_uri()
        self.client = MlflowClient(tracking_uri=self.uri)
        exp = self.client.get_experiment_by_name("lor2c-probe")
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment("lor2c-probe")
        run_id = (previous or {}).get("run_id")
        if run_id and start_step:  # a resumed run continues its MLflow run (params are set once)
            self.client.update_run(run_id, status="RUNNING")
        else:
            run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id
            params = [Param(k[:250], str(v)[:6000]) for k, v in sorted(config.items())]
            for i in range(0, len(params), 100):
                self.client.log_batch(run_id, params=params[i:i + 100])
        self.run_id = run_id

    def scalars(self, frame: pd.DataFrame) -> None:
        now = int(time.time() * 1000)
        metrics = [self.Metric(metric_key(t), float(v), now, int(s)) for t, s, v in zip(frame["tag"], frame["step"], frame["value"])]
        for i in range(0, len(metrics), BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + BATCH])

    def histograms(self, frame: pd.DataFrame) -> None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"step-{int(frame['step'].max()):06d}.csv"
            frame.to_csv(path, index=False)
            self.client.log_artifact(self.run_id, str(path), artifact_path="histograms")

    def image(self, tag: str, png: bytes, step: int) -> None:
        from PIL import Image

        img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        self.client.log_image(self.run_id, img, key=re.sub(r"[^A-Za-z0-9_\-./ ]", "_", tag), step=int(step))

    def info(self) -> dict[str, Any]:
        return {"tracking_uri": self.uri, "run_id": self.run_id}

    def close(self, status: str = "completed") -> None:
        self.client.set_terminated(self.run_id, status={"completed": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED"))
