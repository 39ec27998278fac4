"""Report sections built from recorded tables only. Each builder returns a ``Section``; a section whose
tables are missing carries a ``note`` saying what to record, instead of failing the report."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from lor2c_probe.errors import CannotCompare, StorageError, UserError
from lor2c_probe.record.runs import RecordedRun


@dataclass(frozen=True)
class Fig:
    stem: str  # file name without extension under figures/
    caption: str
    draw: Callable[[], Any]  # -> matplotlib Figure
    plotly: Callable[[], Any] | None = None  # -> plotly Figure, for the interactive report


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame
    caption: str = ""
    data: str | None = None  # also written to data/<data>.parquet when set
    data_frame: pd.DataFrame | None = None  # what data/<data>.parquet holds, when not ``frame`` (e.g. numbers behind formatted cells)


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Any] = field(default_factory=list)  # str (paragraph), Pre, Table, Fig, Details
    note: str | None = None  # set when the section could not be drawn, with the reason


@dataclass(frozen=True)
class Pre:
    text: str


@dataclass(frozen=True)
class Details:
    summary: str
    text: str


@dataclass(frozen=True)
class Options:
    baseline: str | None = None  # a run label or a method/group name; default: lora when present
    stat: str = "mean_abs"
    factor: str = "all"
    k: int = 2


# -- runs and parameters -------------------------------------------------------------------------------------
def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if not isinstance(v, list) else ", ".join(map(str, v))
    return out


def runs_section(runs: list[RecordedRun], opts: Options | None = None) -> Section:
    rows = []
    for r in runs:
        m, cfg = r.manifest, r.manifest.get("config", {})
        t, res = cfg.get("train", {}), m.get("results") or {}
        final, best, head = res.get("final_eval") or {}, res.get("best_eval") or {}, r.headline
        rows.append({
            "run": r.label, "method": r.method, "model": m.get("model", {}).get("source"), "task": m.get("task", {}).get("name"),
            "seed": r.seed, "epochs x steps": f"{t.get('epochs')} x {m.get('schedule', {}).get('steps_per_epoch')}",
            "batch": t.get("batch_size"), "lr": t.get("lr"), "rank": cfg.get("adapter", {}).get("rank"), "policy": cfg.get("policy"),
            "device": f"{m.get('device', {}).get('type')} / {m.get('precision')}", "status": m.get("status"),
            f"final {head}": final.get(head), f"best {head}": best.get(head),
            "wall (s)": res.get("wall_seconds", res.get("wall_seconds_this_session")), "CPU (s)": res.get("cpu_seconds"), "path": str(r.path),
        })
    s = Section("runs", "Runs")
    s.blocks.append(Table(pd.DataFrame(rows), "One row per recorded run; metrics from the manifest's results (final = last epoch's eval)."))
    flat = pd.DataFrame([_flatten(r.manifest.get("config", {})) for r in runs], index=[r.label for r in runs])
    differ = [c for c in flat.columns if flat[c].astype(str).nunique() > 1]
    if len(runs) > 1:
        if differ:
            s.blocks.append(Table(flat[differ].reset_index(names="run"), "Configuration fields that differ between the runs."))
        else:
            s.blocks.append("The runs share every configuration field.")
    for r in runs:
        keep = {k: r.manifest.get(k) for k in ("config", "policy", "model", "task", "schedule", "device", "versions", "recording")}
        s.blocks.append(Details(f"Full configuration of {r.label}", json.dumps(keep, indent=2, default=str)))
    return s


def params_section(runs: list[RecordedRun], opts: Options | None = None) -> Section:
    rows = []
    for r in runs:
        p = r.manifest.get("params", {})
        row = {"run": r.label, "adapter (measured)": p.get("adapter_params"), "adapter (formula)": p.get("adapter_params_formula"),
               "head": p.get("head_params"), "trainable": p.get("trainable_params"), "total": p.get("total_params")}
        if p.get("trainable_params") and p.get("total_params"):
            row["trainable %"] = round(100 * p["trainable_params"] / p["total_params"], 3)
        if r.has("events"):
            row["adapter at the end"] = r.params_end
        rows.append(row)
    return Section("params", "Parameter counts", [Table(pd.DataFrame(rows), "Adapter parameters counted on the live model (measured) and by "
                                                         "the paper's formula; a mismatch would flag a counting error. Merges change the count during training.")])


# -- training and the method comparison ----------------------------------------------------------------------
def training_section(runs: list[RecordedRun], opts: Options | None = None) -> Section:
    from lor2c_probe.plots.report import training_curves_figure, training_curves_plotly

    s = Section("training", "Training and evaluation")
    metrics = {r.label: r.table("metrics") for r in runs if r.has("metrics")}
    heads = {r.headline for r in runs if r.label in metrics}
    if not metrics:
        s.note = "no run has a metrics table (the runs were stopped before their first flush)"
        return s
    head = sorted(h for h in heads if h)[0] if any(heads) else "loss"
    if len(heads) > 1:
        s.blocks.append(f"The runs use different headline metrics ({', '.join(sorted(map(str, heads)))}); the eval panel shows {head}.")
    if head == "accuracy":
        from lor2c_probe.analysis.stats import wilson

        for r in runs:
            n = r.manifest.get("task", {}).get("n_eval")
            if r.label in metrics and n:
                m = metrics[r.label].copy()
                rows = (m.split == "eval") & (m.name == "accuracy")
                m.loc[rows, "ci_low"], m.loc[rows, "ci_high"] = wilson(m.loc[rows, "value"].to_numpy(), int(n))
                metrics[r.label] = m
    s.blocks.append(Fig("training_curves", "Train loss per optimizer step (trailing mean; raw values faint) and the eval metric at each epoch end "
                        "(accuracy: whiskers give each evaluation's 95% Wilson interval on the eval set).",
                        lambda: training_curves_figure(metrics, headline=head), lambda: training_curves_plotly(metrics, headline=head)))
    if head == "accuracy":
        _chance_blocks(s, [r for r in runs if r.label in metrics and r.headline == head])
        _flattening_blocks(s, [r for r in runs if r.label in metrics and r.headline == head])
    return s


def _chance_blocks(s: Section, runs: list[RecordedRun]) -> None:
    """Completed runs with per-example predictions: is the final accuracy above always predicting the majority class?"""
    from lor2c_probe.analysis.chance import above_chance, chance_table
    from lor2c_probe.analysis.comparison import final_predictions

    tests = {r.label: above_chance(final_predictions(r.table("predictions"))) for r in runs
             if r.manifest.get("status") == "completed" and r.has("predictions")}
    table = chance_table(tests)
    if table.empty:
        return
    if doubtful := [tests[name].describe(name) for name in table.run[table.reading != "learned"]]:
        s.blocks.append(" ".join(doubtful))
    s.blocks.append(Table(table, "Did each run learn its task? Final accuracy minus always predicting the eval set's majority class, "
                          "paired on the same examples: 95% interval and exact one-sided McNemar p; learned: p < 0.05; at chance: "
                          "the interval's upper end below 1 point (such runs are left out of the weight and gradient claims); "
                          "otherwise cannot tell. Also the share of examples given the most-predicted class.", data="chance"))


def _flattening_blocks(s: Section, runs: list[RecordedRun]) -> None:
    """Completed runs only: a run stopped part-way has not had its last epoch."""
    from lor2c_probe.analysis import training

    inputs = []
    for r in runs:
        curve = training.eval_curve(r.table("metrics"), "accuracy")
        if r.manifest.get("status") != "completed" or len(curve) < 2:
            continue
        pair = training.last_two_predictions(r.table("predictions")) if r.has("predictions") else None
        inputs.append(training.RunCurve(r.group, r.seed, curve, r.manifest.get("task", {}).get("n_eval"), pair))
    if not inputs:
        return
    table = training.summary(training.per_run(inputs))
    s.blocks.append(Table(table, "Where the eval accuracy flattens (completed runs): the first evaluation from which every later one is within "
                          "one binomial standard error of the final (median and range over seeds), and what the last epoch added, with a 95% "
                          "interval and p (Student t over seeds; one seed: per example, exact McNemar); flattened = the interval within "
                          "+-margin.", data="flattening"))
    s.blocks.append(Pre(training.describe(table)))


def comparison_section(runs: list[RecordedRun], opts: Options | None = None) -> Section:
    from lor2c_probe.plots.report import comparison_figure

    s = Section("comparison", "Method comparison (final eval)")
    pts = []
    for r in runs:
        res = r.manifest.get("results") or {}
        final, head = res.get("final_eval"), r.headline
        if final and head in final:
            pts.append({"group": r.group, "run": r.label, "seed": r.seed, "metric": head, "value": final[head],
                        "adapter_params": r.params_end, "n_eval": r.manifest.get("task", {}).get("n_eval")})
    if len(pts) < 2:
        s.note = "needs at least two runs with a final evaluation"
        return s
    points = pd.DataFrame(pts)
    if points.metric.nunique() > 1:
        s.note = f"the runs report different headline metrics ({', '.join(sorted(points.metric.unique()))}); nothing to compare"
        return s
    metric = points.metric.iloc[0]
    table = (points.groupby("group", sort=False)
             .agg(n=("value", "size"), mean=("value", "mean"), sd=("value", "std"), min=("value", "min"), max=("value", "max"),
                  adapter_params=("adapter_params", "first"), n_eval=("n_eval", "first"))
             .reset_index())
    text = [f"Final eval {metric} per method, mean over {', '.join(sorted(set(map(str, table.n))))} seed(s)."]
    if metric == "accuracy" and table.n_eval.notna().all():
        se = [math.sqrt(m * (1 - m) / n) for m, n in zip(table["mean"], table.n_eval)]
        table["se"] = se
        text.append(f"Sampling error of one accuracy on {int(table.n_eval.iloc[0]):,} eval examples: about {100 * max(se):.1f} points "
                    "(binomial standard error; the figure shades +-2 of them). Differences between methods are judged by the paired tests "
                    "below where a baseline and seeds allow (across seeds, and per example with McNemar on the shared eval set), not by "
                    "comparing these errors.")
    if (table.n == 1).all():
        text.append("One seed per method: the seed-to-seed spread is not measured here.")
    from lor2c_probe.analysis.stats import t_test

    cis = [t_test(points.loc[points.group == g, "value"].to_numpy()) for g in table.group]
    table["ci_low"], table["ci_high"] = [c.low for c in cis], [c.high for c in cis]
    s.blocks.append(" ".join(text))
    s.blocks.append(Table(table, f"Final eval {metric}: mean, sd over seeds (blank with one seed), range, adapter parameters at the end of training "
                          "(after merges), eval size and binomial SE.", data="comparison"))
    _paired_blocks(s, runs, points, metric, opts)
    folded = [{"run": r.label, "fold": est, f"{metric} (training-time paths)": (r.manifest["results"].get("final_eval") or {}).get(metric),
               f"{metric} (folded)": res.get(metric)}
              for r in runs for est, res in ((r.manifest.get("results") or {}).get("folded_eval") or {}).items()]
    if folded:
        f = pd.DataFrame(folded)
        f["difference"] = f[f"{metric} (folded)"] - f[f"{metric} (training-time paths)"]
        s.blocks.append(Table(f, "ResLoRA folded for inference: each estimator's plain-LoRA fold of the extra paths, evaluated on the "
                              "same eval set after training (exact for the block shortcut; approximations otherwise).", data="folded_eval"))
    s.blocks.append(Fig("comparison", f"Final eval {metric} per method: diamonds are means over seeds, dots single seeds; black whiskers: 95% "
                        "Student-t interval over seeds (two or more seeds); shaded: +-2 binomial standard errors of the eval set (accuracy only).",
                        lambda: comparison_figure(table, points, metric=metric)))
    return s


def _paired_blocks(s: Section, runs: list[RecordedRun], points: pd.DataFrame, metric: str, opts: Options | None) -> None:
    """Each method against the baseline: paired by seed, and per example (McNemar) where predictions were recorded."""
    from lor2c_probe.analysis.comparison import final_predictions, paired_by_seed, per_example, summarize

    groups = list(dict.fromkeys(points.group))
    wanted = opts.baseline if opts is not None and opts.baseline else None
    base = next((g for g in groups if g == wanted), None) or next((r.group for r in runs if r.method == (wanted or "lora") and r.group in groups), None)
    if base is None or len(groups) < 2 or points.seed.isna().any():
        return
    paired = paired_by_seed(points[["group", "seed", "value"]], base)
    preds = {(r.group, r.seed): final_predictions(r.table("predictions")) for r in runs if r.has("predictions") and r.group in groups}
    try:
        mcn = per_example(preds, base) if metric == "accuracy" else pd.DataFrame()
    except ValueError as e:
        mcn = pd.DataFrame()
        s.blocks.append(f"No per-example test: {e}.")
    s.blocks.append(Table(paired, f"Each method minus {base}, paired by seed: mean difference of the final {metric} with a 95% Student-t "
                          "interval and p; the exact sign-flip p beside it; verdicts at alpha = 0.05 (parity: the interval within +-margin); "
                          "sd: of the seeds' differences; parity_seeds: where parity cannot be told, the seeds that would decide it "
                          "if that mean and sd stayed as observed (a planning estimate).",
                          data="comparison_paired"))
    if not mcn.empty:
        s.blocks.append(Table(mcn, f"Per example, against {base} at the same seed: exact McNemar on the shared eval set (discordant examples, "
                              "accuracy difference with a paired-proportion 95% interval, Holm across seeds).", data="comparison_mcnemar"))
    elif not preds:
        s.blocks.append("No per-example test: these runs recorded no `predictions` table (runs trained before it existed).")
    s.blocks.append(Pre(summarize(paired, mcn, metric=metric)))


# -- gradient flow -------------------------------------------------------------------------------------------
def _baseline_runs(runs: list[RecordedRun], baseline: str | None) -> list[RecordedRun]:
    if baseline is None:
        hits = [r for r in runs if r.method == "lora"] or [runs[-1]]
    else:
        # a run's label or group names it exactly; a method name may stand for several runs (one per seed)
        hits = [r for r in runs if baseline in (r.label, r.group)] or [r for r in runs if r.method == baseline]
        if not hits:
            raise UserError(f"--baseline {baseline!r} matches no run with gradient tables ({', '.join(r.label for r in runs)})")
    return hits


def gradients_section(runs: list[RecordedRun], opts: Options) -> Section:
    from lor2c_probe.compare.gradients import compare_gradients
    from lor2c_probe.plots.gradients import ratio_surface_figure, ratio_surface_plotly

    s = Section("gradients", "Gradient flow: module gradient ratio (paper Fig. 7)")
    with_grads = [r for r in runs if r.has("grads")]
    if len(with_grads) < 2:
        s.note = (f"needs two runs with a `grads` table (have {len(with_grads)}); record with `lor2c-probe train --probes grads,activations` "
                  "for the method and for the baseline")
        return s
    bases = _baseline_runs(with_grads, opts.baseline)
    try:
        res = compare_gradients(with_grads, bases, opts.stat, opts.factor)  # each numerator over the baseline run of its seed
    except (CannotCompare, StorageError) as e:  # a note, not a failed report
        s.note = f"no numerator run could be compared with the baseline: {e}"
        return s
    surface = res.surface
    den = bases[0].group if len(bases) > 1 else bases[0].label
    seeds = sorted({r.seed for r in with_grads if r.seed is not None})
    from lor2c_probe.compare.chance import failed_runs

    if failed := failed_runs(with_grads):  # drawn as recorded; the paper-claim lines (compare.claims) leave them out
        s.blocks.append("Read with care: " + " ".join(failed.values()) + " The surface and trend tests below include such runs.")
    s.blocks.append(f"For each epoch and layer: the epoch mean of the per-step {opts.stat} gradient of each method's adapter module "
                    f"(factor {opts.factor}), divided by the same for {den}; with several seeds ({len(seeds)} here), the geometric mean over "
                    "seeds of each seed's ratio. Above 1: the method's module receives more gradient. Brackets and hover text give the 95% "
                    "interval (Student t of the seeds' log ratios, exponentiated, so positive; a cell where a seed's ratio is exactly 0 takes the "
                    "arithmetic mean and a linear interval instead; with one seed a block bootstrap over the epoch's steps, which measures within-run noise only).")
    s.blocks.append(Fig("gradient_ratio", f"Gradient ratio surface vs {den} ({opts.stat}, factor {opts.factor}); map cells show the (geometric) mean and its 95% interval.",
                        lambda: ratio_surface_figure(surface, denominator=den, stat=opts.stat),
                        lambda: ratio_surface_plotly(surface, denominator=den, stat=opts.stat)))
    cell = surface.assign(cell=[_with_interval(r, lo, hi) for r, lo, hi in zip(surface.ratio, surface.ci_low, surface.ci_high)])
    wide = cell.pivot_table(index=["method", "layer"], columns="epoch", values="cell", aggfunc="first").reset_index()
    wide.columns = [f"epoch {c}" if isinstance(c, (int,)) or str(c).isdigit() else c for c in wide.columns]
    s.blocks.append(Table(wide, "Ratio per layer (rows) and epoch (columns): the seeds' geometric mean (one seed: its ratio) [95% interval]. "
                          "data/gradient_ratio.parquet holds the "
                          "numbers (one row per method, epoch and layer).", data="gradient_ratio", data_frame=surface))
    if not res.trend.empty:
        cols = ["method", "epoch", "seeds", "rho_seeds", "rho", "rho_low", "rho_high", "p", "p_holm", "verdict", "n", "p_within",
                "rho_without_top", "rho_without_top_low", "rho_without_top_high", "p_without_top_holm", "verdict_without_top"]
        s.blocks.append(Table(res.trend[cols], "Trend test per epoch: each seed's Spearman rho(layer, ratio), their mean with a 95% "
                              "Student-t interval and a one-sample t-test across seeds, Holm across epochs; claim: rho < 0 (the ratio "
                              "rises toward lower layers). p_within: the pooled permutation p with layers shuffled within seeds over n "
                              "(layer, seed) pairs, within-run evidence only. One seed: cannot tell.",
                              data="gradient_trend"))
    if res.act_ratio is not None and not res.act_ratio.empty:
        act = res.act_ratio[res.act_ratio.epoch == res.act_ratio.groupby("method").epoch.transform("max")]
        act = act.assign(cell=[_with_interval(r, lo, hi) for r, lo, hi in zip(act.ratio, act.ci_low, act.ci_high)])
        s.blocks.append(Table(act.pivot_table(index="layer", columns="method", values="cell", aggfunc="first").reset_index(),
                              f"Gradient reaching each block input, ||dL/dh_i||, over {den}'s, each method's last epoch: the seeds' "
                              "geometric mean (one seed: its ratio) [95% interval as for the surface; with one seed a block bootstrap "
                              "over steps, within-run noise only]; layer L is the encoder output.",
                              data="activation_grad_ratio", data_frame=res.act_ratio))
    s.blocks.append(Pre(res.summary))
    return s


def _with_interval(value: float, low: float, high: float) -> str:
    if not math.isfinite(value):
        return ""
    return f"{value:.3g} [{low:.3g}, {high:.3g}]" if math.isfinite(low) and math.isfinite(high) else f"{value:.3g}"


def activations_section(runs: list[RecordedRun], opts: Options | None = None) -> Section:
    from lor2c_probe.analysis.gradients import activation_grad_profile
    from lor2c_probe.plots.gradients import activation_heatmaps_figure
    from lor2c_probe.plots.report import activation_profile_figure

    s = Section("activations", "Activation gradients ||dL/dh_i||")
    profiles = {r.label: activation_grad_profile(r.table("activation_grads")) for r in runs if r.has("activation_grads")}
    if not profiles:
        s.note = "no run has an `activation_grads` table; record with `lor2c-probe train --probes activations`"
        return s
    group = {r.label: r.group for r in runs}
    long = pd.concat([p.assign(method=m, group=group[m]) for m, p in profiles.items()], ignore_index=True)
    s.blocks.append("The gradient of the loss with respect to each block's input hidden state (L2 norm over non-pad tokens, "
                    "summed over micro-batches, epoch mean). Layer L is the encoder output. A residual path that skips blocks "
                    "should keep this from fading toward the bottom layers.")
    s.blocks.append(Fig("activation_profile", "||dL/dh_i|| by block input in the last epoch, log scale.",
                        lambda: activation_profile_figure(long, stat="l2")))
    s.blocks.append(Fig("activation_grads", "||dL/dh_i|| per layer and epoch, one shared log colour scale.",
                        lambda: activation_heatmaps_figure(profiles, stat="l2")))
    last = long[long.epoch == long.groupby("method").epoch.transform("max")].drop(columns="group")
    s.blocks.append(Table(last.pivot(index="layer", columns="method", values="value").reset_index(), "Last epoch, per block input.",
                          data="activation_grads"))
    return s


# -- spectra ----------------------------------------------------------------------------------------------------
def low_rank_section(runs: list[RecordedRun], opts: Options | None = None) -> Section:
    from lor2c_probe.compare.spectrum import compare_spectra
    from lor2c_probe.analysis.low_rank import by_layer
    from lor2c_probe.plots.spectra import low_rank_figure, low_rank_layers_figure, low_rank_plotly, subspace_figure

    s = Section("low_rank", "Low-rank evidence (paper Fig. 2) and subspace similarity")
    eligible = []
    for r in runs:
        if r.has("spectra"):
            sp = r.table("spectra")
            if ((sp.source == "weights") & sp.module.str.startswith("lor2c.")).any():
                eligible.append(r)
    if not eligible:
        s.note = "no run recorded spectra of LoR2C residual maps; record a LoR2C-family or full-rank-residual run with `--probes spectra`"
        return s
    from lor2c_probe.compare.chance import failed_runs

    failed = failed_runs(eligible)
    if failed:
        s.blocks.append("Read with care: " + " ".join(failed.values())
                        + " The spectra below include such runs; the low-rank test leaves them out, and so does phi where every method "
                        "keeps a run that learned.")
    try:
        # runs without structural events first: phi compares the first two, and needs the same layers in both
        eligible.sort(key=lambda r: r.has("events"))
        res = compare_spectra(eligible, "weights", (1, 2, 4, 8, 16), strict_phi=False)
    except (CannotCompare, StorageError) as e:  # a note, not a failed report
        s.note = str(e)
        return s
    title = "Learned residual maps: weight spectra vs a same-norm Gaussian control"
    s.blocks.append("Singular values of each block's learned residual map at the last epoch end, next to a Gaussian control matrix "
                    "of the same shape and Frobenius norm. A rank-r method has at most r non-zero singular values by construction; "
                    "only a full-rank residual tests whether the learned map is low rank.")
    s.blocks.append(Fig("low_rank", "Normalised spectra (left, log scale) and cumulative energy (right); dashed: control; dotted line at 8.",
                        lambda: low_rank_figure(res.curves, title=title), lambda: low_rank_plotly(res.curves, title=title)))
    table = res.summary_table
    bad = table["run"].isin(set(failed))
    lost = set(table["group"]) - set(table.loc[~bad, "group"])  # no run of it learned: all of them, as the low-rank test does
    learned = table[~bad | table["group"].isin(lost)]
    layers = by_layer(learned, 8) if "top8_energy" in learned else pd.DataFrame()
    if not layers.empty:
        s.blocks.append(Fig("low_rank_layers", "Full-rank maps by layer, last epoch: top-8 energy and effective rank, mean over seeds "
                            "with 95% Student-t whiskers across seeds (none with one seed); dashed: the same-norm Gaussian control. "
                            "As in the low-rank test, runs that did not learn their task are left out unless none of their method did.",
                            lambda: low_rank_layers_figure(layers, k=8, title="Where the learned maps concentrate, by layer")))
    t = res.summary_table
    cols = ["run", "epoch", "layer", "n", "top8_energy", "control_top8_energy", "effective_rank", "control_effective_rank", "stable_rank"]
    last = t[t.epoch == t.groupby("run").epoch.transform("max")]
    s.blocks.append(Table(last[[c for c in cols if c in last.columns]], "Last epoch per layer: energy in the top 8 directions, ranks.",
                          data="low_rank_summary"))
    if res.claims is not None and not res.claims.empty:
        s.blocks.append(Table(res.claims, "Per method, last epoch: top-8 energy and ranks with 95% Student-t intervals (unit: the seed, each "
                              "seed's mean over layers; with one seed, the layer), the control's values, and the low-rank test (top-8 energy "
                              "minus the control's, one-sample t-test).", data="low_rank_claims"))
    if res.phi is not None and not res.phi.empty:
        s.blocks.append(Table(res.phi, "phi(8, 8) per seed and layer against its chance distribution (2,000 uniformly random subspaces): "
                              "one-sided p, Holm across the layers of a seed.", data="phi_chance"))
    if res.grid is not None:
        grid = res.grid
        a, b = grid.attrs.get("runs", (eligible[0].label, eligible[1].label))
        d = int(res.summary_table.n.max())
        chance = f"; random subspaces give about j/d = {int(grid.j.max())}/{d} = {grid.j.max() / d:.3f} at i = j = {int(grid.j.max())}"
        s.blocks.append(Fig("subspace", f"phi(i, j) between the top-i left singular vectors of {a} and the top-j of {b}, per layer"
                            f" (1: one subspace contains the other, 0: orthogonal{chance}).",
                            lambda: subspace_figure(grid, title=f"Subspace similarity phi(i, j): {a} (rows) vs {b} (columns)")))
    s.blocks.append(Pre(res.summary))
    return s


def update_spectra_section(runs: list[RecordedRun], opts: Options) -> Section:
    """Every method's update ΔW: effective rank per module against what its spectral route can show."""
    from lor2c_probe.analysis.update_spectra import by_run, per_module, reading
    from lor2c_probe.plots.spectra import update_rank_figure

    s = Section("update_spectra", "Update spectra: how low rank is each method's learned update?")
    frames = []
    for r in runs:
        if r.has("spectra"):
            try:
                rank = int(r.manifest.get("config", {}).get("adapter", {}).get("rank", 8))
                frames.append(per_module(r.table("spectra"), r.label, rank))
            except StorageError as e:
                s.blocks.append(f"{r.label}: {e}")
    frames = [f for f in frames if not f.empty]
    if not frames:
        s.note = "no run recorded weight spectra; record runs with `--probes spectra`"
        return s
    modules = pd.concat(frames, ignore_index=True)
    table = by_run(modules)
    s.blocks.append("Singular values of each adapter's update ΔW to the frozen weight at the last reading, by the cheapest exact "
                    "route (factor QR, Kronecker, or a dense SVD where nothing cheaper is exact). Effective rank = exp of the "
                    "entropy of the energy shares; its cap is the number of values the route yields.")
    s.blocks.append(Fig("update_rank", "Effective rank of every module's update per run (box over modules); black bars: the cap.",
                        lambda: update_rank_figure(modules, title="Effective rank of the learned updates")))
    s.blocks.append(Table(table, "Per run: median and quartiles over modules.", data="update_spectra"))
    s.blocks.append(Pre(reading(table)))
    return s


