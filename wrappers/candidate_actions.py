"""``CandidateActions``: a ``Discrete(K)`` action space over candidate text actions, with masks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from wrappers.candidates_multiqa import Candidate

CandidateGenerator = Callable[[str], Sequence[Candidate | None]]
"""``observation -> K slots``. A generator may also have ``start(observation, info)``, called
after every reset with the first observation and its info, where the env contract puts the task
prompt (``info["prompt"]``, :func:`mem1_envs.base_env.task_prompt`)."""


def default_generator(env: gym.Env, num_candidates: int) -> CandidateGenerator:
    """The candidate generator registered for ``env`` (:mod:`mem1_envs.registry`)."""
    from mem1_envs.registry import find_part

    try:
        factory = find_part(env, "candidates")
    except LookupError as error:
        raise TypeError(f"{error}, or pass generator=callable(observation) -> candidates") from None
    return factory(env.unwrapped, num_candidates)


class CandidateActions(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """Act by choosing one of ``K`` candidate responses built from the current observation.

    After every reset and step the generator reads the (text) observation and fills ``K``
    slots with candidate responses; :meth:`action_masks` (what sb3-contrib's MaskablePPO calls)
    is True on the filled slots, and the same mask is in ``info["action_mask"]``. Slot 0 is
    always filled for the built-in generators, so at least one action is valid.

    Rule for a bad action (never raises): a masked slot, an index outside ``[0, K)`` or a
    value that is not an integer sends an empty response, which the env handles under its own
    invalid-action rule (MultiQA: reward 0 and the episode ends, or a penalty); the step's
    ``info["candidate"]`` is then None. Otherwise ``info["candidate"]`` is the chosen label.

    Built-in generators: :class:`~wrappers.candidates_multiqa.MultiQACandidates` (searches from the
    questions' entity mentions, answers from the consolidated state and the last documents) and
    :class:`~wrappers.candidates_shop.WebShopCandidates` (the page's clickables and search
    templates from the instruction, read from the task prompt at reset; use
    ``num_candidates >= 20`` there). Both read the observation and the task prompt only, never
    the hidden answers or goal.

    Args:
        env: an env with ``Text`` observations and actions.
        num_candidates: K (>= 4).
        generator: None (built-in for the env, see :func:`default_generator`) or a callable
            ``observation -> sequence of K Candidate-or-None``.

    >>> import gymnasium as gym, mem1_envs
    >>> env = CandidateActions(gym.make("MEM1-MultiQA-v0", world="small"), num_candidates=8)
    >>> observation, info = env.reset(seed=1)
    >>> env.action_masks().astype(int).tolist()
    [1, 1, 0, 1, 0, 0, 0, 0]
    >>> observation, reward, terminated, truncated, info = env.step(1)  # search for the fact
    >>> observation, reward, terminated, truncated, info = env.step(0)  # answer from the state
    >>> info["candidate"], reward
    ('answer: Vreirkquaethstith', 1.0)
    """

    def __init__(self, env: gym.Env, num_candidates: int = 12, generator: CandidateGenerator | None = None):
        gym.utils.RecordConstructorArgs.__init__(self, num_candidates=num_candidates, generator=generator)
        gym.ActionWrapper.__init__(self, env)
        if not isinstance(env.observation_space, spaces.Text) or not isinstance(
            env.action_space, spaces.Text
        ):
            raise TypeError(
                "CandidateActions needs Text observation and action spaces (put it before TokenizeObservation), "
                f"got {env.observation_space} and {env.action_space}"
            )
        if (
            not isinstance(num_candidates, int | np.integer)
            or isinstance(num_candidates, bool)
            or num_candidates < 4
        ):
            raise ValueError(f"num_candidates must be an int >= 4, got {num_candidates!r}")
        if generator is not None and not callable(generator):
            raise TypeError(f"generator must be None or a callable, got {generator!r}")
        self.num_candidates = int(num_candidates)
        self.generator = generator or default_generator(env, self.num_candidates)
        self.action_space = spaces.Discrete(self.num_candidates)
        self.candidates: list[Candidate | None] = [None] * self.num_candidates
        self._chosen: Candidate | None = None

    def _refresh(self, observation: str) -> None:
        slots = list(self.generator(observation))
        if len(slots) != self.num_candidates:
            raise ValueError(f"generator must return {self.num_candidates} slots, got {len(slots)}")
        self.candidates = slots

    def action_masks(self) -> np.ndarray:
        """Bool ``(K,)``: True where the slot holds a candidate."""
        return np.array([c is not None for c in self.candidates], dtype=bool)

    def action(self, action: Any) -> str:
        try:
            index = int(action)
            valid = index == action and 0 <= index < self.num_candidates
        except (TypeError, ValueError, OverflowError):
            valid = False
        self._chosen = self.candidates[index] if valid else None
        return "" if self._chosen is None else self._chosen.text

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        observation, info = self.env.reset(seed=seed, options=options)
        start = getattr(self.generator, "start", None)
        if callable(start):  # the episode's task, read once from the env contract
            start(observation, info)
        self._refresh(observation)
        return observation, {**info, "action_mask": self.action_masks()}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.env.step(self.action(action))
        chosen = None if self._chosen is None else self._chosen.label
        self._refresh(observation)
        return (
            observation,
            reward,
            terminated,
            truncated,
            {**info, "candidate": chosen, "action_mask": self.action_masks()},
        )
