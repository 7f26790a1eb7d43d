"""scripts/gpu_check.sh: its CPU fallback (tiny model, fake engine) runs every step and prints every figure."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_check_cpu_fallback_prints_every_figure():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "gpu_check.sh"), "--cpu"],
        capture_output=True,
        text=True,
        timeout=400,
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
    # The engine path ran through the fake engine: rollout rates, weight syncs, the mismatch.
    rollout = re.search(
        r"fake engine (\d+) tokens/s \((\d+) tokens\), HF generate (\d+) tokens/s \((\d+) tokens\)", out
    )
    assert rollout is not None and int(rollout.group(2)) > 0 and int(rollout.group(4)) > 0
    sync = re.search(r"weight sync: (\S+) s per sync \((\d+) syncs", out)
    assert sync is not None and int(sync.group(2)) >= 1 and float(sync.group(1)) > 0
    mismatch = re.search(r"mismatch \(bf16, generated tokens\): mean (\S+), max (\S+) nats", out)
    assert mismatch is not None and 0 <= float(mismatch.group(1)) <= float(mismatch.group(2)) < 0.5
    assert len(re.findall(r"^bar: .*not judged \(CPU fallback, fake engine\)", out, re.M)) == 3