def histograms_section(runs: list[RecordedRun], opts: Options) -> Section:
    """Gradient and weight histograms, update-to-weight ratios, and each module's ||ΔW|| over the spectral readings."""
    from lor2c_probe.analysis.histograms import last_histograms, reading, update_norms, update_ratio_table
    from lor2c_probe.plots.histograms import histograms_figure, update_norm_figure

    s = Section("histograms", "Histograms, update-to-weight ratios and update norms")
    ratios, norms = {}, {}
    for r in runs:
        try:
            if r.has("updates"):
                ratios[r.label] = update_ratio_table(r.table("updates"))
                last = last_histograms(r.table("histograms")) if r.has("histograms") else last_histograms(pd.DataFrame())
                updates = r.table("updates")
                s.blocks.append(Fig(f"histograms-{r.label}", f"{r.label}: |gradient| and |weight| histograms per layer at the last "
                                    "histogram step, and ||Δθ|| / ||θ|| per step.",
                                    lambda last=last, updates=updates, label=r.label: histograms_figure(last, updates, title=label)))
            if r.has("spectra"):
                n = update_norms(r.table("spectra"))
                if not n.empty:
                    norms[r.label] = n
        except StorageError as e:
            s.blocks.append(f"{r.label}: {e}")
    if not ratios and not norms:
        s.note = "no run recorded the histograms probe or spectra; record runs with `--probes ...,histograms` (or spectra)"
        return s
    if norms:
        s.blocks.append(Fig("update_norms", "||ΔW||_F = sqrt(Σσ²) of every module's update at each spectral reading.",
                            lambda: update_norm_figure(norms, title="Size of each learned update over training")))
    if ratios:
        table = pd.concat([t.assign(run=label) for label, t in ratios.items()], ignore_index=True)
        s.blocks.append(Table(table[["run", "epoch", "layer", "update_ratio_median"]], "Median ||Δθ|| / ||θ|| per epoch and layer.",
                              data="update_ratios"))
        s.blocks.append(Pre(reading(ratios)))
    return s


