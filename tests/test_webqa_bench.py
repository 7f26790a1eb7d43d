"""scripts/bench_webqa.py: the synthetic corpus's planted mentions all become links; the quick run reports."""

from __future__ import annotations

from script_import import load_script, run_script

bench = load_script("bench_webqa")


def test_every_planted_mention_becomes_a_link():
    row = bench.bench_wiki(3_000)
    assert row["articles"] == 1_000 and row["links"] == row["planted_mentions"] > 3_000
    assert row["wiki_s"] > 0 and row["peak_rss_mb"] >= row["rss_before_mb"] > 0


def test_bench_webqa_quick_runs_and_reports_every_section():
    result = run_script("bench_webqa", "--quick", "--episodes", "2", timeout=600)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "| MEM1-WebQA-v0 (small world) | 8 |" in out and "MEM1-WebShop-v0 (500 products)" in out
    assert "Wiki from a 5,000-passage synthetic corpus" in out and "peak RSS" in out
    assert "| full | 8 |" in out and "- mem1: N=8/N=2 peak" in out
