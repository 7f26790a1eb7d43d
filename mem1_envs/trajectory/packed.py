"""The packed form of one or more episodes: :class:`PackedTrajectory`, and the token-id check
shared by the packers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mem1_envs.trajectory.masks import fill_dense_masks

__all__ = ["IdsLike", "PackedTrajectory"]


IdsLike = Sequence[int] | np.ndarray


def _ids(values: IdsLike | None, name: str) -> np.ndarray:
    array = np.asarray([] if values is None else values, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of token ids, got shape {array.shape}")
    return array


@dataclass(frozen=True, eq=False)
class PackedTrajectory:
    """One episode (or several, see :func:`concat_packed`) as one packed sequence of S tokens.

    Attributes:
        input_ids: token ids, int64 ``[S]``.
        position_ids: rollout position of each token, int64 ``[S]``.
        loss_mask: True on generated tokens (the policy loss), bool ``[S]``.
        block_ids: compact mask: the block of each token, int32 ``[S]``; blocks are contiguous.
        block_visible: which blocks see which, bool ``[blocks, blocks]`` (diagonal True).
        pred_index: index of the logits predicting each loss token, -1 elsewhere, int64 ``[S]``.
        turn_index: the rollout turn of each token, -1 for prompts, int32 ``[S]``.
        rewards: per-token reward (per-turn and final rewards on last generated tokens), float32.
        old_logprobs: sampler log-probs on generated tokens, NaN where unknown, float32 ``[S]``.
        dropped_turns: turns left out by the D7 rule (see the module docstring).
        episode_index: which packed episode each token belongs to (0 unless built by
            :func:`concat_packed`), int32 ``[S]``; GAE never crosses episodes.
        released_rules: built with MEM1's released rules: collation then reproduces D1 too.
    """

    input_ids: np.ndarray
    position_ids: np.ndarray
    loss_mask: np.ndarray
    block_ids: np.ndarray
    block_visible: np.ndarray
    pred_index: np.ndarray
    turn_index: np.ndarray
    rewards: np.ndarray
    old_logprobs: np.ndarray
    dropped_turns: tuple[int, ...] = field(default_factory=tuple)
    episode_index: np.ndarray | None = None
    released_rules: bool = False

    def __post_init__(self) -> None:
        if self.episode_index is None:
            object.__setattr__(self, "episode_index", np.zeros(self.input_ids.shape, np.int32))

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def num_blocks(self) -> int:
        return int(self.block_visible.shape[0])

    def dense_mask(self) -> np.ndarray:
        """Bool ``[S, S]``: True where token i (row) may attend token j (column)."""
        out = np.empty((1, len(self), len(self)), dtype=np.bool_)
        fill_dense_masks(out, self.block_ids[None], self.block_visible[None], True, False)
        return out[0]


def _empty_like_positions(size: int) -> tuple[np.ndarray, np.ndarray]:
    rewards = np.zeros(size, np.float32)
    old = np.full(size, np.nan, np.float32)
    return rewards, old
