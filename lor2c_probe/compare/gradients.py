"""Gradient flow across runs: the ratio surface (paper Fig. 7) and block-input gradients, with their summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from lor2c_probe.errors import CannotCompare
from lor2c_probe.record.runs import RecordedRun
from lor2c_probe.record.store import read_table


def pick_baseline(runs: list[RecordedRun], baseline: str | None) -> RecordedRun:
    """The denominator run: ``baseline`` by label, else lora if present, else the last run."""
    labels = [r.label for r in runs]
    if baseline is None:
        baseline = "lora" if "lora" in labels else labels[-1]
    if baseline not in labels:
        raise CannotCompare(f"--baseline {baseline!r} is not among the compared runs ({', '.join(labels)})")
    return runs[labels.index(baseline)]


@dataclass(frozen=True)
class GradientComparison:
    surface: pd.DataFrame  # method, epoch, layer, ratio, ...: each numerator run over the baseline (paper Fig. 7)
    profiles: dict[str, pd.DataFrame]  # run label -> ||dL/dh_i|| per epoch and layer
    act_profile: pd.DataFrame | None  # the profiles in one long table (method column)
    act_ratio: pd.DataFrame | None  # ||dL/dh_i|| of each numerator over the baseline
    summary: str


def compare_gradients(runs: list[RecordedRun], baseline: RecordedRun, stat: str, factor: str) -> GradientComparison:
    """The gradient-ratio surface of every run over ``baseline`` (one of ``runs``) and the activation-gradient maps."""
    from lor2c_probe.analysis.gradients import (
        AlignmentError,
        activation_grad_profile,
        activation_grad_ratio,
        check_alignment,
        gradient_ratio_surface,
        summarize,
    )

    grads = {r.label: read_table(r.path, "grads") for r in runs}
    acts = {r.label: read_table(r.path, "activation_grads") for r in runs}
    layers = {r.label: r.manifest.get("model", {}).get("num_layers") for r in runs}
    surfaces, act_ratios, summaries = [], [], []
    for r in runs:
        if r is baseline:
            continue
        if layers[r.label] != layers[baseline.label]:
            raise CannotCompare(f"runs {r.path} and {baseline.path} come from models with {layers[r.label]} and {layers[baseline.label]} layers")
        try:
            check_alignment(grads[r.label], grads[baseline.label], (r.label, baseline.label))
            s = gradient_ratio_surface(grads[r.label], grads[baseline.label], stat=stat, factor=factor)
        except AlignmentError as e:
            raise CannotCompare(f"runs {r.path} and {baseline.path} cannot be compared: {e}") from None
        except ValueError as e:
            raise CannotCompare(f"{r.label} vs {baseline.label}: {e}") from None
        surfaces.append(s.assign(method=r.label))
        summaries.append(summarize(s, numerator=r.label, denominator=baseline.label, stat=stat, factor=factor,
                                   paper_claim=is_paper_comparison(r, baseline)))
        if not acts[r.label].empty and not acts[baseline.label].empty:
            act_ratios.append(activation_grad_ratio(acts[r.label], acts[baseline.label]).assign(method=r.label))
    profiles = {label: activation_grad_profile(a) for label, a in acts.items() if not a.empty}
    order = ["method", "epoch", "layer"]
    surface = pd.concat(surfaces, ignore_index=True)
    surface = surface[order + [c for c in surface.columns if c not in order]]
    act_profile = pd.concat([p.assign(method=m) for m, p in profiles.items()], ignore_index=True) if profiles else None
    act_ratio = pd.concat(act_ratios, ignore_index=True) if act_ratios else None
    if act_profile is not None:
        summaries.append(_activation_summary(profiles, act_ratio, baseline.label))
    summaries += [w for r in runs if (w := unplaced_warning(r))]
    return GradientComparison(surface, profiles, act_profile, act_ratio, "\n\n".join(summaries))


def method_of(run: RecordedRun) -> str | None:
    return run.manifest.get("method", {}).get("name")


def is_paper_comparison(run: RecordedRun, baseline: RecordedRun) -> bool:
    """The LoR2C paper's Fig. 7 comparison: a LoR2C-family run over a LoRA run."""
    from lor2c_probe.adapters import METHODS

    num, den = method_of(run), method_of(baseline)
    return den == "lora" and num in METHODS and "lor2c" in METHODS[num].kinds


def unplaced_warning(run: RecordedRun) -> str | None:
    """One line when the run's gradient probe recorded tensors it could not place at a layer (none on the surface)."""
    for entry in run.manifest.get("recording", {}).get("callbacks", []):
        if entry.get("name") == "gradients" and entry.get("unplaced"):
            unplaced = entry["unplaced"]
            name, why = next(iter(unplaced.items()))
            return (f"Warning: {run.label}: {len(unplaced)} trainable tensor(s) have no layer and are not on the surface "
                    f"(recorded as unplaced:<name> rows), e.g. {name}: {why}.")
    return None


def _activation_summary(profiles: dict[str, Any], act_ratio: Any, baseline: str) -> str:
    import math

    n = lambda x: format(x, ".3g") if math.isfinite(x) else "undefined"  # noqa: E731 - a summary never prints nan
    lines = ["Activation gradients ||dL/dh_i|| (epoch mean, last epoch), bottom block input vs encoder output (layer L):"]
    for method, p in profiles.items():
        last = p[p.epoch == p.epoch.max()].set_index("layer")["value"]
        top, bottom = last.index.max(), last.index.min()
        ratio = last[bottom] / last[top] if last[top] != 0 else float("nan")
        lines.append(f"  {method}: ||dL/dh_{bottom}|| = {n(last[bottom])}, ||dL/dh_{top}|| = {n(last[top])} (bottom/top {n(ratio)})")
    if act_ratio is not None:
        for method, r in act_ratio.groupby("method"):
            last = r[(r.epoch == r.epoch.max()) & (r.status == "ok")]
            if last.empty:
                lines.append(f"  {method} / {baseline}: no block input has a defined ratio in the last epoch")
                continue
            below = int((last.ratio < 1).sum())
            lines.append(
                f"  {method} / {baseline}: ||dL/dh_i|| ratio {n(last.ratio.min())} to {n(last.ratio.max())} across layers in the last epoch; "
                f"{method} delivers less gradient than {baseline} to {below} of {len(last)} block inputs"
            )
    return "\n".join(lines)
