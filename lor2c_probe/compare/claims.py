"""The paper's claims, one line each, from a set of recorded runs: effect, 95% interval, test, n and verdict.

Claims (each only where the runs hold what it needs; otherwise the line says what is missing):
1. Fig. 7, LoR2C's module gradient exceeds LoRA's: geometric-mean ratio over cells, t-test of its log across seeds.
2. Fig. 7, the ratio rises toward lower layers: Spearman ρ(layer, ratio) in the last epoch, within-seed permutation.
3. Gradients reaching lower blocks are larger: ‖dL/dh_0‖ ratio LoR2C / LoRA in the last epoch, t-test of its log.
4. Fig. 2, the learned full-rank residual map is low rank: top-8 energy minus the same-norm control's, t-test; with
   no run that learned its task left, the verdict is "cannot tell".
5. Table I, LoR2C matches LoRA with half the parameters: paired accuracy difference, parity within ±1 point.
6. IMLoR2C keeps LoRA's accuracy with fewer parameters: the same for IMLoR2C.

Claims 1-4 read weights and gradients, so they leave out runs that did not learn their task (diverged, or shown to be
no better than always predicting the majority class, ``analysis.chance``) before choosing their folder: a failed
optimisation says nothing about its method. The line's n names what was left out. Claims 5-6 compare accuracies,
where a failed run counts as what it scored.

Runs may come from several studies (one folder of runs each, e.g. a Fig. 7 study and a Fig. 2 study at one depth).
A claim never pools studies: a seed of one study does not pair with the same seed of another (other schedule, other
probes), so each claim takes the one folder whose runs hold the most seeds with every method it compares, and says
which.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from lor2c_probe.errors import CannotCompare, StorageError
from lor2c_probe.record.runs import RecordedRun


@dataclass(frozen=True)
class Claim:
    claim: str
    effect: str
    interval: str
    test: str
    n: str
    verdict: str
    source: str = ""  # the folder of runs the claim was read from


CLAIMS = (
    "Fig. 7: LoR2C's module gradient exceeds LoRA's",
    "Fig. 7: the ratio rises toward lower layers (last epoch)",
    "Gradients reaching the lowest block input are larger under LoR2C",
    "Fig. 2: the learned full-rank residual map is low rank",
    "Table I: LoR2C matches LoRA at half the parameters",
    "Table I: IMLoR2C keeps LoRA's accuracy with fewer parameters",
)


def _missing(claim: str, what: str) -> Claim:
    return Claim(claim, "", "", "", "", f"not measured ({what})")


def _clean(runs: list[RecordedRun]) -> list[RecordedRun]:
    """Runs of the method itself: not those emulating the reference code's bugs (reference-bugs study)."""
    return [r for r in runs if not r.manifest.get("config", {}).get("structure", {}).get("emulate_reference_bugs")]


def _group(runs: list[RecordedRun], method: str) -> list[RecordedRun]:
    return [r for r in _clean(runs) if r.method == method]


def one_study(runs: list[RecordedRun], methods: tuple[str, ...]) -> tuple[list[RecordedRun], str]:
    """The runs of the one folder (a study's runs/, or wherever the runs sit) whose runs hold the most seeds with
    every one of ``methods``, and that folder's name (its study's, for ``<study>/runs/<run>``). Ties: the first in
    path order. No folder with every method: ([], "")."""
    by_folder: dict[str, list[RecordedRun]] = {}
    for r in runs:
        by_folder.setdefault(str(r.path.resolve().parent), []).append(r)
    best, best_n = None, 0
    for folder in sorted(by_folder):
        rs = by_folder[folder]
        common = set.intersection(*({r.seed for r in rs if r.method == m} for m in methods))
        if len(common) > best_n:
            best, best_n = folder, len(common)
    if best is None:
        return [], ""
    folder = by_folder[best][0].path.resolve().parent
    return by_folder[best], folder.parent.name if folder.name == "runs" else folder.name


def paper_claims(runs: list[RecordedRun]) -> list[Claim]:
    """One ``Claim`` per entry of ``CLAIMS``, from whichever of ``runs`` it needs (grouped by method, paired by seed)."""
    out = _gradient_claims(runs)
    out.append(_low_rank_claim(runs))
    out += [_parity_claim(runs, "lor2c", CLAIMS[4]), _parity_claim(runs, "im-lor2c", CLAIMS[5])]
    return out


