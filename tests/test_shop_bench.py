"""Smoke test of the shop benchmark script (tiny sizes)."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_shop_quick_runs_and_reports_every_section():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "bench_shop.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "## catalog generation + index" in out and "2,000" in out
    assert "steps/s (median)" in out and "3 items" in out
    assert "speed-up" in out
