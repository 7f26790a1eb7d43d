"""scripts/gpu_check.sh: its CPU fallback (tiny model, fake engine) runs every step and prints
every figure, with the interpreter it is given, never a ``.venv/bin/python`` it happens to find."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.sh")


def _checkout_with_a_torchless_venv(tmp_path: Path) -> Path:
    """A copy of the script beside a stub ``gpu_check.py`` and a ``.venv/bin/python`` that fails,
    as after the README's first command (a core install, no torch)."""
    scripts = tmp_path / "repo" / "scripts"
    scripts.mkdir(parents=True)
    shutil.copy(SCRIPT, scripts / "gpu_check.sh")
    (scripts / "gpu_check.py").write_text(
        "import sys\nprint('STUB_RAN_WITH', sys.executable, sys.argv[1:])\n"
    )
    venv_python = tmp_path / "repo" / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 3\n")
    venv_python.chmod(venv_python.stat().st_mode | stat.S_IXUSR)
    return scripts / "gpu_check.sh"


def test_gpu_check_uses_the_given_interpreter_not_a_dot_venv(tmp_path):
    script = _checkout_with_a_torchless_venv(tmp_path)
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(script), "--cpu"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"STUB_RAN_WITH {sys.executable} ['--cpu']" in done.stdout


def test_gpu_check_without_python_set_uses_python3_on_path_not_a_dot_venv(tmp_path):
    script = _checkout_with_a_torchless_venv(tmp_path)
    bin_dir = tmp_path / "bin"  # an activated environment: its python3 first on PATH
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(["bash", str(script), "--cpu"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "STUB_RAN_WITH" in done.stdout


@pytest.mark.train
def test_gpu_check_cpu_fallback_prints_every_figure():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    # The interpreter running the tests has torch; pass it, whatever .venv the checkout holds.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", SCRIPT, "--cpu"], capture_output=True, text=True, timeout=400, env=env, check=False
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