def _gradient_claims(runs: list[RecordedRun]) -> list[Claim]:
    from lor2c_probe.analysis import stats
    from lor2c_probe.analysis.gradient_claims import above_one
    from lor2c_probe.compare.gradients import compare_gradients

    cands = [r for r in _clean(runs) if r.has("grads") and r.method in ("lora", "lor2c")]
    runs, source, left_out = _learned_study(cands, ("lora", "lor2c"))
    lora, lor2c = _group(runs, "lora"), _group(runs, "lor2c")
    paired = {r.seed for r in lora} & {r.seed for r in lor2c}  # compare_gradients lets one baseline run serve every seed
    lora, lor2c = [r for r in lora if r.seed in paired], [r for r in lor2c if r.seed in paired]
    if not lora or not lor2c:
        why = f"; {left_out}" if left_out else ""
        return [_missing(c, f"needs lor2c and lora runs with the grads probe at the same seed{why}") for c in CLAIMS[:3]]
    try:
        res = compare_gradients(lor2c + lora, lora, "mean_abs", "all")
    except (CannotCompare, StorageError) as e:
        return [_missing(c, str(e)) for c in CLAIMS[:3]]
    per = res.per_seed[res.per_seed.method == lor2c[0].group]
    a = above_one(per)
    seeds = f"{a.n} seed(s)"
    if a.n >= 2:
        c1 = Claim(CLAIMS[0], f"×{math.exp(a.estimate):.2f}", f"[{math.exp(a.low):.2f}, {math.exp(a.high):.2f}]",
                   f"one-sample t-test of log ratio, p = {a.p:.2g}", seeds, stats.verdict(a.p, a.low, a.high, claim_sign=+1))
    else:
        c1 = Claim(CLAIMS[0], f"×{math.exp(a.estimate):.2f}", "—", "needs 2+ seeds", seeds, "cannot tell")
    t = res.trend[res.trend.method == lor2c[0].group].dropna(subset=["rho"])
    if t.empty:
        c2 = _missing(CLAIMS[1], "no epoch with two layers")
    else:
        last = t.iloc[-1]
        from lor2c_probe.analysis.gradient_claims import _ci, _p

        if last.seeds >= 2:
            c2 = Claim(CLAIMS[1], f"mean per-seed ρ = {last.rho:+.2f} ({last.rho_seeds})", _ci(last.rho_low, last.rho_high, "+.2f"),
                       f"one-sample t-test across seeds, Holm over {len(t)} epochs, p = {_p(last.p_holm)}",
                       f"{int(last.seeds)} seed(s), {int(last.n)} (layer, seed) pairs", str(last.verdict))
        else:
            c2 = Claim(CLAIMS[1], f"ρ = {last.rho:+.2f}", "—", f"needs 2+ seeds (within-run permutation p = {_p(last.p_within)})",
                       "1 seed(s)", "cannot tell")
    c3 = _activation_claim(res, lor2c[0].group)
    return [replace(c, source=source, n=c.n + (f"; {left_out}" if left_out else "")) if c.effect else c for c in (c1, c2, c3)]


def _learned_study(cands: list[RecordedRun], methods: tuple[str, ...]) -> tuple[list[RecordedRun], str, str]:
    """``one_study`` over the runs that learned their task (or cannot be tested), and a note naming the chosen
    folder's runs that did not (all of them when no folder is left)."""
    from lor2c_probe.compare.chance import failed_runs

    failed = failed_runs(cands)
    runs, source = one_study([r for r in cands if r.label not in failed], methods)
    folder = runs[0].path.resolve().parent if runs else None
    left = [r.label for r in cands if r.label in failed and (folder is None or r.path.resolve().parent == folder)]
    return runs, source, f"{len(left)} run(s) that did not learn the task left out ({', '.join(left)})" if left else ""


def _activation_claim(res, group: str) -> Claim:
    from lor2c_probe.analysis import stats
    from lor2c_probe.analysis.gradient_claims import lowest_input_test

    if res.act_per_seed is None:
        return _missing(CLAIMS[2], "needs the activations probe")
    a = res.act_per_seed[res.act_per_seed.method == group]
    found = lowest_input_test(a)
    if found is None:
        return _missing(CLAIMS[2], "no defined ratio in the last epoch")
    layer, t = found
    if t.n >= 2:
        return Claim(CLAIMS[2], f"×{math.exp(t.estimate):.2f} at block input {layer}", f"[{math.exp(t.low):.2f}, {math.exp(t.high):.2f}]",
                     f"one-sample t-test of log ratio, p = {t.p:.2g}", f"{t.n} seeds", stats.verdict(t.p, t.low, t.high, claim_sign=+1))
    agg = res.act_ratio[(res.act_ratio.method == group) & (res.act_ratio.epoch == res.act_ratio.epoch.max()) & (res.act_ratio.layer == layer)]
    lo, hi = (float(agg.ci_low.iloc[0]), float(agg.ci_high.iloc[0])) if len(agg) else (float("nan"), float("nan"))
    return Claim(CLAIMS[2], f"×{math.exp(t.estimate):.2f} at block input {layer}", f"[{lo:.2f}, {hi:.2f}] (within-run steps)",
                 "needs 2+ seeds", "1 seed", "cannot tell")


