"""Smoke test of the shop benchmark script (tiny sizes)."""

from __future__ import annotations

from script_import import run_script


def test_bench_shop_quick_runs_and_reports_every_section():
    result = run_script("bench_shop", "--quick", timeout=600)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "## catalog generation + index" in out and "2,000" in out
    assert "steps/s (median)" in out and "3 items" in out
    assert "speed-up" in out
