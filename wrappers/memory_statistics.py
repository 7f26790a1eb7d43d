"""``RecordMemoryStatistics``: per-episode memory figures, like Gymnasium's RecordEpisodeStatistics."""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

KEYS = ("peak_context_tokens", "mean_context_tokens", "dependency", "response_tokens", "turns")


class RecordMemoryStatistics(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """At the end of each episode put its memory figures in ``info["episode_memory"]``.

    Read from the env's ``info`` (``context_tokens``, ``response_tokens``, ``dependency``; every
    mem1-envs env reports them): ``peak_context_tokens`` (largest context of the episode, the
    first observation included), ``mean_context_tokens`` (over the observations the agent acted
    on, i.e. all but the final one), ``dependency`` (sum of context x response tokens, the
    paper's attention-cost proxy), ``response_tokens`` (sum) and ``turns``. The last
    ``buffer_length`` episodes are kept in :attr:`episodes`; :meth:`summary` averages them.

    Args:
        env: an env whose ``info`` has ``context_tokens`` and ``response_tokens``.
        buffer_length: episodes kept for :meth:`summary` (>= 1).

    >>> import gymnasium as gym, mem1_envs
    >>> env = RecordMemoryStatistics(gym.make("MEM1-MultiQA-v0", world="small"))
    >>> _ = env.reset(seed=0)
    >>> _ = env.step("<think></think><search>Oslo</search>")
    >>> *_, info = env.step("<think></think><answer>Oslo</answer>")
    >>> stats = info["episode_memory"]
    >>> stats["turns"], stats["peak_context_tokens"] >= stats["mean_context_tokens"] > 0
    (2, True)
    """

    def __init__(self, env: gym.Env, buffer_length: int = 100):
        gym.utils.RecordConstructorArgs.__init__(self, buffer_length=buffer_length)
        gym.Wrapper.__init__(self, env)
        if not isinstance(buffer_length, int) or isinstance(buffer_length, bool) or buffer_length < 1:
            raise ValueError(f"buffer_length must be an int >= 1, got {buffer_length!r}")
        self.episodes: deque[dict[str, float]] = deque(maxlen=buffer_length)
        self._contexts: list[int] = []
        self._responses = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        observation, info = self.env.reset(seed=seed, options=options)
        self._contexts = [int(info["context_tokens"])]
        self._responses = 0
        return observation, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._responses += int(info.get("response_tokens", 0))
        acted_on = list(self._contexts)
        self._contexts.append(int(info["context_tokens"]))
        if terminated or truncated:
            stats = {
                "peak_context_tokens": max(self._contexts),
                "mean_context_tokens": float(np.mean(acted_on)),
                "dependency": int(info.get("dependency", 0)),
                "response_tokens": self._responses,
                "turns": len(acted_on),
            }
            self.episodes.append(stats)
            info = {**info, "episode_memory": stats}
        return observation, reward, terminated, truncated, info

    def summary(self) -> dict[str, float]:
        """Mean of each figure over the kept episodes (empty dict before the first episode ends)."""
        if not self.episodes:
            return {}
        return {key: float(np.mean([episode[key] for episode in self.episodes])) for key in KEYS}
