"""The gallery's verdict table: each paper claim at each depth, from study folders, as markdown on stdout.

Usage: python scripts/verdicts.py "depth 6=runs/gallery/minilm-full" "depth 12=runs/gallery/fig7-depth12,runs/gallery/fig2-depth12"
Only completed runs count. A column lists the study folders of one depth; each claim reads the one folder with the most
seeds holding every method it compares (never pooling two studies) and names it. Runs are grouped by method and paired
by seed. Each claim states its effect, 95% interval, test, n and verdict (lor2c_probe.compare.claims).
"""

from __future__ import annotations

import sys
from pathlib import Path

from lor2c_probe.compare.claims import claims_markdown, paper_claims
from lor2c_probe.record.runs import completed_run_dirs, load_runs


def main(args: list[str]) -> None:
    columns, counts = {}, {}
    for arg in args:
        name, _, paths = arg.partition("=")
        runs = completed_run_dirs([Path(p) for p in paths.split(",") if p])
        counts[name] = len(runs)
        columns[name] = paper_claims(load_runs(runs)) if runs else paper_claims([])
    print(claims_markdown(columns))
    print()
    print("Completed runs per column: " + "; ".join(f"{n}: {c}" for n, c in counts.items()) + ".")


if __name__ == "__main__":
    main(sys.argv[1:])
