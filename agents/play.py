"""Play episodes of any env with any :class:`~agents.base.Agent` and collect the paper's metrics.

>>> import gymnasium as gym, mem1_envs
>>> from agents.scripted import MultiQAScriptedAgent
>>> env = gym.make("MEM1-MultiQA-v0", world="small", num_objectives=2)
>>> stats = play_episode(env, MultiQAScriptedAgent(), seed=0)
>>> stats.em, stats.turns
(2.0, 4)
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import gymnasium as gym

from agents.base import Agent


@dataclass(frozen=True)
class EpisodeStats:
    """One episode's outcome: EM/F1 summed over objectives and the memory/compute metrics."""

    reward: float
    em: float
    f1: float
    turns: int
    peak_context_tokens: int
    dependency: int
    seconds: float
    truncated: bool


def play_episode(env: gym.Env, agent: Agent, seed: int) -> EpisodeStats:
    """Run one episode from ``env.reset(seed=seed)`` to its end."""
    start = time.perf_counter()
    observation, info = env.reset(seed=seed)
    agent.reset(seed=seed)
    total, terminated, truncated = 0.0, False, False
    while not (terminated or truncated):
        observation, reward, terminated, truncated, info = env.step(agent.act(observation, info))
        total += float(reward)
    return EpisodeStats(
        reward=total,
        em=float(sum(info.get("em", [0.0]))),
        f1=float(sum(info.get("f1", [0.0]))),
        turns=int(info["turn"]),
        peak_context_tokens=int(info["peak_context_tokens"]),
        dependency=int(info["dependency"]),
        seconds=time.perf_counter() - start,
        truncated=bool(truncated),
    )


def play(env: gym.Env, agent: Agent, seeds: Iterable[int]) -> list[EpisodeStats]:
    """Play one episode per seed."""
    return [play_episode(env, agent, seed) for seed in seeds]
