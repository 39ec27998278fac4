"""The numbers a gallery reading quotes, from a study report's data folder, as plain text on stdout.

Usage: python scripts/digest.py runs/gallery/minilm-full/report-partial/data [--epoch N] [--runs STUDY/runs]
Reads the report's Parquet tables (gradient_ratio, gradient_trend, activation_grad_ratio, comparison,
comparison_paired, comparison_mcnemar, events, flattening, chance) and prints, per method, the last (or given) epoch's
cells with intervals, the trend tests, the block-input ratios, accuracies per seed, the paired and per-example tests;
with --runs, each completed run's training time from its manifest.
Pure pandas: nothing is computed here that the report did not compute; this only lays the numbers out for the text.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def _read(data: Path, name: str) -> pd.DataFrame | None:
    f = data / f"{name}.parquet"
    return pd.read_parquet(f) if f.exists() else None


def _cells(df: pd.DataFrame) -> str:
    return ", ".join(f"L{int(r.layer)} {r.ratio:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]" for r in df.itertuples())


def _ratios(df: pd.DataFrame | None, epoch: int | None, title: str) -> list[str]:
    """One line per method: the epoch's (default: last) per-layer ratios, geometric means over seeds with t intervals."""
    if df is None:
        return []
    ep = int(df.epoch.max()) if epoch is None else epoch
    out = [f"# {title}, epoch {ep} (geometric mean over seeds, t interval)"]
    for m, d in df[df.epoch == ep].groupby("method"):
        out.append(f"{m} (n_seeds {int(d.n_seeds.max())}): {_cells(d.sort_values('layer'))}")
    return out


def run_times(runs: Path) -> str:
    from lor2c_probe.record.runs import completed_run_dirs
    from lor2c_probe.record.store import read_manifest

    rows = []
    for d in completed_run_dirs([runs.parent]):
        t = read_manifest(d).get("results") or {}
        rows.append((d.name, float(t.get("wall_seconds") or 0), float(t.get("cpu_seconds") or 0)))
    lines = [f"{n}: {w:,.0f} s wall, {c:,.0f} s CPU" for n, w, c in rows]
    if rows:
        lines.append(f"total {len(rows)} runs: {sum(r[1] for r in rows):,.0f} s wall, {sum(r[2] for r in rows):,.0f} s CPU; "
                     f"wall {min(r[1] for r in rows):,.0f}-{max(r[1] for r in rows):,.0f} s, CPU "
                     f"{min(r[2] for r in rows):,.0f}-{max(r[2] for r in rows):,.0f} s")
    return "# run times\n" + "\n".join(lines)


def digest(data: Path, epoch: int | None = None) -> str:
    out: list[str] = []
    out += _ratios(_read(data, "gradient_ratio"), epoch, "gradient ratio")
    t = _read(data, "gradient_trend")
    if t is not None:
        out.append("# trend: Spearman rho(layer, ratio) per epoch")
        for r in t.itertuples():
            out.append(f"{r.method} epoch {r.epoch}: seeds {r.rho_seeds}; mean {r.rho:.2f} [{r.rho_low:.2f}, {r.rho_high:.2f}] "
                       f"p {r.p:.4f} Holm {r.p_holm:.3f} {r.verdict}; within-run p {r.p_within:.4f}; without top "
                       f"{r.rho_without_top:.2f} [{r.rho_without_top_low:.2f}, {r.rho_without_top_high:.2f}] Holm "
                       f"{r.p_without_top_holm:.3f} {r.verdict_without_top}")
    out += _ratios(_read(data, "activation_grad_ratio"), epoch, "block-input gradient ratio")
    c = _read(data, "comparison")
    if c is not None:
        out.append("# accuracy (final evaluation)")
        for r in c.itertuples():
            out.append(f"{r.group}: n {r.n} mean {100 * r.mean:.2f}% sd {100 * r.sd:.2f} range {100 * r.min:.2f}-"
                       f"{100 * r.max:.2f} params {r.adapter_params:,}")
    ch = _read(data, "chance")
    if ch is not None:
        out.append("per run: " + "; ".join(f"{r.run} {100 * r.accuracy:.2f}% (chance p {r.p:.1e})" for r in ch.itertuples()))
    p = _read(data, "comparison_paired")
    if p is not None:
        out.append("# paired across seeds")
        for r in p.itertuples():
            out.append(f"{r.group} - {r.baseline}: n {r.seeds} {100 * r.difference:+.2f} points [{100 * r.low:+.2f}, "
                       f"{100 * r.high:+.2f}] p {r.p:.3f} sign-flip p {r.p_sign_flip:.3f}; better: {r.better}; parity "
                       f"(±{100 * r.margin:.0f}): {r.parity}")
    mc = _read(data, "comparison_mcnemar")
    if mc is not None:
        out.append("# per example (exact McNemar)")
        for r in mc.itertuples():
            out.append(f"{r.group} - {r.baseline} seed {r.seed}: {r.only_group} vs {r.only_baseline} of {r.examples}; "
                       f"{100 * r.difference:+.2f} [{100 * r.low:+.2f}, {100 * r.high:+.2f}] p {r.p:.3f} Holm "
                       f"{r.p_holm:.3f} {r.verdict}")
    e = _read(data, "events")
    if e is not None:
        out.append("# structural events")
        for run, d in e.groupby("run"):
            out.append(f"{run}: " + "; ".join(f"step {r['step']} {r['event']} {r['modules']} -> {r['result']} "
                                              f"(params {r['params before']:,} -> {r['params after']:,})"
                                              for r in d.to_dict("records")))
    f = _read(data, "flattening")
    if f is not None:
        out.append("# flattening (last epoch's gain)")
        for r in f.itertuples():
            out.append(f"{r.group}: n {r.seeds} flat from step {r.flat_step_min:.0f}-{r.flat_step_max:.0f}; last gain "
                       f"{100 * r.last_gain:+.2f} [{100 * r.low:+.2f}, {100 * r.high:+.2f}] p {r.p:.3f} {r.flattened}")
    return "\n".join(out)


if __name__ == "__main__":
    args = sys.argv[1:]
    ep = int(args[args.index("--epoch") + 1]) if "--epoch" in args else None
    print(digest(Path(args[0]), ep))
    if "--runs" in args:
        print(run_times(Path(args[args.index("--runs") + 1])))
