"""Every advantage estimator of the PPO trainer (pure numpy/numba functions, tested against
hand-computed values and plain-Python twins):

- ``gae``: token-level GAE over generated tokens only, skipping context copies, observations,
  prompts and padding (:func:`gae_generated`, its numba kernel and :func:`gae_generated_python`);
- ``turn``: GAE over turns (a turn's reward = its tokens' rewards, its value = the value at its
  first generated token), each turn's advantage given to all of its tokens (:func:`turn_gae`);
- ``grpo``: the episode return normalised within its group of rollouts of the same prompt
  (:func:`grpo_advantages`);
- ``gigpo``: ``grpo`` plus a step-level term: turns of a group whose *bounded* context is
  identical (MEM1's pruning makes such anchor states common) form a step group, and each
  turn's return-to-go is normalised within it (:func:`gigpo_step_advantages`, :func:`step_key`).

>>> groups = np.array([0, 0, 1, 1])
>>> grpo_advantages(np.array([1.0, 0.0, 2.0, 2.0]), groups).round(3).tolist()
[1.0, -1.0, 0.0, 0.0]
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numba
import numpy as np

__all__ = [
    "gae_generated",
    "gae_generated_python",
    "gigpo_step_advantages",
    "grpo_advantages",
    "step_key",
    "turn_gae",
]


@numba.njit(cache=True)
def _gae_kernel(rewards, values, mask, episodes, gamma, lam):  # pragma: no cover - jit
    rows, size = rewards.shape
    advantages = np.zeros((rows, size), np.float32)
    returns = np.zeros((rows, size), np.float32)
    for b in range(rows):
        next_value = 0.0
        running = 0.0
        later_episode = -1
        for i in range(size - 1, -1, -1):
            if not mask[b, i]:
                continue  # context copies, observations, prompt, padding: not actions
            if episodes[b, i] != later_episode:  # the last action of an episode: terminal
                next_value = 0.0
                running = 0.0
                later_episode = episodes[b, i]
            delta = rewards[b, i] + gamma * next_value - values[b, i]
            running = delta + gamma * lam * running
            advantages[b, i] = running
            returns[b, i] = running + values[b, i]
            next_value = values[b, i]
    return advantages, returns


def gae_generated(
    rewards: np.ndarray,
    values: np.ndarray,
    mask: np.ndarray,
    gamma: float = 1.0,
    lam: float = 1.0,
    episode_index: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Token-level GAE over the tokens where ``mask`` is True, skipping all others.

    The generated tokens of an episode, in packed order, form the MDP: the value after the
    last generated token of a turn is the value of the first generated token of the next turn;
    after the episode's last one it is 0. Arrays are ``[S]`` or ``[B, S]``; for rows that pack
    several episodes pass ``episode_index`` (same shape, e.g. the collated ``episode_index``) so
    that no episode bootstraps from the next one. Returns ``(advantages, returns)``, zero
    outside the mask. MEM1 uses gamma = lambda = 1.

    >>> adv, ret = gae_generated(np.array([0, 0, 1.0]), np.array([0.5, 9, 0.5]), np.array([1, 0, 1], bool))
    >>> adv.tolist(), ret.tolist()
    ([0.5, 0.0, 0.5], [1.0, 0.0, 1.0])
    """
    if not 0.0 <= gamma <= 1.0 or not 0.0 <= lam <= 1.0:
        raise ValueError(f"gamma and lambda must be in [0, 1], got gamma={gamma}, lam={lam}")
    rewards = np.asarray(rewards, np.float32)
    single = rewards.ndim == 1
    values = np.asarray(values, np.float32)
    mask = np.asarray(mask, np.bool_)
    if not rewards.shape == values.shape == mask.shape:
        raise ValueError(
            f"rewards, values, mask shapes differ: {rewards.shape}, {values.shape}, {mask.shape}"
        )
    episodes = (
        np.zeros(rewards.shape, np.int64) if episode_index is None else np.asarray(episode_index, np.int64)
    )
    if episodes.shape != rewards.shape:
        raise ValueError(f"episode_index must have shape {rewards.shape}, got {episodes.shape}")
    adv, ret = _gae_kernel(
        np.atleast_2d(rewards),
        np.atleast_2d(values),
        np.atleast_2d(mask),
        np.atleast_2d(episodes),
        np.float32(gamma),
        np.float32(lam),
    )
    return (adv[0], ret[0]) if single else (adv, ret)


