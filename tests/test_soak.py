"""A reduced run of ``scripts/soak.py``: flat memory after warm-up, no process, thread or temp leftover.

The full run (10,000 MultiQA, 2,000 text-shop, 300 browser-shop episodes) is in BENCHMARKS.md;
here each kind plays a few hundred episodes (the browser a few) on a 2,000-product shop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_soak(*arguments: str) -> dict[str, Any]:
    command = [sys.executable, os.path.join(ROOT, "scripts", "soak.py"), "--n-products", "2000", "--json"]
    done = subprocess.run([*command, *arguments], capture_output=True, text=True, cwd=ROOT, timeout=600)
    lines = done.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("{"), done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(lines[-1])
    result["returncode"], result["stdout"] = done.returncode, done.stdout
    return result


def check_clean(result: dict[str, Any], episodes: dict[str, int]) -> None:
    report = result["stdout"][-3000:]
    assert result["episodes"] == episodes, report
    assert result["leftover_processes"] == [], report
    assert result["leftover_threads"] == [], report
    assert result["leftover_temp_entries"] == [], report
    assert result["rss_growth_pct"] < 5.0, report
    assert result["fds_end"] == result["fds_warm"], report
    assert all(not failures for failures in result["failures"].values()), report
    assert all(reward > 0.5 for reward in result["mean_reward"].values()), report
    assert result["returncode"] == 0 and "PASS" in result["stdout"], report


@pytest.mark.slow
def test_soak_multiqa_and_text_shop() -> None:
    warmup = ["--warmup-qa", "50", "--warmup-shop", "600"]
    result = run_soak("--browser", "0", "--qa", "150", "--shop", "100", "--rounds", "3", *warmup)
    # episodes count the first (made) episode and the warm-up too
    check_clean(result, {"multiqa": 201, "text-shop": 701})


@pytest.mark.slow
@pytest.mark.browser
def test_soak_browser_shop_leaves_no_chromium_and_no_temp_folder() -> None:
    result = run_soak("--qa", "0", "--shop", "0", "--browser", "8", "--warmup-browser", "2", "--rounds", "2")
    check_clean(result, {"browser-shop": 11})
    assert result["browser_restarts"] == 0
    assert all(point["chromium_pss_kib"] > 0 for point in result["points"])  # a browser was measured