def sfs_section(runs: list[RecordedRun], opts: Options) -> Section:
    from lor2c_probe.compare.sfs import sfs_trace
    from lor2c_probe.plots.spectra import sfs_traces_figure, sfs_traces_plotly

    s = Section("sfs", "SFS traces across merges and injections")
    eligible = [r for r in runs if r.has("events") and r.has("sfs")]
    if not eligible:
        s.note = ("no run has both structural events and an `sfs` table; train merge-lor2c, inject-lor2c or im-lor2c "
                  "with --merges/--injections and `--probes spectra`")
        return s
    for r in eligible:
        src = "weights" if r.manifest.get("policy", {}).get("name") == "reference" else "features"
        try:
            res = sfs_trace(r.label, r.path, opts.k, src)
        except (CannotCompare, StorageError) as e:  # a note, not a failed report
            s.blocks.append(f"{r.label}: not drawn: {e}")
            continue
        title = f"{r.label}: SFS_{opts.k} ({src}) of each LoR2C module; dashed lines = events"
        traces, events = res.traces, res.raw_events
        s.blocks.append(Fig(f"sfs_traces-{_slug(r.label)}", f"{r.label}: SFS_{opts.k} from {src} per module over optimizer steps; "
                            "red dashed = merge, purple dashed = injection; a merged module's trace continues (dotted) from its parents.",
                            lambda t=traces, e=events, ti=title: sfs_traces_figure(t, e, title=ti),
                            lambda t=traces, e=events, ti=title: sfs_traces_plotly(t, e, title=ti)))
        s.blocks.append(Pre(res.summary))
    return s


