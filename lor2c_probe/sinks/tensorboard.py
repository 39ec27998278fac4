"""A recorded run as TensorBoard event files: every scalar table as scalars, the histograms table as histograms.

Tags (step = the run's optimizer step):
- ``metrics/<split>/<name>`` from ``metrics`` (train loss, lr, grad_norm, eval accuracy, ...);
- ``grads/<module>/<stat>`` from ``grads`` (factor ``all``; the global pre-clip norm as ``grads/global/l2``);
- ``activation_grads/layer_<i>/<stat>``; ``sfs/<source>/<module>/k<k>``; ``updates/<module>/<stat>``;
- ``histograms/<source>/<module>``: the fixed log-spaced bins as TensorBoard buckets. Its sum and sum of squares
  are estimated from the bin midpoints (the run store keeps counts, not values); the counts are exact.

Needs the ``tensorboard`` package (``pip install 'lor2c-probe[tensorboard]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lor2c_probe.errors import UserError
from lor2c_probe.record.store import read_table

SCALAR_TABLES = ("metrics", "grads", "activation_grads", "sfs", "updates")


def scalar_rows(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """(tag, step, value) of one recorded table."""
    if df.empty:
        return pd.DataFrame(columns=["tag", "step", "value"])
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
    out = pd.DataFrame({"tag": tags.to_numpy(), "step": df["step"].to_numpy(), "value": df["value"].to_numpy(dtype=float)})
    return out[np.isfinite(out["value"])]


def _writer(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("exporting to TensorBoard needs the tensorboard package: pip install 'lor2c-probe[tensorboard]'") from None
    return SummaryWriter(log_dir=str(out))


def export_run(run: Path, out: Path) -> dict[str, int]:
    """Write ``run``'s tables as TensorBoard events under ``out``; returns how many scalars and histograms were written."""
    writer = _writer(out)
    n_scalars = n_hist = 0
    try:
        for table in SCALAR_TABLES:
            for r in scalar_rows(table, read_table(run, table)).itertuples(index=False):
                writer.add_scalar(r.tag, r.value, global_step=int(r.step))
                n_scalars += 1
        hist = read_table(run, "histograms")
        for (source, module, step), g in hist.groupby(["source", "module", "step"]) if not hist.empty else ():
            g = g.sort_values("bin")
            hi = np.where(np.isfinite(g["hi"]), g["hi"], g["lo"] * 10)  # TensorBoard wants finite bucket limits
            mid = np.where(g["lo"] > 0, np.sqrt(g["lo"] * hi), 0.0)
            counts = g["count"].to_numpy(dtype=float)
            writer.add_histogram_raw(f"histograms/{source}/{module}", min=float(g["lo"].iloc[0]), max=float(hi[-1]),
                                     num=int(counts.sum()), sum=float((mid * counts).sum()), sum_squares=float((mid**2 * counts).sum()),
                                     bucket_limits=hi.tolist(), bucket_counts=counts.tolist(), global_step=int(step))
            n_hist += 1
    finally:
        writer.close()
    return {"scalars": n_scalars, "histograms": n_hist}
