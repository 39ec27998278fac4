#!/usr/bin/env bash
# Keep a long study's finished runs in the repository, so the next sitting can go on from them on another machine
# (runs/ is not committed, and a sitting's machine may not be the next one's). For each study named, copies the
# completed and diverged runs of runs/gallery/<study>/runs/ into studies/<study>/: manifest, tables and the last
# epoch's adapter weights (which phi and the update spectra read); no optimizer state, no lock. Also its study.json.
# scripts/gallery.sh copies them back before it resumes the study. Usage: bash scripts/keep_runs.sh minilm-full
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -c "" || { echo "error: $PY does not run; set PYTHON to a Python 3" >&2; exit 1; }
for s in "$@"; do
  src="runs/gallery/$s" dst="studies/$s"
  [ -f "$src/study.json" ] || { echo "error: $src/study.json not found: no study $s in runs/gallery" >&2; exit 1; }
  mkdir -p "$dst/runs"
  kept=0
  for r in "$src"/runs/*/; do
    r=${r%/} name=$(basename "$r")
    [[ "$name" == *.replaced-* || "$name" == *.tmp ]] && continue  # moved aside by a restart, or a copy in progress
    [ -f "$r/manifest.json" ] || continue
    status=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1])).get("status"))' "$r/manifest.json")
    [ "$status" = completed ] || [ "$status" = diverged ] || continue
    tmp="$dst/runs/$name.tmp"
    rm -rf "$tmp" && mkdir -p "$tmp"
    cp -r "$r/manifest.json" "$r/tables" "$tmp/"
    ckpts=("$r"/checkpoints/epoch-*)
    if [ ${#ckpts[@]} -gt 0 ] && [ -f "${ckpts[-1]}/adapter.safetensors" ]; then
      mkdir -p "$tmp/checkpoints/$(basename "${ckpts[-1]}")"
      cp "${ckpts[-1]}/adapter.safetensors" "$tmp/checkpoints/$(basename "${ckpts[-1]}")/"
    fi
    rm -rf "$dst/runs/$name" && mv "$tmp" "$dst/runs/$name"
    kept=$((kept + 1))
  done
  cp "$src/study.json" "$dst/study.json"
  echo "$s: $kept finished run(s) in $dst ($(du -sh "$dst" | cut -f1))"
done
