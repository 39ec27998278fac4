"""TensorBoard event files: scalars, the histograms table as TensorBoard histograms, figures as images.

Histogram sums and sums of squares are estimated from the bin midpoints (the run store keeps counts, not values);
the counts are exact. Needs the ``tensorboard`` package (``pip install 'lor2c-probe[tensorboard]'``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lor2c_probe.sinks.base import histogram_groups, missing


class TensorBoardSink:
    name = "tensorboard"

    def __init__(self, folder: Path, *, run_name: str, config: dict[str, Any], start_step: int = 0, previous: dict[str, Any] | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise missing("tensorboard", "tensorboard") from None
        self.folder = folder
        # A resumed run: TensorBoard drops the earlier session's events after start_step (they were superseded).
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=start_step + 1 if start_step else None)
        if not start_step and config:
            self.writer.add_text("config", "```\n" + "\n".join(f"{k} = {v}" for k, v in sorted(config.items())) + "\n```", 0)

    def scalars(self, frame: pd.DataFrame) -> None:
        """One event per step holding all of that step's values (15x cheaper than an ``add_scalar`` per value, which
        builds and queues an event each: the difference between 1% and 9% of a MiniLM step at the default flush)."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        writer = self.writer._get_file_writer()
        for step, g in frame.groupby("step", sort=True):
            values = [Summary.Value(tag=t, simple_value=float(v)) for t, v in zip(g["tag"], g["value"])]
            writer.add_summary(Summary(value=values), int(step))

    def histograms(self, frame: pd.DataFrame) -> None:
        for tag, step, lo, hi, counts in histogram_groups(frame):
            mid = np.where(lo > 0, np.sqrt(np.maximum(lo, 1e-300) * hi), 0.0)
            self.writer.add_histogram_raw(tag, min=float(lo[0]), max=float(hi[-1]), num=int(counts.sum()), sum=float((mid * counts).sum()),
                                          sum_squares=float((mid**2 * counts).sum()), bucket_limits=hi.tolist(),
                                          bucket_counts=counts.tolist(), global_step=step)

    def image(self, tag: str, png: bytes, step: int) -> None:
        from PIL import Image

        img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        self.writer.add_image(tag, img, global_step=step, dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def info(self) -> dict[str, Any]:
        return {"logdir": str(self.folder)}

    def close(self, status: str = "completed") -> None:
        self.writer.close()
