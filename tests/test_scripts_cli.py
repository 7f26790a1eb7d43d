"""The training and evaluation scripts' command lines: documented flags, one-line errors.

Nothing here trains or loads a model: every error is raised before torch is imported.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
from script_import import load_script

from agents.ppo.config import PRESETS, PPOConfig


def test_field_docs_reads_every_ppo_config_docstring():
    docs = load_script("train_ppo").field_docs(PPOConfig)
    assert set(docs) == {field.name for field in dataclasses.fields(PPOConfig)}
    assert docs["gamma"] == "Discount (MEM1: 1)."
    assert docs["attention"].startswith('Packed-forward mask: "dense" (additive float [B, 1, S, S]')
    assert all(text.strip() and "\n" not in text for text in docs.values())


def test_train_ppo_help_shows_each_field_docstring_and_default(monkeypatch):
    # argparse wraps at the terminal's width and may break inside a word ("log- softmax"):
    # a wide terminal keeps each help text whole, whatever terminal runs the tests.
    monkeypatch.setenv("COLUMNS", "1000")
    script = load_script("train_ppo")
    text = script.build_parser().format_help()
    assert "<class" not in text
    docs = script.field_docs(PPOConfig)
    # one entry per flag (argparse puts the help under a long flag), whitespace collapsed
    blocks = [" ".join(block.split()) for block in re.split(r"\n\s+(?=--)", text)]
    lines = {block.split()[0]: block for block in blocks if block.startswith("--")}
    for field in dataclasses.fields(PPOConfig):
        line = lines["--" + field.name.replace("_", "-")]
        assert docs[field.name] in line, line
        assert f"[default: {script._show(field.default)}" in line, line
    assert "Discount (MEM1: 1). [default: 1.0]" in lines["--gamma"]
    assert "[default: 16; qwen2.5-7b: 64]" in lines["--num-envs"]
    assert "[default: world=small,num_objectives=1,split=train;" in lines["--env-kwargs"]
    assert PRESETS["tiny-cpu"] == PPOConfig()  # so "default" is the dataclass default


def test_train_ppo_docstring_points_policy_at_the_sft_out_dir():
    doc = load_script("train_ppo").__doc__
    assert "--policy runs/sft " in doc and "runs/sft/policy" not in doc


def _one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("script", "argv", "flag"),
    [
        ("train_ppo", ["--policy", "{missing}"], "--policy"),
        ("train_ppo", ["--model", "{missing}"], "--model"),
        ("train_ppo", ["--critic", "separate", "--critic-model", "{missing}"], "--critic-model"),
        ("train_sft", ["--model", "{missing}"], "--model"),
        ("evaluate", ["--agent", "hf", "--model", "{missing}"], "--model"),
    ],
)
def test_a_missing_model_folder_is_one_line_saying_so(script, argv, flag, tmp_path, capsys):
    missing = str(tmp_path / "runs" / "sft")
    with pytest.raises(SystemExit) as exited:
        load_script(script).main([arg.format(missing=missing) for arg in argv])
    assert exited.value.code == 2
    line = _one_error_line(capsys)
    assert line.endswith(f"error: {flag} must be an existing folder, got {missing!r} (does not exist)"), line
    assert "Repo id" not in line


def test_a_hub_name_is_not_fetched(capsys):
    with pytest.raises(SystemExit):
        load_script("train_ppo").main(["--config", "qwen2.5-7b"])  # its model is a hub name
    line = _one_error_line(capsys)
    assert "--model must be an existing folder, got 'Qwen/Qwen2.5-7B-Instruct' (does not exist)" in line


@pytest.mark.parametrize(
    ("script", "argv", "message"),
    [
        ("train_ppo", ["--total-steps", "2.5"], "argument --total-steps: must be an integer, got '2.5'"),
        ("train_ppo", ["--progress", "maybe"], "argument --progress: must be true or false, got 'maybe'"),
        ("train_ppo", ["--value-clip", "x"], "argument --value-clip: must be a number or None, got 'x'"),
        ("train_ppo", ["--env-kwargs", "world"], "argument --env-kwargs: must be key=value[,key=value...]"),
        ("train_ppo", ["--total-steps", "0"], "error: total_steps must be >= 1, got 0"),
        ("train_sft", ["--episodes", "0"], "argument --episodes: must be >= 1, got 0"),
        ("train_sft", ["--lr", "-1"], "argument --lr: must be > 0, got -1.0"),
        ("evaluate", ["--objectives", "1", "0"], "argument --objectives: must be >= 1, got 0"),
        ("evaluate", ["--top-p", "1.5"], "argument --top-p: must be <= 1, got 1.5"),
        (
            "evaluate",
            ["--env-arg", "colour=red"],
            "argument --env-arg: env argument must be KEY=VALUE with KEY one of",
        ),
        (
            "evaluate",
            ["--env", "MEM1-WebShop-v0", "--env-arg", "n_items=x"],
            "argument --env-arg: n_items must be int, got 'x'",
        ),
        (
            "evaluate",
            ["--env-arg", "world=small"],
            "argument --env-arg: env argument 'world' has its own option",
        ),
    ],
)
def test_bad_flags_are_one_line_naming_the_flag(script, argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        load_script(script).main(argv)
    assert exited.value.code == 2
    assert message in _one_error_line(capsys)


def test_train_ppo_flags_parse_to_typed_values():
    script = load_script("train_ppo")
    argv = [
        "--total-steps",
        "3",
        "--value-clip",
        "None",
        "--progress",
        "false",
        "--env-kwargs",
        "world=small,top_k=2",
    ]
    config = script.config_from_args(script.build_parser().parse_args(argv))
    assert (config.total_steps, config.value_clip, config.progress) == (3, None, False)
    assert config.env_kwargs == (("world", "small"), ("top_k", 2))
    untouched = script.config_from_args(script.build_parser().parse_args(["--config", "qwen2.5-7b"]))
    assert untouched == PRESETS["qwen2.5-7b"]  # flags not given keep the preset's values
    assert re.fullmatch(r"INT\|None", script._flag_type(int | None)[1])
