"""Gradient flow across runs: the ratio surface (paper Fig. 7) and block-input gradients, with their summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from lor2c_probe.errors import CannotCompare
from lor2c_probe.record.runs import RecordedRun


def pick_baseline(runs: list[RecordedRun], baseline: str | None) -> list[RecordedRun]:
    """The denominator run(s): every run whose label or group is ``baseline`` (one per seed), else the group of a run
    named lora, else the last run's group."""
    if baseline is None:
        named = [r for r in runs if "lora" in (r.label, r.group)]
        baseline = named[0].group if named else runs[-1].group
    hits = [r for r in runs if baseline == r.label] or [r for r in runs if baseline == r.group]
    if not hits:
        raise CannotCompare(f"--baseline {baseline!r} is not among the compared runs ({', '.join(r.label for r in runs)})")
    return hits


@dataclass(frozen=True)
class GradientComparison:
    surface: pd.DataFrame  # method, epoch, layer, numerator, denominator, ratio, status, ci_low, ci_high, n_seeds, ci_method
    per_seed: pd.DataFrame  # method, seed, epoch, layer, ratio, ...: each numerator run over the baseline run of its seed
    trend: pd.DataFrame  # method, epoch, rho, p, p_holm, verdict, ...: the trend test per epoch
    profiles: dict[str, pd.DataFrame]  # run label -> ||dL/dh_i|| per epoch and layer
    act_profile: pd.DataFrame | None  # the profiles in one long table (method column)
    act_ratio: pd.DataFrame | None  # ||dL/dh_i|| of each numerator group over the baseline, with intervals like ``surface``
    summary: str
    act_per_seed: pd.DataFrame | None = None  # method, seed, epoch, layer, ratio, ...: each run's ||dL/dh_i|| over its seed's baseline


def _pairs(runs: list[RecordedRun], bases: list[RecordedRun]) -> dict[str, list[tuple[RecordedRun, RecordedRun]]]:
    """Numerator group -> [(numerator run, the baseline run of its seed)]; one baseline run serves every seed."""
    by_seed = {b.seed: b for b in bases}
    if len(by_seed) != len(bases):
        raise CannotCompare(f"the baseline has two runs with the same seed ({', '.join(b.label for b in bases)})")
    out: dict[str, list[tuple[RecordedRun, RecordedRun]]] = {}
    for r in runs:
        if any(r is b for b in bases):
            continue
        base = bases[0] if len(bases) == 1 else by_seed.get(r.seed)
        if base is None:
            raise CannotCompare(f"run {r.label} (seed {r.seed}) has no baseline run with its seed (baseline seeds: "
                                f"{', '.join(str(b.seed) for b in bases)})")
        out.setdefault(r.group, []).append((r, base))
    if not out:
        raise CannotCompare("no run to compare with the baseline")
    return out


def compare_gradients(runs: list[RecordedRun], baseline: RecordedRun | list[RecordedRun], stat: str, factor: str) -> GradientComparison:
    """The gradient-ratio surface of every run group over the baseline (one of ``runs``; one run per seed, or one run
    for all) with 95% intervals, the trend tests, the activation-gradient maps and the summary."""
    from lor2c_probe.analysis.gradient_claims import aggregate_seeds, step_intervals, summarize, trend_tests
    from lor2c_probe.analysis.gradients import (
        AlignmentError,
        activation_grad_profile,
        activation_grad_ratio,
        activation_steps,
        check_alignment,
        gradient_ratio_surface,
        module_layer_steps,
    )

    bases = baseline if isinstance(baseline, list) else [baseline]
    pairs = _pairs(runs, bases)
    den = bases[0].group if len(bases) > 1 else bases[0].label
    layers = {r.label: r.manifest.get("model", {}).get("num_layers") for r in runs}
    surfaces, seeds_long, trends, act_ratios, summaries = [], [], [], [], []
    act_seeds: dict[str, pd.DataFrame] = {}
    for group, members in pairs.items():
        per_seed, act_seed = [], []
        for r, base in members:
            if layers[r.label] != layers[base.label]:
                raise CannotCompare(f"runs {r.path} and {base.path} come from models with {layers[r.label]} and {layers[base.label]} layers")
            try:
                check_alignment(r.table("grads"), base.table("grads"), (r.label, base.label))
                s = gradient_ratio_surface(r.table("grads"), base.table("grads"), stat=stat, factor=factor)
            except AlignmentError as e:
                raise CannotCompare(f"runs {r.path} and {base.path} cannot be compared: {e}") from None
            except ValueError as e:
                raise CannotCompare(f"{r.label} vs {base.label}: {e}") from None
            per_seed.append(s.assign(seed=r.seed if r.seed is not None else 0))
            if r.has("activation_grads") and base.has("activation_grads"):
                act_seed.append(activation_grad_ratio(r.table("activation_grads"), base.table("activation_grads")).assign(seed=r.seed or 0))
        seeded = pd.concat(per_seed, ignore_index=True)
        step_ci = act_ci = None
        if len(members) == 1:  # one seed: the interval is the within-run step noise
            r, base = members[0]
            step_ci = step_intervals(module_layer_steps(r.table("grads"), stat=stat, factor=factor),
                                     module_layer_steps(base.table("grads"), stat=stat, factor=factor))
            if act_seed:
                act_ci = step_intervals(activation_steps(r.table("activation_grads")), activation_steps(base.table("activation_grads")))
        surface = aggregate_seeds(seeded, step_ci)
        trend = trend_tests(seeded)
        surfaces.append(surface.assign(method=group))
        seeds_long.append(seeded.assign(method=group))
        trends.append(trend.assign(method=group))
        summaries.append(summarize(seeded, surface, numerator=group, denominator=den, stat=stat, factor=factor,
                                   paper_claim=is_paper_comparison(members[0][0], members[0][1]), trend=trend,
                                   method=method_of(members[0][0])))
        if act_seed:
            act_seeds[group] = pd.concat(act_seed, ignore_index=True)
            act_ratios.append(aggregate_seeds(act_seeds[group], act_ci).assign(method=group))
    profiles = {r.label: activation_grad_profile(r.table("activation_grads")) for r in runs if r.has("activation_grads")}
    order = ["method", "epoch", "layer"]
    surface = pd.concat(surfaces, ignore_index=True)
    surface = surface[order + [c for c in surface.columns if c not in order]]
    per_seed_all = pd.concat(seeds_long, ignore_index=True)
    per_seed_all = per_seed_all[["method", "seed"] + [c for c in per_seed_all.columns if c not in ("method", "seed")]]
    trend_all = pd.concat(trends, ignore_index=True)
    act_profile = pd.concat([p.assign(method=m) for m, p in profiles.items()], ignore_index=True) if profiles else None
    act_ratio = pd.concat(act_ratios, ignore_index=True) if act_ratios else None
    if act_profile is not None:
        summaries.append(_activation_summary(profiles, act_ratio, den, act_seeds))
    summaries += [w for r in runs if (w := unplaced_warning(r))]
    act_long = pd.concat([a.assign(method=g) for g, a in act_seeds.items()], ignore_index=True) if act_seeds else None
    return GradientComparison(surface, per_seed_all, trend_all, profiles, act_profile, act_ratio, "\n\n".join(summaries), act_long)


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


