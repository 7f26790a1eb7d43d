"""Smoke run of scripts/bench_trajectory.py --quick (a few seconds): it runs and measures."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_trajectory.py"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_bench_trajectory_quick(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    threads = torch.get_num_threads()
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--quick", "--repeats", "1"])
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert re.search(r"speed-up \d+\.\dx", out), out
    assert re.search(r"^\s+\d+ +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +\d+$", out, re.MULTILINE), out
    diff = float(re.search(r"max \|log-prob diff\| (\S+)", out).group(1))
    assert diff < 1e-4  # the benchmark's packed and per-turn log-probs agree


def test_bench_trajectory_rejects_bad_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--repeats", "0"])
    with pytest.raises(SystemExit):
        runpy.run_path(str(SCRIPT), run_name="__main__")
