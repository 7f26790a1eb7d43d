"""The agent protocol every reference agent follows.

An agent sees exactly what a model would: the text observation (its whole context) and the
``info`` dict, and answers with one response string per turn.

>>> class Echo:
...     def reset(self, seed=None): pass
...     def act(self, observation, info): return "<think></think><answer>x</answer>"
>>> isinstance(Echo(), Agent)
True
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Agent(Protocol):
    """``reset(seed)`` before each episode, then ``act(observation, info) -> response`` per turn."""

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, observation: str, info: dict[str, Any]) -> str: ...
