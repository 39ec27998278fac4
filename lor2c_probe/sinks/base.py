"""The sink interface, and the one conversion of run-store rows into what sinks write (tags, steps, values)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from lor2c_probe.errors import UserError

SCALAR_TABLES = ("metrics", "grads", "activation_grads", "sfs", "updates")


class Sink(Protocol):
    name: str

    def scalars(self, frame: pd.DataFrame) -> None:
        """Columns tag, step, value (finite values only), sorted by step."""

    def histograms(self, frame: pd.DataFrame) -> None:
        """Rows of the ``histograms`` table."""

    def image(self, tag: str, png: bytes, step: int) -> None: ...

    def info(self) -> dict[str, Any]:
        """Where it wrote (recorded in the run's manifest under ``sinks``)."""

    def close(self, status: str = "completed") -> None:
        """``status``: how the run ended (completed, failed, interrupted, diverged)."""


def open_sink(name: str, folder: Path, *, run_name: str, config: dict[str, Any], start_step: int = 0,
              previous: dict[str, Any] | None = None) -> Sink:
    """The sink ``name`` (see ``sinks.SINKS``) writing under ``folder``; a missing package is a one-line UserError.
    ``start_step`` > 0: a resumed run (rows after it were superseded); ``previous``: the sink's ``info()`` then."""
    from lor2c_probe.sinks import SINKS

    if name not in SINKS:
        raise UserError(f"unknown sink {name!r}; choose from: {', '.join(SINKS)}")
    module, cls = SINKS[name].split(":")
    return getattr(importlib.import_module(module), cls)(Path(folder), run_name=run_name, config=config, start_step=start_step,
                                                         previous=previous or {})


def missing(package: str, sink: str) -> UserError:
    return UserError(f"the {sink} sink needs the {package} package: pip install 'lor2c-probe[{sink}]'")


def scalar_rows(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """(tag, step, value) of one recorded table. Tags:

    - ``metrics/<split>/<name>`` (train loss, lr, grad_norm, eval accuracy, ...);
    - ``grads/<module>/<stat>`` (factor ``all``; the global pre-clip norm as ``grads/global/l2``);
    - ``activation_grads/layer_<i>/<stat>``; ``sfs/<source>/<module>/k<k>``; ``updates/<module>/<stat>``.
    """
    if df.empty:
        return pd.DataFrame({"tag": pd.Series(dtype=str), "step": pd.Series(dtype=int), "value": pd.Series(dtype=float)})
    if table == "metrics":
        tags = "metrics/" + df["split"] + "/" + df["name"]
    elif table == "grads":
        df = df[df["factor"] == "all"]
        tags = "grads/" + df["module"] + "/" + df["stat"]
    elif table == "activation_grads":
        tags = "activation_grads/layer_" + df["layer"].astype(str) + "/" + df["stat"]
    elif table == "sfs":
        tags = "sfs/" + df["source"] + "/" + df["module"] + "/k" + df["k"].astype(str)
    elif table == "updates":
        tags = "updates/" + df["module"] + "/" + df["stat"]
    else:
        raise ValueError(f"no scalar tags for table {table!r}")
    out = pd.DataFrame({"tag": tags.to_numpy(), "step": df["step"].to_numpy(dtype=np.int64), "value": df["value"].to_numpy(dtype=float)})
    return out[np.isfinite(out["value"])].sort_values("step", kind="stable", ignore_index=True)


def histogram_groups(hist: pd.DataFrame):
    """Per (source, module, step): (tag, step, lo, hi, counts) over every bin from the first to the last non-empty one
    (empty bins between them included, so each bucket spans exactly its bin). TensorBoard and W&B want finite edges:
    the overflow bin (|x| >= 100) is closed at 10x its lower edge."""
    from lor2c_probe.analysis.histograms import N_BINS, bin_bounds

    if hist.empty:
        return
    lo_all, hi_all = bin_bounds()
    hi_all = np.where(np.isfinite(hi_all), hi_all, lo_all * 10)
    for (source, module, step), g in hist.groupby(["source", "module", "step"]):
        counts = np.zeros(N_BINS)
        np.add.at(counts, g["bin"].to_numpy(dtype=int), g["count"].to_numpy(dtype=float))
        first, last = int(g["bin"].min()), int(g["bin"].max())
        yield f"histograms/{source}/{module}", int(step), lo_all[first:last + 1], hi_all[first:last + 1], counts[first:last + 1]
