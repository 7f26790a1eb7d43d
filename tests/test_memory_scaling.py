"""scripts/memory_scaling.py: the MEM1 effect with the scripted agent, outputs, policy arguments."""

from __future__ import annotations

import json

import pytest
from script_import import load_script

from mem1_envs.__main__ import main as cli
from mem1_envs.memory import POLICIES, make_policy

scaling = load_script("memory_scaling")
SMALL_QA = scaling.Task(
    "multiqa", "MEM1-MultiQA-v0", "num_objectives", (2, 16), {"world": "small", "split": "test"}
)


@pytest.fixture(scope="module")
def qa_rows():
    return scaling.sweep([SMALL_QA], ["mem1", "full"], episodes=3, progress=False)


def test_mem1_peak_stays_flat_while_full_history_grows(qa_rows):
    """MEM1's claim on our envs: from N=2 to N=16 the context beyond the prompt grows at most 2x
    under mem1 (MEM1 reports 1.63x) and at least 5x under full; at N=16 full needs >= 3.7x the
    peak tokens of mem1 (MEM1 against Qwen2.5-14B-Instruct)."""
    ratios = scaling.growth(qa_rows, "multiqa", "scripted", 2, 16)
    assert ratios["mem1: beyond-prompt peak x16/x2"] <= 2.0
    assert ratios["full: beyond-prompt peak x16/x2"] >= 5.0
    assert ratios["full/mem1: peak at 16"] >= 3.7
    for row in qa_rows:  # the same answers either way: only the memory differs
        assert row["metrics"]["em_per_objective"]["mean"] == 1.0
        assert row["metrics"]["dependency"]["mean"] > 0


def test_rows_carry_every_figure_with_its_spread(qa_rows):
    row = qa_rows[0]
    assert (row["size"], row["policy"], row["episodes"], row["seeds"]) == (2, "mem1", 3, [0, 2])
    metrics = row["metrics"]
    for key in (
        "em",
        "f1",
        "turns",
        "peak_context_tokens",
        "peak_beyond_prompt",
        "mean_context_tokens",
        "seconds",
    ):
        assert set(metrics[key]) == {"mean", "se", "min", "max"}
        assert metrics[key]["min"] <= metrics[key]["mean"] <= metrics[key]["max"]
    assert metrics["em"]["mean"] == 2 * metrics["em_per_objective"]["mean"]
    assert (
        metrics["prompt_tokens"]["mean"]
        < metrics["mean_context_tokens"]["mean"]
        < metrics["peak_context_tokens"]["mean"]
    )
    table = scaling.markdown(qa_rows)
    assert table.count("\n") == 1 + len(qa_rows) and "| multiqa | 16 | scripted | full | 3 |" in table


def test_policies_by_name_or_object():
    assert tuple(scaling.policy_kwargs(name)["memory"] for name in POLICIES) == tuple(POLICIES)
    kwargs = scaling.policy_kwargs(make_policy("window", window=2))
    assert (kwargs["memory"], kwargs["window"]) == ("window", 2)
    assert scaling.policy_kwargs(make_policy("mem1", max_tokens=300))["max_context_tokens"] == 300
    rows = scaling.sweep(
        [scaling.Task("multiqa", "MEM1-MultiQA-v0", "num_objectives", (2,), {"world": "small"})],
        [make_policy("window", window=1), make_policy("mem1")],
        episodes=2,
        progress=False,
    )
    # window=1 keeps the last turn, as mem1 does (no budget hit here): the same contexts.
    assert [r["policy"] for r in rows] == ["window(window=1)", "mem1"]
    assert rows[0]["metrics"]["peak_context_tokens"] == rows[1]["metrics"]["peak_context_tokens"]
    with pytest.raises(ValueError, match="'recent'"):
        scaling.policy_kwargs("recent")
    with pytest.raises(TypeError, match="policy must be"):
        scaling.policy_kwargs(3)
    with pytest.raises(ValueError, match="episodes must be >= 1, got 0"):
        scaling.sweep([SMALL_QA], episodes=0)


def test_cli_quick_run_writes_table_and_json(tmp_path, capsys):
    assert cli(["scaling", "--quick", "--task", "multiqa", "--no-plot", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "scaling.json").read_text())
    assert [(r["size"], r["policy"]) for r in report["results"]] == [
        (n, p) for n in (1, 2, 4) for p in POLICIES
    ]
    assert report["machine"]["cores"] >= 1 and len(report["load_average_after"]) == 3
    assert "mem1: beyond-prompt peak x4/x2" in report["growth"]["multiqa/scripted"]
    assert (tmp_path / "scaling.md").read_text().startswith("| task | N |")
    assert "wrote" in capsys.readouterr().out


def test_plots_are_written(tmp_path, qa_rows):
    pytest.importorskip("matplotlib")
    (path,) = scaling.plot(qa_rows, tmp_path)
    assert path.name == "scaling_multiqa.png" and path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.train
def test_llm_agent_reports_generation_time_and_tokens():
    pytest.importorskip("transformers")
    task = scaling.Task(
        "multiqa", "MEM1-MultiQA-v0", "num_objectives", (1,), {"world": "small", "split": "test"}
    )
    agent = scaling.llm_agent("tiny", max_new_tokens=8)
    rows = scaling.sweep([task], ["mem1", "full"], [agent], episodes=2, progress=False)
    assert [(r["agent"], r["size"], r["policy"]) for r in rows] == [
        (agent.label, 1, p) for p in ("mem1", "full")
    ]
    for row in rows:
        m = row["metrics"]
        assert 0 < m["generate_seconds"]["mean"] <= m["seconds"]["mean"]
        # at most 8 tokens a turn, at least one turn
        assert 1 <= m["generated_tokens"]["mean"] <= 8 * m["turns"]["mean"]
    assert "| hf:" in scaling.markdown(rows)


def test_cli_outside_a_checkout_is_one_error_line(tmp_path, monkeypatch, capsys):
    import mem1_envs.__main__ as entry

    monkeypatch.setattr(entry, "__file__", str(tmp_path / "site-packages" / "mem1_envs" / "__main__.py"))
    monkeypatch.chdir(tmp_path)
    assert cli(["scaling", "--quick"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("scaling: error: scaling runs scripts/memory_scaling.py of a source checkout")
