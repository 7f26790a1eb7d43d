"""``scripts/step_agreement.py``: a checkpoint's turns on the scripted agent's own path."""

from __future__ import annotations

import re

import pytest
from script_import import load_script

pytest.importorskip("gymnasium")
steps = load_script("step_agreement")
recipe = load_script("reproduce_recipe").Recipe()


def scripted_act():
    """The scripted agent itself as the policy under test (it reads the whole observation)."""
    import gymnasium as gym

    import mem1_envs  # noqa: F401

    agent = steps.scripted_agent("chained")(gym.make("MEM1-MultiQA-v0", world="small"))
    return lambda prompt, observation: agent.act(observation, {})


def test_turn_kinds():
    assert steps.kind_of("<think>now=A? | a=1</think>", previous=None) == "first"
    assert steps.kind_of("<think>done=x | now=B?</think>", previous="A?") == "move"
    assert steps.kind_of("<think>now=A? | a=1</think>", previous="A?") == "stay"
    assert steps.kind_of("<think>done=x; y</think><answer>x; y</answer>", previous="B?") == "answer"


@pytest.mark.parametrize("objectives", [1, 4])
def test_the_scripted_agent_agrees_with_itself_on_every_turn(objectives):
    table = steps.step_agreement(scripted_act(), objectives, 3, recipe)
    assert table["first"]["turns"] == table["answer"]["turns"] == 3
    assert table["move"].get("turns", 0) == 3 * (objectives - 1)  # one move per later question
    for kind, count in table.items():
        assert count.get("exact", 0) == count.get("turns", 0), kind
        if kind != "answer":
            assert count.get("now_right", 0) == count.get("turns", 0), kind


def test_a_policy_that_never_moves_on_and_one_that_recalls_are_told_apart():
    agent = scripted_act()
    first: dict[str, str] = {}

    def stuck(prompt, observation):  # keeps writing its first action
        return first.setdefault(prompt, agent(prompt, observation))

    table = steps.step_agreement(stuck, 2, 2, recipe)
    assert table["first"]["now_right"] == 2 and table["move"].get("now_right", 0) == 0
    trained = sorted(steps.training_question_texts(recipe))[:1]
    recalled = steps.step_agreement(lambda p, o: f"<think>now={trained[0]}</think>", 2, 2, recipe, trained)
    assert recalled["move"]["now_trained"] == recalled["move"]["turns"] == 2
    assert recalled["first"]["now_right"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objectives", "0"], r"must be >= 1, got \[0\] and 16"),
        (["--episodes", "0"], r"got \[1, 2, 4, 8\] and 0"),
        ([], "model folder not found: '/nonexistent'"),
    ],
)
def test_bad_arguments_name_the_value(args, message, capsys):
    with pytest.raises(SystemExit):
        steps.main(["/nonexistent", *args])
    assert re.search(message, capsys.readouterr().err)
