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
