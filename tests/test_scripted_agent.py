"""The scripted MEM1-style agent solves the default world by search, under any context policy."""

from __future__ import annotations

import gymnasium as gym
import pytest

import mem1_envs  # noqa: F401
from agents.base import Agent
from agents.play import play
from agents.scripted import MultiQAScriptedAgent, plan_for


@pytest.mark.parametrize(("objectives", "episodes"), [(1, 40), (4, 15), (16, 6)])
def test_answers_at_least_95_percent_on_the_default_world(objectives, episodes):
    env = gym.make("MEM1-MultiQA-v0", num_objectives=objectives)
    runs = play(env, MultiQAScriptedAgent(), range(episodes))
    accuracy = sum(r.em for r in runs) / (objectives * episodes)
    assert accuracy >= 0.95, accuracy


def test_same_answers_under_full_history_with_a_growing_context():
    results = {}
    for memory in ("mem1", "full"):
        env = gym.make("MEM1-MultiQA-v0", num_objectives=4, memory=memory, world="small")
        results[memory] = play(env, MultiQAScriptedAgent(), range(5))
    assert [r.em for r in results["mem1"]] == [r.em for r in results["full"]]
    assert max(r.peak_context_tokens for r in results["full"]) > 2 * max(
        r.peak_context_tokens for r in results["mem1"]
    )


@pytest.mark.parametrize("memory", ["mem1", "full"])
def test_chained_state_answers_as_the_indexed_one_and_names_no_question_number(memory):
    env = gym.make("MEM1-MultiQA-v0", num_objectives=8, memory=memory, world="small")
    chained = play(env, MultiQAScriptedAgent(state="chained"), range(4))
    assert [r.em for r in chained] == [r.em for r in play(env, MultiQAScriptedAgent(), range(4))]
    agent = MultiQAScriptedAgent(state="chained")
    observation, info = env.reset(seed=0)
    questions = info["prompt"].rpartition("Answer the following questions: ")[2].split("?; ")
    states = []
    for _ in range(3):
        action = agent.act(observation, info)
        states.append(action.partition("</think>")[0])
        observation, *_ = env.step(action)
    assert states[0] == f"<think>now={questions[0]}?"  # the first question, copied
    assert all("Q1" not in state and "#" not in state for state in states)
    with pytest.raises(ValueError, match="'numbered'"):
        MultiQAScriptedAgent(state="numbered")


def test_chained_state_keeps_the_place_of_a_question_it_cannot_plan():
    env = gym.make("MEM1-MultiQA-v0", num_objectives=2, world="small")
    observation, info = env.reset(seed=0)
    first, second = info["prompt"].rpartition("Answer the following questions: ")[2].split("?; ")
    unplannable = observation.replace(first, "Why is the sky blue", 1)
    action = MultiQAScriptedAgent(state="chained").act(unplannable, info)
    assert action.startswith(f"<think>done=unknown | now={second}</think><search>")


def test_chained_state_gives_up_and_answers_on_the_last_turn_as_the_indexed_one():
    env = gym.make("MEM1-MultiQA-v0", num_objectives=4, max_turns=3, world="small")
    for seed in range(3):
        chained, indexed = (
            play(env, MultiQAScriptedAgent(state=s), [seed])[0] for s in ("chained", "indexed")
        )
        assert (chained.em, chained.turns) == (indexed.em, indexed.turns) and not chained.truncated


def test_paper_protocol_agent():
    env = gym.make("MEM1-MultiQA-v0", num_objectives=2, protocol="paper", world="small")
    assert sum(r.em for r in play(env, MultiQAScriptedAgent("paper"), range(5))) >= 9


def test_agent_follows_the_protocol_and_knows_every_question_kind():
    assert isinstance(MultiQAScriptedAgent(), Agent)
    env = gym.make("MEM1-MultiQA-v0", world="small")
    assert all(plan_for(q.text) is not None for q in env.unwrapped.questions)


def test_agent_answers_on_the_last_turn_with_what_it_has():
    env = gym.make("MEM1-MultiQA-v0", num_objectives=4, max_turns=2, world="small")
    run = play(env, MultiQAScriptedAgent(), [0])[0]
    assert run.turns == 2 and not run.truncated


def test_renamed_names_keep_the_env_rules_and_hide_every_name():
    from agents.rename import RenamedNames, name_roles
    from mem1_envs.qa.world import WORLD_SIZES, generate_world

    roles = name_roles([generate_world(WORLD_SIZES["small"], seed) for seed in (0, 1)])
    words = {word for role in roles for word in role}
    kwargs = {"world": "small", "num_objectives": 2}
    renamed = RenamedNames(gym.make("MEM1-MultiQA-v0", **kwargs), roles, share=1.0, salt=5)
    plain = gym.make("MEM1-MultiQA-v0", **kwargs)
    for seed in range(4):
        shown, info = renamed.reset(seed=seed)
        original, original_info = plain.reset(seed=seed)
        assert shown != original and info["prompt"] != original_info["prompt"]
        shown_words = {w for w in shown.split() if w.rstrip("?") in words}
        assert all(renamed.hidden[w.rstrip("?")] in original for w in shown_words)
        # The scripted agent, reading only renamed text, earns the original episode's reward.
        agent, done, total = MultiQAScriptedAgent(), False, 0.0
        while not done:
            shown, reward, terminated, truncated, info = renamed.step(agent.act(shown, info))
            total, done = total + reward, terminated or truncated
        assert total == 2.0
    assert renamed.reset(seed=1)[0] == renamed.reset(seed=1)[0]  # a seed fixes its renaming
    never = RenamedNames(gym.make("MEM1-MultiQA-v0", **kwargs), roles, share=0.0)
    assert never.reset(seed=1)[0] == plain.reset(seed=1)[0]
    with pytest.raises(ValueError, match=r"1\.5"):
        RenamedNames(plain, roles, share=1.5)
    with pytest.raises(ValueError, match="bijection"):
        RenamedNames(plain, [["Kesh", "Vorla"], ["Vorla"]])
