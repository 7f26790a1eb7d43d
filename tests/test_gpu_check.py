"""scripts/gpu_check.sh: its CPU fallback (tiny model) runs every step and prints every figure."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_check_cpu_fallback_prints_every_figure():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "gpu_check.sh"), "--cpu"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    assert "GPU_CHECK_CPU_FALLBACK_OK" in out
    assert re.search(r"training: \d+ tokens/s/CPU process", out)
    assert re.search(r"forward only: \d+ tokens/s/CPU process", out)
    errors = re.search(r"bf16 (\S+), fp32 (\S+)", out)
    assert errors is not None
    assert float(errors.group(2)) < 1e-4  # exact packing in fp32
    assert float(errors.group(1)) < 0.1
