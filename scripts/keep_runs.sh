#!/usr/bin/env bash
# Keep a long study's finished runs in the repository, so the next sitting can go on from them on another machine
# (runs/ is not committed, and a sitting's machine may not be the next one's). For each study named, copies the
# completed runs of runs/gallery/<study>/runs/ (manifest and tables; no checkpoints, no lock) and its study.json
# into studies/<study>/. scripts/gallery.sh copies them back before it resumes the study.
# Usage: bash scripts/keep_runs.sh minilm-full
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
for s in "$@"; do
  src="runs/gallery/$s" dst="studies/$s"
  [ -f "$src/study.json" ] || { echo "error: $src/study.json not found: no study $s in runs/gallery" >&2; exit 1; }
  mkdir -p "$dst/runs"
  kept=0
  for r in "$src"/runs/*/; do
    name=$(basename "$r")
    [[ "$name" == *.replaced-* ]] && continue  # moved aside by a restart: not part of the study
    status=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1])).get("status"))' "$r/manifest.json" 2>/dev/null || echo none)
    [ "$status" = completed ] || continue
    rm -rf "$dst/runs/$name.tmp" && cp -r "$r" "$dst/runs/$name.tmp"
    rm -rf "$dst/runs/$name.tmp/checkpoints" "$dst/runs/$name.tmp/.lock"
    rm -rf "$dst/runs/$name" && mv "$dst/runs/$name.tmp" "$dst/runs/$name"
    kept=$((kept + 1))
  done
  cp "$src/study.json" "$dst/study.json"
  echo "$s: $kept completed run(s) in $dst ($(du -sh "$dst" | cut -f1))"
done
