"""Context policies, token counting and the mem1 budget."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mem1_envs.memory import Turn, count_tokens, make_policy, make_token_counter, truncate_to_tokens

TURNS = [
    Turn(f"<think>s{i}</think>", f"<search>q{i}</search>", f"<information>d{i}</information>")
    for i in range(5)
]


def test_policies_keep_the_right_turns():
    assert "s4" in make_policy("mem1").build("P", TURNS).text
    assert "s3" not in make_policy("mem1").build("P", TURNS).text
    window = make_policy("window", window=2).build("P", TURNS).text
    assert "s3" in window and "s4" in window and "s2" not in window
    full = make_policy("full").build("P", TURNS).text
    assert all(f"s{i}" in full for i in range(5)) and full.startswith("P\n")
    assert make_policy("mem1").build("P", []).text == "P"


def test_budget_cuts_state_first_and_never_the_prompt():
    prompt = "prompt " * 10
    turn = Turn(
        "<think>" + "memo " * 200 + "</think>",
        "<search>q</search>",
        "<information>" + "doc " * 50 + "</information>",
    )
    context = make_policy("mem1", max_tokens=100).build(prompt, [turn])
    assert context.tokens <= 100
    assert context.text.startswith(prompt.rstrip("\n")) and context.cut[0] == "state"
    assert "<think>" in context.text and "</think>" in context.text and "doc" in context.text


def test_budget_cuts_observation_when_state_is_not_enough():
    turn = Turn("<think>m</think>", "<search>q</search>", "<information>" + "doc " * 500 + "</information>")
    context = make_policy("mem1", max_tokens=60).build("prompt", [turn])
    assert context.tokens <= 60 and "observation" in context.cut and context.text.endswith("</information>")


def test_huge_action_is_cut_last():
    turn = Turn("<think>m</think>", "<search>" + "q " * 1000 + "</search>", "<information>d</information>")
    context = make_policy("mem1", max_tokens=80).build("prompt", [turn])
    assert context.tokens <= 80 and context.cut == ("state", "observation", "action")


def test_other_policies_are_unbounded():
    turn = Turn("<think>" + "m " * 300 + "</think>", "<search>q</search>", "<information>d</information>")
    assert make_policy("full", max_tokens=10).build("p", [turn]).cut == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"memory": "nope"}, "memory must be one of .*'nope'"),
        ({"window": 0}, "window must be >= 1, got 0"),
        ({"max_tokens": 0}, "got 0"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_policy(**kwargs)


def test_token_counters():
    assert count_tokens("Doc 1(Title: Oslo) is a city.") == 11
    assert make_token_counter(len)("abcd") == 4

    class Tokenizer:
        def encode(self, text, add_special_tokens=True):
            return list(text.encode())

    assert make_token_counter(Tokenizer())("ab") == 2
    with pytest.raises(TypeError, match="42"):
        make_token_counter(42)


@settings(max_examples=200, deadline=None)
@given(st.text(), st.integers(0, 50))
def test_truncate_fits_and_is_a_prefix(text, limit):
    for counter in (count_tokens, len):
        cut = truncate_to_tokens(text, limit, counter)
        assert text.startswith(cut) and counter(cut) <= limit
    # exact for the default counter: it keeps as many tokens as fit
    assert count_tokens(truncate_to_tokens(text, limit)) == min(limit, count_tokens(text))


def test_a_registered_policy_works_by_name_and_an_instance_by_value():
    from dataclasses import dataclass
    from typing import ClassVar

    import gymnasium as gym

    import mem1_envs  # noqa: F401
    from mem1_envs.memory import POLICIES, ContextPolicy, FullPolicy, register_policy
    from wrappers import HistoryMode

    @register_policy
    @dataclass(frozen=True)
    class PromptOnly(ContextPolicy):
        name: ClassVar[str] = "prompt-only"

        def build(self, prompt, turns):
            return self.context(prompt)

    try:
        env = gym.make("MEM1-MultiQA-v0", world="small", memory="prompt-only")
        first, info = env.reset(seed=0)
        observation, *_ = env.step("<think>s</think><search>Oslo</search>")
        assert observation == first == info["prompt"]
        env.unwrapped.set_context_policy(FullPolicy())  # an instance switches a running env too
        observation, *_ = env.step("<think>s</think><search>Bergen</search>")
        assert observation.count("</search>\n<information>") == 2
        wrapped = HistoryMode(env, mode=PromptOnly())
        assert wrapped.mode == "prompt-only"
    finally:
        del POLICIES["prompt-only"]
    with pytest.raises(ValueError, match=r"memory must be one of .*'prompt-only'"):
        gym.make("MEM1-MultiQA-v0", world="small", memory="prompt-only")


def test_the_budget_check_is_the_policys():
    policy = make_policy("mem1", max_tokens=3)
    with pytest.raises(ValueError, match="max_context_tokens=3 cannot hold the prompt of 4 tokens; lower it"):
        policy.check_prompt("one two three four", "lower it")
    make_policy("full", max_tokens=3).check_prompt("one two three four", "unbounded: no error")
