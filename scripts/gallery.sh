#!/usr/bin/env bash
# Regenerate the gallery in figures/: run every study in analyses/ on the embedded default (real MiniLM,
# real Rotten Tomatoes), then copy each study's static report, figures and data into figures/<study>/.
# Runs that already completed with the same configuration in runs/gallery/ are kept (--resume), so
# re-running after a change to the report code only redraws; runs kept in studies/<study>/ (scripts/keep_runs.sh) are
# copied back first. Usage: bash scripts/gallery.sh [study ...]; ONLY=lora,lor2c bash scripts/gallery.sh <one study>
# trains only those run labels of it (lor2c-probe run --only).
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
BIN=${LOR2C_PROBE:-.venv/bin/lor2c-probe}
PY=${PYTHON:-.venv/bin/python}  # for scripts/shrink_pngs.py (Pillow comes with matplotlib)
studies=("$@")
if [ ${#studies[@]} -eq 0 ]; then
  studies=(fig7-gradient-ratio fig2-low-rank sfs-traces table1-methods reference-bugs peft-zoo peft-zoo-lr)
fi
export HF_HUB_OFFLINE=1
for s in "${studies[@]}"; do
  # runs kept in the repository by scripts/keep_runs.sh (a long study built up on other machines) come back first; a
  # local copy that did not finish is moved aside for the kept one
  if [ -d "studies/$s/runs" ]; then
    mkdir -p "runs/gallery/$s/runs"
    for r in "studies/$s/runs"/*/; do
      r=${r%/} name=$(basename "$r")
      [[ "$name" == *.tmp || ! -f "$r/manifest.json" ]] && continue
      here="runs/gallery/$s/runs/$name"
      if [ -e "$here" ] && ! "$PY" -c 'import json, sys; sys.exit(json.load(open(sys.argv[1])).get("status") not in ("completed", "diverged"))' \
          "$here/manifest.json" 2>/dev/null; then
        mv "$here" "$here.replaced-$(date +%Y%m%d-%H%M%S)"
      fi
      [ -e "$here" ] || cp -r "$r" "$here"
    done
    if [ -f "studies/$s/study.json" ] && [ ! -e "runs/gallery/$s/study.json" ]; then cp "studies/$s/study.json" "runs/gallery/$s/"; fi
  fi
  "$BIN" run "analyses/$s.toml" --out "runs/gallery/$s" --resume --static --quiet ${ONLY:+--only "$ONLY"}
  rm -rf "figures/$s"
  mkdir -p "figures/$s/figures"
  # PNGs only: the static report.html embeds every figure as SVG already (the gallery stays under 15 MB)
  cp "runs/gallery/$s/report/report.html" "figures/$s/"
  cp "runs/gallery/$s/report/figures/"*.png "figures/$s/figures/"
  "$PY" scripts/shrink_pngs.py "figures/$s/figures/"*.png || echo "warning: the PNGs of $s were not shrunk" >&2
  [ -d "runs/gallery/$s/report/data" ] && cp -r "runs/gallery/$s/report/data" "figures/$s/"
  cp "runs/gallery/$s/study.json" "figures/$s/study.json"
done
du -sh figures
