"""The contract of a bounded-memory text env: :class:`BoundedMemoryEnv`.

A subclass supplies the task: a frozen config dataclass (``config_class``, with the fields
``memory``, ``window``, ``max_context_tokens`` and ``token_counter`` beside its own), and
``reset``/``step`` that draw a task, apply an action and score it. The base class owns what
every such env shares, so it is written once:

* arguments: unknown keyword arguments and a bad ``render_mode`` raise naming them; the config's
  ``__post_init__`` checks its fields ("X must be Y, got Z");
* the token counter (``self.count_tokens``) and the context policy (``self.policy``,
  :mod:`mem1_envs.memory`), and :meth:`set_context_policy` for ``wrappers.HistoryMode``;
* the task prompt (:meth:`start_episode` sets ``self.prompt``, the prefix every observation of
  the episode starts with, and ``info["prompt"]`` carries it): the LLM policy, rollout, SFT and
  evaluation read it there rather than parsing observations;
* memory accounting (:meth:`observe`): ``context_tokens``, ``peak_context_tokens``,
  ``response_tokens``, ``dependency`` (sum over turns of context x response tokens) and
  ``context_cut`` in ``info``;
* pickling (the counter and policy are rebuilt; ``_unpickled`` names more attributes to drop,
  :meth:`_reattach` brings them back) and the ``ansi`` render mode (the last observation).

See ``tests/test_toy_env.py`` for a complete env in a few dozen lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, replace
from typing import Any, ClassVar

import gymnasium as gym

from mem1_envs.memory import (
    Context,
    ContextPolicy,
    Turn,
    check_memory,
    make_policy,
    make_token_counter,
    policy_name,
)
from mem1_envs.validation import check_choice


class BoundedMemoryEnv(gym.Env[str, str]):
    """Base of the suite's text envs: config, token counter, context policy, prompt, accounting."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}
    env_id: ClassVar[str] = ""
    """The Gymnasium id (error messages, :mod:`mem1_envs.registry`)."""
    config_class: ClassVar[type]
    _unpickled: ClassVar[tuple[str, ...]] = ()
    """Attributes not pickled (big, shared or live objects); :meth:`_reattach` rebuilds them."""

    def _configure(self, render_mode: str | None, kwargs: dict[str, Any]) -> None:
        """Check the arguments, build ``self.config``, the counter and the policy."""
        known = {f.name for f in fields(self.config_class)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown {self.env_id} arguments {unknown}; known: {sorted(known)}")
        check_choice("render_mode", render_mode, (None, *self.metadata["render_modes"]))
        self.config = self.config_class(**kwargs)
        self.render_mode = render_mode
        self.prompt = ""
        self._last_observation = ""
        self._attach_memory()
        self._context_tokens = self._peak = self._dependency = 0

    def _attach_memory(self) -> None:
        config = self.config
        self.count_tokens = make_token_counter(config.token_counter)
        self.policy: ContextPolicy = make_policy(
            config.memory, config.max_context_tokens, config.window, self.count_tokens
        )

    def set_context_policy(self, memory: str | ContextPolicy, window: int | None = None) -> None:
        """Switch the context policy (a registered name or an instance) of this running env.

        Used by ``wrappers.HistoryMode`` for baselines. The turns so far are kept, so the next
        observation is built by the new policy; ``window=None`` keeps the current window.
        """
        check_memory(memory)
        window = self.config.window if window is None else window
        self.config = replace(self.config, memory=memory, window=window)  # validates both
        self._attach_memory()

    @property
    def memory_name(self) -> str:
        """The name of the context policy in use."""
        return policy_name(self.config.memory)

    # -- episode ------------------------------------------------------------------------------
    def start_episode(self, prompt: str, advice: str) -> None:
        """Begin an episode whose observations all start with ``prompt``; check it fits the budget.

        ``advice`` ends the error message when it does not ("raise it or lower num_objectives").
        """
        self.policy.check_prompt(prompt, advice)
        self.prompt = prompt
        self._context_tokens = self._peak = self._dependency = 0

    def observe(
        self, prompt: str, turns: Sequence[Turn], response_tokens: int
    ) -> tuple[Context, dict[str, Any]]:
        """Build the next context with the policy and account for it: ``(context, info items)``.

        ``prompt`` is the text the context starts with (``self.prompt`` plus, for an env that
        shows more on the first turn, that part). ``response_tokens`` is the response just
        scored, generated while attending to the previous context (0 on reset).
        """
        self._dependency += self._context_tokens * response_tokens
        context = self.policy.build(prompt, turns)
        self._context_tokens = context.tokens
        self._peak = max(self._peak, context.tokens)
        self._last_observation = context.text
        return context, {
            "prompt": self.prompt,
            "context_tokens": context.tokens,
            "peak_context_tokens": self._peak,
            "response_tokens": response_tokens,
            "dependency": self._dependency,
            "context_cut": list(context.cut),
        }

    # -- pickling and rendering ---------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("count_tokens", "policy", *self._unpickled):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._attach_memory()
        self._reattach()

    def _reattach(self) -> None:
        """Rebuild what ``_unpickled`` dropped (after unpickling)."""

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._last_observation
        return None


def task_prompt(info: dict[str, Any]) -> str:
    """The task prompt an env put in ``info`` (what every observation of the episode starts with).

    >>> task_prompt({"prompt": "Answer: q1?"})
    'Answer: q1?'
    """
    prompt = info.get("prompt") if isinstance(info, dict) else None
    if not isinstance(prompt, str):
        raise ValueError(
            "info['prompt'] must be the task prompt (a str), as every BoundedMemoryEnv gives it; "
            f"got {type(prompt).__name__} (is the env on the mem1_envs.base_env contract?)"
        )
    return prompt