def gae_generated_python(
    rewards: Sequence[float],
    values: Sequence[float],
    mask: Sequence[bool],
    gamma: float = 1.0,
    lam: float = 1.0,
    episode_index: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Plain-Python twin of :func:`gae_generated` for one row: per episode, compress the masked
    tokens, run textbook GAE, scatter back."""
    episodes = [0] * len(mask) if episode_index is None else [int(e) for e in episode_index]
    advantages = np.zeros(len(mask), np.float32)
    returns = np.zeros(len(mask), np.float32)
    for episode in sorted(set(episodes)):
        where = [i for i, m in enumerate(mask) if m and episodes[i] == episode]
        r = [float(rewards[i]) for i in where]
        v = [float(values[i]) for i in where] + [0.0]
        adv = [0.0] * len(where)
        running = 0.0
        for t in reversed(range(len(where))):
            delta = r[t] + gamma * v[t + 1] - v[t]
            running = delta + gamma * lam * running
            adv[t] = running
        for t, i in enumerate(where):
            advantages[i] = adv[t]
            returns[i] = adv[t] + v[t]
    return advantages, returns


def grpo_advantages(returns: np.ndarray, group_ids: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """``(R - mean_group) / (std_group + eps)`` per episode (population std; 0 in a constant group)."""
    returns = np.asarray(returns, np.float64)
    group_ids = np.asarray(group_ids)
    out = np.zeros_like(returns)
    for group in np.unique(group_ids):
        where = group_ids == group
        values = returns[where]
        out[where] = (values - values.mean()) / (values.std() + eps)
    return out.astype(np.float32)


def step_key(context_ids: np.ndarray) -> str:
    """Hash of a turn's bounded context ids: the key of its GiGPO step group."""
    return hashlib.sha1(np.ascontiguousarray(context_ids, np.int64).tobytes()).hexdigest()


def gigpo_step_advantages(
    group_ids: Sequence[int],
    step_keys: Sequence[Sequence[str]],
    step_returns: Sequence[np.ndarray],
    eps: float = 1e-6,
) -> list[np.ndarray]:
    """Per turn: its return-to-go normalised within (episode group, step key); 0 when alone.

    >>> out = gigpo_step_advantages([0, 0], [["a", "b"], ["a", "c"]], [np.array([1.0, 1.0]), np.array([0.0, 0.0])])
    >>> [o.round(3).tolist() for o in out]
    [[1.0, 0.0], [-1.0, 0.0]]
    """
    members: dict[tuple[int, str], list[tuple[int, int]]] = {}
    for e, (group, keys) in enumerate(zip(group_ids, step_keys, strict=True)):
        for t, key in enumerate(keys):
            members.setdefault((int(group), key), []).append((e, t))
    out = [np.zeros(len(keys), np.float32) for keys in step_keys]
    for pairs in members.values():
        if len(pairs) < 2:
            continue
        values = np.array([step_returns[e][t] for e, t in pairs], np.float64)
        normalised = (values - values.mean()) / (values.std() + eps)
        for (e, t), value in zip(pairs, normalised, strict=True):
            out[e][t] = value
    return out


def turn_gae(
    turn_rewards: np.ndarray, turn_values: np.ndarray, gamma: float = 1.0, lam: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """GAE over an episode's turns (value after the last turn: 0). Returns (advantages, returns).

    >>> adv, ret = turn_gae(np.array([0.0, 1.0]), np.array([0.5, 0.25]))
    >>> adv.tolist(), ret.tolist()
    ([0.5, 0.75], [1.0, 1.0])
    """
    turn_rewards = np.asarray(turn_rewards, np.float64)
    turn_values = np.asarray(turn_values, np.float64)
    advantages = np.zeros_like(turn_rewards)
    running, next_value = 0.0, 0.0
    for k in range(len(turn_rewards) - 1, -1, -1):
        delta = turn_rewards[k] + gamma * next_value - turn_values[k]
        running = delta + gamma * lam * running
        advantages[k] = running
        next_value = turn_values[k]
    return advantages.astype(np.float32), (advantages + turn_values).astype(np.float32)


def _returns_to_go(turn_rewards: np.ndarray, gamma: float) -> np.ndarray:
    out = np.zeros(len(turn_rewards), np.float64)
    running = 0.0
    for k in range(len(turn_rewards) - 1, -1, -1):
        running = turn_rewards[k] + gamma * running
        out[k] = running
    return out
