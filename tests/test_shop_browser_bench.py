"""Smoke run of the browser benchmark script (tiny budget): it runs, measures and reports parity."""

from __future__ import annotations

import re

import pytest
from script_import import run_script

pytestmark = pytest.mark.browser


def test_bench_browser_quick() -> None:
    result = run_script("bench_browser", "--quick", timeout=300)
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
