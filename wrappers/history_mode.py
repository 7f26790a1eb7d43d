"""``HistoryMode``: run an env under the ``mem1``, ``window`` or ``full`` context policy, switchable."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from mem1_envs.memory import ContextPolicy, check_memory, policy_name


class HistoryMode(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Put an env under a context policy for baselines, and switch it while it runs.

    ``mem1`` shows the prompt, the last internal state, action and observation; ``window``
    the last ``window`` turns; ``full`` the whole history (ReAct). :meth:`set_mode` switches a
    running env: the turns so far are kept and the next observation is built by the new policy.
    The env must offer ``set_context_policy(memory, window)`` (``MEM1-MultiQA-v0`` and
    ``MEM1-WebShop-v0`` do).
    ``info["history_mode"]`` names the policy that built each observation.

    Args:
        env: the env to wrap.
        mode: ``"mem1"``, ``"window"``, ``"full"`` (any name in :data:`mem1_envs.memory.POLICIES`)
            or a :class:`~mem1_envs.memory.ContextPolicy` instance.
        window: turns kept by ``window`` (>= 1); None keeps the env's own setting.

    >>> import gymnasium as gym, mem1_envs
    >>> env = HistoryMode(gym.make("MEM1-MultiQA-v0", world="small"), mode="full")
    >>> observation, info = env.reset(seed=0)
    >>> for query in ("Oslo", "Bergen"):
    ...     observation, *_, info = env.step(f"<think></think><search>{query}</search>")
    >>> observation.count("[HINT]"), info["history_mode"]
    (2, 'full')
    >>> env.set_mode("mem1")
    >>> observation, *_, info = env.step("<think></think><search>Tromso</search>")
    >>> observation.count("[HINT]"), info["history_mode"]
    (1, 'mem1')
    """

    def __init__(self, env: gym.Env, mode: str | ContextPolicy = "mem1", window: int | None = None):
        gym.utils.RecordConstructorArgs.__init__(self, mode=mode, window=window)
        gym.Wrapper.__init__(self, env)
        if not callable(getattr(env.unwrapped, "set_context_policy", None)):
            raise TypeError(
                f"HistoryMode needs an env with set_context_policy(memory, window), got {type(env.unwrapped).__name__}"
            )
        self.set_mode(mode, window)

    def set_mode(self, mode: str | ContextPolicy, window: int | None = None) -> None:
        """Switch to ``mode`` from the next observation on (see the class docstring)."""
        try:
            check_memory(mode)
        except (TypeError, ValueError) as error:  # the wrapper's argument is called mode
            raise type(error)(str(error).replace("memory must", "mode must", 1)) from None
        if window is not None and (not isinstance(window, int) or isinstance(window, bool) or window < 1):
            raise ValueError(f"window must be an int >= 1 or None, got {window!r}")
        self.env.unwrapped.set_context_policy(mode, window)
        self.mode = policy_name(mode)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        observation, info = self.env.reset(seed=seed, options=options)
        return observation, {**info, "history_mode": self.mode}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        return observation, reward, terminated, truncated, {**info, "history_mode": self.mode}
