#!/usr/bin/env bash
# One-command GPU check of the masked-PPO trainer and its vLLM engine (< 8 minutes on one H100,
# installation included):
#   bash scripts/gpu_check.sh                      # Qwen2.5-0.5B shape, random init, bf16
#   bash scripts/gpu_check.sh --shape qwen2.5-3b   # the bars: vLLM >= 10x HF, 5,000 tokens/s/GPU, mismatch
# On a CUDA machine it first installs the GPU dependency set (the `gpu` extra under
# constraints-gpu.txt: vLLM and the torch/transformers it pins) into the running interpreter's
# environment, unless vLLM is already importable or GPU_CHECK_INSTALL=0. Then it prints rollout
# tokens/s through vLLM and HF generate, weight-sync seconds, the engine/trainer log-prob mismatch,
# training tokens/s per GPU, forward-only tokens/s, peak GPU memory, the exact-vs-replay log-prob
# error, and one verdict line per bar. Without CUDA (or with --cpu) it runs the CPU fallback with
# the tiny model and a fake engine with vLLM's API shapes, installing nothing.
# Interpreter: $PYTHON, else the python3 on PATH (an activated venv's). Never the checkout's
# own .venv: that may be a venv without torch (the README's core install makes one).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-/tmp/numba_cache}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
BUDGET=470  # seconds for everything, installation included
cpu=0
for arg in "$@"; do [ "$arg" = "--cpu" ] && cpu=1; done
if [ "$cpu" = 0 ] && command -v nvidia-smi >/dev/null 2>&1 && [ "${GPU_CHECK_INSTALL:-1}" = 1 ]; then
  if ! "$PYTHON" -c "import vllm" >/dev/null 2>&1; then
    echo "installing the GPU set: pip install -c constraints-gpu.txt '.[gpu]'"
    timeout 300 "$PYTHON" -m pip install --quiet -c constraints-gpu.txt '.[gpu]'
  fi
fi
left=$((BUDGET - SECONDS))
if [ "$left" -lt 60 ]; then
  echo "gpu_check: installation took $SECONDS s, too little of the ${BUDGET} s budget is left" >&2
  exit 1
fi
exec timeout "$left" "$PYTHON" scripts/gpu_check.py "$@"