def _activation_summary(profiles: dict[str, Any], act_ratio: Any, baseline: str, act_seeds: dict[str, pd.DataFrame]) -> str:
    """The block-input gradients: each run's bottom/top ratio, and per numerator group the last epoch's ratio to the
    baseline with intervals, and the test of "more gradient reaches the lowest block input" across seeds."""
    import math

    from lor2c_probe.analysis import stats
    from lor2c_probe.analysis.gradient_claims import _ci, _p, lowest_input_test

    n = lambda x: format(x, ".3g") if math.isfinite(x) else "undefined"  # noqa: E731 - a summary never prints nan
    lines = ["Activation gradients ||dL/dh_i|| (epoch mean, last epoch), bottom block input vs encoder output (layer L):"]
    for method, p in profiles.items():
        last = p[p.epoch == p.epoch.max()].set_index("layer")["value"]
        top, bottom = last.index.max(), last.index.min()
        ratio = last[bottom] / last[top] if last[top] != 0 else float("nan")
        lines.append(f"  {method}: ||dL/dh_{bottom}|| = {n(last[bottom])}, ||dL/dh_{top}|| = {n(last[top])} (bottom/top {n(ratio)})")
    if act_ratio is not None:
        for method, r in act_ratio.groupby("method", sort=False):
            last = r[(r.epoch == r.epoch.max()) & (r.status == "ok")].sort_values("layer")
            if last.empty:
                lines.append(f"  {method} / {baseline}: no block input has a defined ratio in the last epoch")
                continue
            low = last.iloc[0]
            above, below = int((last.ci_low > 1).sum()), int((last.ci_high < 1).sum())
            lines.append(
                f"  {method} / {baseline}, last epoch: ||dL/dh_i|| ratio {n(last.ratio.min())} to {n(last.ratio.max())} across layers; "
                f"at the lowest block input (layer {low.layer}) {n(low.ratio)} {_ci(low.ci_low, low.ci_high)} ({low.ci_method}); "
                f"interval wholly above 1 at {above} and wholly below 1 at {below} of {len(last)} block inputs")
            seeded = act_seeds.get(method)
            res = lowest_input_test(seeded) if seeded is not None else None
            if res is not None:
                _, t = res
                what = f"More gradient reaches the lowest block input under {method} than under {baseline} (last epoch)"
                if t.n >= 2:
                    lines.append(f"  {what}: {stats.verdict(t.p, t.low, t.high, claim_sign=+1)}; ratio {n(math.exp(t.estimate))} "
                                 f"{_ci(math.exp(t.low), math.exp(t.high))} (geometric mean over seeds), one-sample t-test of the log "
                                 f"ratio, p = {_p(t.p)}, n = {t.n} seeds.")
                else:
                    lines.append(f"  {what}: cannot tell at n = 1 seed (the step interval above is within-run noise only).")
    return "\n".join(lines)
