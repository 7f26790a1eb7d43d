"""scripts/bench.py (``python -m mem1_envs bench``): figures beside baselines, skips, the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from script_import import load_script

from mem1_envs.__main__ import main as cli

ROOT = Path(__file__).resolve().parents[1]
bench = load_script("bench")


def test_quick_rewards_report_and_generated_section(tmp_path, capsys):
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(
        f"# Benchmarks\n\nhand-written\n\n{bench.BEGIN}\nold figures\n{bench.END}\n\n## Later\nkept\n"
    )
    code = cli(
        [
            "bench",
            "--quick",
            "--only",
            "rewards",
            "--no-progress",
            "--out",
            str(tmp_path),
            "--benchmarks-md",
            str(doc),
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    (section,) = report["sections"]
    assert section["name"] == "rewards" and not section["skipped"] and not section["failed"]
    compared = [f for f in section["figures"] if f["baseline"]]
    assert len(compared) == 3 and all(f["speedup"] > 0 and f["n"] == 3 for f in compared)
    for f in compared:  # the ratio is the baseline's median over ours (times)
        base = next(b for b in section["figures"] if b["name"] == f["baseline"])
        assert f["speedup"] == pytest.approx(base["median"] / f["median"])
    machine = report["machine"]
    assert machine["cores"] >= 1 and len(machine["load_before"]) == len(machine["load_after"]) == 3
    assert report["versions"]["numba"] and report["command"].startswith("python -m mem1_envs bench --quick")
    text = doc.read_text()
    assert "old figures" not in text and "hand-written" in text and text.endswith("## Later\nkept\n")
    assert (tmp_path / "bench.md").read_text().strip() in text
    assert "| rewards | EM/F1, batch_em_f1 numba" in capsys.readouterr().out


def test_missing_optional_part_is_one_line_not_a_traceback(monkeypatch, capsys):
    monkeypatch.setattr(bench, "_have", lambda *modules: f"{modules[0]} is not installed")
    sections = bench.run(["masks", "trainer", "browser"], quick=True, progress=False)
    assert [s.skipped for s in sections] == ["torch is not installed"] * 2 + ["selenium is not installed"]
    err = capsys.readouterr().err
    assert "skipped: masks (torch is not installed)" in err and "Traceback" not in err
    report = {
        "command": "c",
        "commit": None,
        "seconds": 0.0,
        "machine": {"cpu": "x", "cores": 1, "load_before": [0, 0, 0], "load_after": [0, 0, 0]},
        "versions": {},
        "sections": [bench._section_dict(s) for s in sections],
        "skipped_parts": ["rank_bm25 peer"],
    }
    table = bench.markdown(report)
    assert "| masks | skipped: torch is not installed |" in table and "Skipped: rank_bm25 peer." in table


def test_a_broken_benchmark_is_reported_and_the_others_run(monkeypatch, capsys):
    def broken(quick, tick):
        raise RuntimeError("disk full")

    def fine(quick, tick):
        tick()
        return [bench.Figure("base", "ms", [2.0, 4.0]), bench.Figure("ours", "ms", [1.0], baseline="base")]

    monkeypatch.setattr(bench, "BENCHMARKS", {"broken": (broken, 1), "fine": (fine, 1)})
    broken_section, fine_section = bench.run(["broken", "fine"], quick=True, progress=False)
    assert broken_section.failed == "RuntimeError: disk full"
    (_, ours) = bench._section_dict(fine_section)["figures"]
    assert ours["speedup"] == 3.0  # median 3 ms against 1 ms
    assert "FAILED: broken (RuntimeError: disk full)" in capsys.readouterr().err


def test_speedup_direction():
    slow, fast = bench.Figure("a", "ms", [10.0]), bench.Figure("b", "ms", [2.0])
    assert bench.speedup(fast, slow) == 5.0
    few, many = (bench.Figure(n, "q/s", [v], higher_is_better=True) for n, v in (("a", 100.0), ("b", 400.0)))
    assert bench.speedup(many, few) == 4.0


def test_replace_section_appends_when_markers_are_missing(tmp_path):
    doc = tmp_path / "B.md"
    doc.write_text("# Benchmarks\n")
    bench.replace_section(doc, "table 1")
    bench.replace_section(doc, "table 2")
    text = doc.read_text()
    assert text.count(bench.BEGIN) == 1 and "table 2" in text and "table 1" not in text


def test_peers_and_env_floor_measure_something():
    figures = bench._search_peers("small", 20, 10, "ours", lambda: None)
    names = [f.name for f in figures]
    assert names[0].startswith("BM25 top-3, bm25s default settings")
    assert all(f.baseline == "ours" and f.median > 0 for f in figures)
    assert len(bench._cartpole(500, 2)) == 2


@pytest.mark.train
@pytest.mark.slow
def test_quick_command_end_to_end(tmp_path):
    """The whole ``--quick`` run: every benchmark measures or says why it was skipped."""
    result = subprocess.run(
        [sys.executable, "-m", "mem1_envs", "bench", "--quick", "--no-progress", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    assert [s["name"] for s in report["sections"]] == list(bench.BENCHMARKS)
    for section in report["sections"]:
        assert section["failed"] is None
        assert section["skipped"] or section["figures"], section
