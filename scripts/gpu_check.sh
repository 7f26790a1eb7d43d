#!/usr/bin/env bash
# One-command GPU check of the masked-PPO trainer (< 8 minutes on one H100):
#   bash scripts/gpu_check.sh                      # Qwen2.5-0.5B shape, random init, bf16
#   bash scripts/gpu_check.sh --shape qwen2.5-3b   # the 5,000 training tokens/s/GPU bar
# Prints training tokens/s per GPU, forward-only tokens/s, peak GPU memory and the exact-vs-replay
# log-prob error in bf16 and fp32. Without CUDA it runs the CPU fallback with the tiny model.
# Interpreter: $PYTHON, else the python3 on PATH (an activated venv's). Never a guessed
# .venv/bin/python: that may be a venv without torch (the README's core install makes one).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-/tmp/numba_cache}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec timeout 470 "$PYTHON" scripts/gpu_check.py "$@"
