"""Advantages over generated tokens only: token-level GAE that skips context copies,
observations, prompts and padding (:func:`gae_generated`) and its plain-Python twin."""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

__all__ = ["gae_generated", "gae_generated_python"]


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
