"""Packaging promises: light imports, registered ids, the demo script runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym

ROOT = Path(__file__).resolve().parents[1]


def test_import_does_not_pull_heavy_dependencies():
    code = (
        "import sys, mem1_envs, mem1_envs.qa.env, mem1_envs.protocol, mem1_envs.memory, mem1_envs.rewards;"
        "heavy = [m for m in ('torch', 'transformers', 'selenium', 'stable_baselines3') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_env_id_is_registered():
    import mem1_envs  # noqa: F401

    assert {"MEM1-MultiQA-v0", "MEM1-WebShop-v0", "MEM1-WebShop-Browser-v0"} <= set(gym.registry)


def test_demo_script_runs_and_prints_the_table():
    result = subprocess.run(
        [sys.executable, "scripts/demo.py", "--objectives", "1", "2", "--episodes", "2", "--world", "small"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split(" | ")[:3] == ["objectives", "memory", "EM      "[: len(lines[0].split(" | ")[2])]]
    assert len(lines) == 2 + 4  # header, rule, 2 objectives x 2 memories


def test_env_benchmark_quick_runs():
    result = subprocess.run(
        [sys.executable, "scripts/bench_env.py", "--quick"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith(("1 |", "4 |", "16 |"))]
    assert len(rows) == 6 and all(row.split(" | ")[3] == "1.000" for row in rows)


def test_readme_multiqa_example_runs():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## MEM1-MultiQA-v0 in five lines", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("4.0 [1.0, 1.0, 1.0, 1.0]")