def events_section(runs: list[RecordedRun], opts: Options | None = None) -> Section:
    from lor2c_probe.analysis.sfs_traces import parse_events

    s = Section("events", "Structural events")
    rows = []
    for r in runs:
        if not r.has("events"):
            continue
        for e in parse_events(r.table("events")).itertuples(index=False):
            d = e.detail
            rows.append({
                "run": r.label, "step": e.step, "epoch": e.epoch, "event": e.kind, "modules": ", ".join(e.parents), "result": e.result,
                "kept factors of": d.get("kept_factors_of"), "rule": d.get("rule") or d.get("reason"),
                "candidates": "; ".join(f"{','.join(c.get('modules', []))}: " + ", ".join(f"{k.removeprefix('score_')}={v:.3g}" for k, v in c.items()
                                                                                           if k.startswith("score_") and isinstance(v, (int, float)))
                                        for c in d.get("candidates", [])),
                "params before": d.get("params_before"), "params after": d.get("params_after"),
                "loss before (mean)": d.get("loss_before_mean"), "loss after (mean)": d.get("loss_after_mean"),
                "window (steps)": "/".join(map(str, d.get("loss_window_steps") or [])),
            })
    if not rows:
        s.note = "no structural events were recorded (only merge-lor2c, inject-lor2c and im-lor2c runs with --merges/--injections have them)"
        return s
    s.blocks.append(Table(pd.DataFrame(rows), "Every merge and injection with the candidates' scores, the parameter count and the "
                          "training loss in the windows before and after.", data="events"))
    return s


