"""Smoke run of the WebQA browser benchmark (tiny budget): it runs, measures both envs and reports parity."""

from __future__ import annotations

import re

import pytest
from script_import import run_script

pytestmark = pytest.mark.browser


def test_bench_browser_webqa_quick() -> None:
    result = run_script("bench_browser_webqa", "--quick", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    for name, resets in (("webqa-script", 2), ("webqa-native", 2), ("shop-script", 1)):
        row = re.search(rf"^{name}\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+([\d.]+)", out, re.MULTILINE)
        assert row is not None, out
        steps, median, p90, reset_count, reset_median = row.groups()
        assert int(steps) > 0 and int(reset_count) == resets
        assert 0 < float(median) <= float(p90) and float(reset_median) > 0
        parity = re.search(rf"^{name}: .*mismatches (\d+); browser restarts (\d+)", out, re.MULTILINE)
        assert parity is not None, out
        mismatches, restarts = map(int, parity.groups())
        # A browser that timed out under a loaded machine is restarted and its episode truncated
        # (so it differs from the text run by design); without a restart there is no excuse.
        assert mismatches == 0 or restarts > 0, out
