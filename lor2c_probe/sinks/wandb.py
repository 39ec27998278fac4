"""Weights & Biases, offline: a run under ``<folder>/wandb/offline-run-*`` that never touches the network
(``wandb sync`` uploads it later, if you want). Scalars are one history row per step; histograms are W&B histograms
over the fixed bins; figures are W&B images. Needs ``wandb`` (``pip install 'lor2c-probe[wandb]'``).

W&B ignores a row logged at a lower step than one it already has, so the sink gathers a flush's scalars, histograms and
images per step and logs them in step order at ``flush``; rows of a step that arrive in a later flush (an epoch's
eval) merge into that step's row, which W&B keeps open until a later step is logged.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lor2c_probe.sinks.base import histogram_groups, missing

_QUIET = dict(mode="offline", console="off", x_disable_stats=True, x_disable_meta=True, x_disable_machine_info=True,
              disable_git=True, save_code=False, disable_code=True, disable_job_creation=True, x_save_requirements=False, silent=True)


class WandbSink:
    name = "wandb"

    def __init__(self, folder: Path, *, run_name: str, config: dict[str, Any], start_step: int = 0, previous: dict[str, Any] | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        # Offline and silent, its caches inside the folder rather than ~/.cache: set for wandb's import and init only,
        # then restored, so your own wandb runs in this process keep their settings.
        env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CACHE_DIR": str(folder / "wandb" / "cache"),
               "WANDB_CONFIG_DIR": str(folder / "wandb" / "config")}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            try:
                import wandb
            except ImportError:
                raise missing("wandb", "wandb") from None
            self.wandb = wandb
            self.folder = folder
            self.run = wandb.init(project="lor2c-probe", dir=str(folder), name=run_name, config=config, reinit="create_new",
                                  settings=wandb.Settings(**_QUIET))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self._rows: dict[int, dict[str, Any]] = {}

    def _add(self, step: int, values: dict[str, Any]) -> None:
        self._rows.setdefault(int(step), {}).update(values)

    def scalars(self, frame: pd.DataFrame) -> None:
        for step, g in frame.groupby("step", sort=True):
            self._add(int(step), dict(zip(g["tag"], g["value"].astype(float))))

    def histograms(self, frame: pd.DataFrame) -> None:
        for tag, step, lo, hi, counts in histogram_groups(frame):
            edges = np.concatenate([[lo[0]], hi])
            self._add(step, {tag: self.wandb.Histogram(np_histogram=(counts.tolist(), edges.tolist()))})

    def image(self, tag: str, png: bytes, step: int) -> None:
        from PIL import Image

        self._add(step, {tag: self.wandb.Image(Image.open(io.BytesIO(png)).convert("RGB"))})

    def flush(self) -> None:
        rows, self._rows = self._rows, {}
        for step in sorted(rows):
            self.run.log(rows[step], step=step)

    def info(self) -> dict[str, Any]:
        return {"dir": str(Path(self.run.dir).parent), "id": self.run.id}

    def close(self, status: str = "completed") -> None:
        self.flush()
        self.run.finish(exit_code=0 if status == "completed" else 1)
