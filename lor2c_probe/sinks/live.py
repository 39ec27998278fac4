"""Live sinks: at every flush of the run store, the rows just written go to each sink; at each epoch end (the flush
that carries spectra) two figures go as images. A sink that fails is switched off with one notice: training goes on
and the run store stays the record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from lor2c_probe.notices import notice
from lor2c_probe.sinks.base import SCALAR_TABLES, Sink, open_sink, scalar_rows

FOLDERS = {"tensorboard": "tensorboard", "wandb": "", "mlflow": "mlruns"}  # under the run directory (W&B adds its own wandb/)


class LiveSinks:
    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = list(sinks)
        self.status = "completed"  # how the run ended, told to each sink at close (MLflow FAILED, W&B exit code 1)
        self._grad_sums: pd.DataFrame | None = None  # per (epoch, module): sum and count of mean |g|, for the heat map

    def __call__(self, flushed: dict[str, list[dict[str, Any]]]) -> None:
        if not self.sinks:
            return
        try:  # nothing here may stop training: a failure to convert is a failure of every sink
            frames = {t: pd.DataFrame(rows) for t, rows in flushed.items() if rows}
            if "grads" in frames:
                self._add_grads(frames["grads"])
            parts = [scalar_rows(t, frames[t]) for t in SCALAR_TABLES if t in frames]
            scalars = pd.concat(parts, ignore_index=True).sort_values("step", kind="stable", ignore_index=True) if parts else None
            images = self._images(frames.get("spectra"))
        except Exception as e:  # noqa: BLE001
            for sink in list(self.sinks):
                self._drop(sink, e)
            return
        for sink in list(self.sinks):
            try:
                if scalars is not None and len(scalars):
                    sink.scalars(scalars)
                if "histograms" in frames:
                    sink.histograms(frames["histograms"])
                for tag, png, step in images:
                    sink.image(tag, png, step)
                flush = getattr(sink, "flush", None)
                if flush is not None:
                    flush()
            except Exception as e:  # noqa: BLE001 - a sink never stops training
                self._drop(sink, e)

    def _add_grads(self, g: pd.DataFrame) -> None:
        """Keep only what the heat map needs, per (epoch, module), so memory does not grow with the steps."""
        g = g[(g["stat"] == "mean_abs") & (g["factor"] == "all") & (g["module"] != "global")]
        agg = g.groupby(["epoch", "module", "layer"], as_index=False)["value"].agg(total="sum", n="count")
        if self._grad_sums is not None:
            agg = pd.concat([self._grad_sums, agg]).groupby(["epoch", "module", "layer"], as_index=False)[["total", "n"]].sum()
        self._grad_sums = agg

    def _grads(self) -> pd.DataFrame:
        """The kept sums as grads rows (one per epoch and module, its epoch mean), for ``module_layer_values``."""
        a = self._grad_sums
        return pd.DataFrame({"step": 0, "epoch": a["epoch"], "module": a["module"], "layer": a["layer"], "factor": "all",
                             "stat": "mean_abs", "value": a["total"] / a["n"]})

    def _images(self, spectra: pd.DataFrame | None) -> list[tuple[str, bytes, int]]:
        if spectra is None or spectra.empty:
            return []
        from lor2c_probe.analysis.gradients import module_layer_values
        from lor2c_probe.plots.live import layer_epoch_heatmap, png, spectra_snapshot

        step = int(spectra["step"].max())
        out = []
        try:
            w = spectra[(spectra["source"] == "weights") & (spectra["step"] == step)]
            if len(w):
                out.append(("figures/spectra", png(spectra_snapshot(w, title=f"weight spectra, step {step}")), step))
            if self._grad_sums is not None and len(self._grad_sums):
                values = module_layer_values(self._grads())
                if len(values):
                    out.append(("figures/gradient_heatmap", png(layer_epoch_heatmap(
                        values, title="epoch-mean |gradient| per layer", label="mean |g|")), step))
        except Exception as e:  # noqa: BLE001 - a figure that cannot be drawn is skipped, not fatal
            notice(f"live sinks: figures at step {step} skipped ({type(e).__name__}: {e})")
        return out

    def _drop(self, sink: Sink, e: Exception) -> None:
        self.sinks.remove(sink)
        notice(f"live sink {sink.name} failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); it is off for "
               "the rest of this run, and the run store still records everything (lor2c-probe export can write it later)")
        try:
            sink.close("failed")
        except Exception:  # noqa: BLE001
            pass

    def info(self) -> dict[str, Any]:
        out = {}
        for s in self.sinks:
            try:
                out[s.name] = s.info()
            except Exception:  # noqa: BLE001
                out[s.name] = {}
        return out

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close(self.status)
            except Exception as e:  # noqa: BLE001
                notice(f"live sink {sink.name} failed to close ({type(e).__name__}: {e}); the run store is complete")
        self.sinks = []


def attach_sinks(store: Any, names: tuple[str, ...], run_dir: Path, manifest: dict[str, Any], *, start_step: int = 0) -> LiveSinks | None:
    """Open each named sink under ``run_dir`` and register it on ``store``'s flushes. A sink that cannot open (its
    package missing) is reported once and skipped; the manifest lists the sinks that opened under ``sinks``."""
    if not names:
        return None
    opened = []
    cfg = manifest.get("config") or {}
    name = f"{manifest.get('method', {}).get('name', 'run')}:{Path(run_dir).name}"
    previous = manifest.get("sinks") or {}
    for n in names:
        try:
            opened.append(open_sink(n, Path(run_dir) / FOLDERS[n], run_name=name, config=_flat(cfg), start_step=start_step,
                                    previous=previous.get(n)))
        except Exception as e:  # noqa: BLE001 - a sink never stops training
            notice(f"live sink {n} not started ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                   "the run store still records everything")
    live = LiveSinks(opened)
    store.listeners.append(live)
    manifest["sinks"] = live.info()
    return live


def _flat(cfg: dict[str, Any]) -> dict[str, Any]:
    from lor2c_probe.config import flatten

    return {k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v) for k, v in flatten(cfg).items()}