def _slug(text: str) -> str:
    """A file-name stem: runs of other characters become one dash ("im-lor2c M2J2 [reference]" -> "im-lor2c-M2J2-reference")."""
    import re

    return re.sub(r"[^A-Za-z0-9_]+", "-", text).strip("-") or "run"


@dataclass(frozen=True)
class SectionSpec:
    id: str
    build: Callable[[list[RecordedRun], Options], Section]  # an analysis + a plot, returning the section (or its note)


# The report, in order: a new section is an analysis function, a plot function and one line here (or ``register``).
SECTIONS: list[SectionSpec] = [
    SectionSpec("runs", runs_section), SectionSpec("params", params_section), SectionSpec("training", training_section),
    SectionSpec("comparison", comparison_section), SectionSpec("gradients", gradients_section),
    SectionSpec("activations", activations_section), SectionSpec("low_rank", low_rank_section), SectionSpec("sfs", sfs_section),
    SectionSpec("update_spectra", update_spectra_section), SectionSpec("histograms", histograms_section),
    SectionSpec("events", events_section),
]


def register(spec: SectionSpec) -> None:
    """Append a section to every report from now on (a plugin's, a test's)."""
    SECTIONS.append(spec)


def build_sections(runs: list[RecordedRun], opts: Options) -> list[Section]:
    return [spec.build(runs, opts) for spec in SECTIONS]