def _low_rank_claim(runs: list[RecordedRun]) -> Claim:
    from lor2c_probe.analysis.low_rank import claim_table, low_rank_evidence

    cands = [r for r in _clean(runs) if r.has("spectra") and r.method == "full-rank-residual"]
    if not cands:
        return _missing(CLAIMS[3], "needs full-rank-residual runs with the spectra probe")
    # a map from a run that never learned its task is a failed optimisation's, not the method's: left out of the test
    full, source, left_out = _learned_study(cands, ("full-rank-residual",))
    none_learned = not full
    if none_learned:  # their numbers, without a verdict
        full, source = one_study(cands, ("full-rank-residual",))
    frames = []
    for r in full:
        sp = r.table("spectra")
        s, _ = low_rank_evidence(sp[sp.module.str.startswith("lor2c.")], source="weights", ks=(8,))
        frames.append(s.assign(group=r.group, seed=r.seed or 0))
    c = claim_table(pd.concat(frames, ignore_index=True), 8).iloc[0]
    p = f", p = {c.p:.2g}" if np.isfinite(c.p) else ""
    n, verdict = f"{int(c.n)} {c.unit}s", str(c.verdict)
    if none_learned:
        n += f"; no run learned the task ({', '.join(r.label for r in full)}): the numbers are theirs"
        verdict = "cannot tell (no full-rank run learned the task: its map is not a learned one)"
    elif left_out:
        n += f"; {left_out}"
    return Claim(CLAIMS[3], f"top-8 energy {c.top8_energy:.1%} vs control {c.control_top8_energy:.1%} (d = {int(c.directions)})",
                 f"difference [{c.difference_low:+.1%}, {c.difference_high:+.1%}]", f"one-sample t-test across {c.unit}s{p}",
                 n, verdict, source)


def _parity_claim(runs: list[RecordedRun], method: str, claim: str) -> Claim:
    from lor2c_probe.analysis.comparison import paired_by_seed

    runs, source = one_study([r for r in _clean(runs) if r.manifest.get("status") == "completed"], (method, "lora"))
    rows = []
    for r in _group(runs, method) + _group(runs, "lora"):
        final = (r.manifest.get("results") or {}).get("final_eval") or {}
        if "accuracy" in final:
            rows.append({"group": r.method, "seed": r.seed, "value": final["accuracy"], "params": r.params_end})
    v = pd.DataFrame(rows)
    if v.empty or set(v.group) != {method, "lora"}:
        return _missing(claim, f"needs completed {method} and lora runs")
    p = paired_by_seed(v[["group", "seed", "value"]], "lora")
    if p.empty or p.seeds.iloc[0] == 0:
        return _missing(claim, "no seed has both runs")
    r = p.iloc[0]
    share = v[v.group == method].params.mean() / v[v.group == "lora"].params.mean()
    interval = f"[{100 * r.low:+.2f}, {100 * r.high:+.2f}] pt" if np.isfinite(r.low) else "—"
    pv = f", p = {r.p:.2g}" if np.isfinite(r.p) else ""
    verdict = r.parity if np.isfinite(r.low) else "cannot tell"
    need = f"; about {int(r.parity_seeds)} seeds would decide it at the observed mean and SD" if np.isfinite(r.parity_seeds) else ""
    return Claim(claim, f"{100 * r.difference:+.2f} pt accuracy at {share:.0%} of LoRA's parameters", interval,
                 f"paired t across seeds{pv}; parity = interval within ±1 pt{need}", f"{int(r.seeds)} seed(s)", verdict, source)


def claims_markdown(columns: dict[str, list[Claim]]) -> str:
    """A markdown table: one row per claim, one effect / interval / test / n / verdict block per column (e.g. depth)."""
    names = list(columns)
    head = "| claim | " + " | ".join(f"{n}: effect [95% CI] · test · n · **verdict**" for n in names) + " |"
    lines = [head, "|---|" + "---|" * len(names)]
    for i, claim in enumerate(CLAIMS):
        cells = []
        for n in names:
            c = columns[n][i]
            src = f" ({c.source})" if c.source else ""
            cells.append(f"{c.effect} {c.interval} · {c.test} · {c.n}{src} · **{c.verdict}**" if c.effect else f"**{c.verdict}**")
        lines.append(f"| {claim} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
