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
from mem1_envs.base_env import task_prompt
from mem1_envs.memory import count_tokens


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
    error: str | None = None
    """Why the agent stopped early (one of ``play_episode``'s ``errors``), else None."""
    prompt_tokens: int = 0
    """Tokens of the task prompt (the env's counter): the part of every context no policy drops."""
    mean_context_tokens: float = 0.0
    """Mean tokens of the contexts the agent acted on (one per turn)."""
    success: bool = False
    """``info["success"]`` where the env reports it (the shop), else False."""


def play_episode(
    env: gym.Env, agent: Agent, seed: int, *, errors: tuple[type[BaseException], ...] = ()
) -> EpisodeStats:
    """Run one episode from ``env.reset(seed=seed)`` to its end.

    An exception of a type in ``errors`` raised by the agent (a server that keeps failing)
    ends the episode where it stands: truncated, with the message in ``error``.
    """
    start = time.perf_counter()
    observation, info = env.reset(seed=seed)
    agent.reset(seed=seed)
    count = getattr(env.unwrapped, "count_tokens", count_tokens)
    prompt_tokens = count(task_prompt(info))
    total, terminated, truncated, error, contexts = 0.0, False, False, None, []
    while not (terminated or truncated):
        contexts.append(int(info["context_tokens"]))
        try:
            response = agent.act(observation, info)
        except errors as failure:
            truncated, error = True, str(failure)
            break
        observation, reward, terminated, truncated, info = env.step(response)
        total += float(reward)
    return EpisodeStats(
        reward=total,
        em=float(sum(info.get("em", [0.0]))),
        f1=float(sum(info.get("f1", [0.0]))),
        turns=int(info.get("turn", len(contexts))),  # "turn" is not part of the base contract
        peak_context_tokens=int(info["peak_context_tokens"]),
        dependency=int(info["dependency"]),
        seconds=time.perf_counter() - start,
        truncated=bool(truncated),
        error=error,
        prompt_tokens=int(prompt_tokens),
        mean_context_tokens=sum(contexts) / len(contexts),
        success=bool(info.get("success", False)),
    )


def play(env: gym.Env, agent: Agent, seeds: Iterable[int]) -> list[EpisodeStats]:
    """Play one episode per seed."""
    return [play_episode(env, agent, seed) for seed in seeds]
