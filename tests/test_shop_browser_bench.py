"""Smoke run of the browser benchmark script (tiny budget): it runs, measures and reports parity."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.browser

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)


def test_bench_browser_quick() -> None:
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "bench_browser.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    for mode in ("native", "script"):
        row = re.search(rf"^{mode}\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+([\d.]+)", out, re.MULTILINE)
        assert row is not None, out
        steps, median, p90, resets, reset_median = row.groups()
        assert int(steps) > 0 and int(resets) == 2
        assert 0 < float(median) <= float(p90) and float(reset_median) > 0
        assert f"{mode}: scripted shopper mean reward" in out
        assert re.search(rf"{mode}: .*mismatches 0; browser restarts 0", out), out
