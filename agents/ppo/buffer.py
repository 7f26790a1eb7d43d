"""The rollout buffer: packed episodes, per-token arrays, and the choice of advantage estimator.

One buffer holds one rank's share of a training batch. Each episode is packed exactly
(:func:`mem1_envs.trajectory.pack_exact`); per-token arrays of its packed length carry the
sampler's log-probs, the reference log-probs, the values, the rewards (task reward on the last
generated token, ``-beta * k1`` on every generated token in MEM1's mode), the advantages and the
returns. Only generated tokens carry any of these; context copies and observations are never
stepped through. The estimators (``gae``, ``turn``, ``grpo``, ``gigpo``) live in
:mod:`agents.ppo.advantages`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.ppo.advantages import (
    _returns_to_go,
    gae_generated,
    gigpo_step_advantages,
    grpo_advantages,
    step_key,
    turn_gae,
)
from agents.ppo.losses import kl_k1
from mem1_envs.trajectory import PackedTrajectory, RolloutRecord, pack_records

__all__ = ["RolloutBuffer"]


@dataclass
class RolloutBuffer:
    """One rank's episodes of a batch and their per-token training arrays.

    Attributes:
        packed: the exact packing of each episode.
        group_ids: the prompt group of each episode (GRPO/GiGPO).
        step_keys: per episode, one key per kept turn (hash of its bounded context).
        arrays: per-token arrays by name, each a list with one ``[S_i]`` float32 array per episode.
        skipped: indices of input records left out by the D7 rule (answer would not fit).
    """

    packed: list[PackedTrajectory]
    group_ids: np.ndarray
    step_keys: list[list[str]]
    arrays: dict[str, list[np.ndarray]] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)

    @classmethod
    def from_records(
        cls,
        records: Sequence[RolloutRecord],
        group_ids: Sequence[int] | None = None,
        max_tokens: int | None = None,
    ) -> RolloutBuffer:
        """Pack each record (D7 rule: a record whose prompt + final turn exceed ``max_tokens`` is
        left out and listed in ``skipped``); the caller then fills ``old_logprobs``/``ref_logprobs``/``values``."""
        packed, skipped = pack_records(records, max_tokens)
        kept = [i for i in range(len(records)) if i not in set(skipped)]
        keys = [
            [
                step_key(turn.context_ids)
                for k, turn in enumerate(records[i].turns)
                if k not in p.dropped_turns
            ]
            for i, p in zip(kept, packed, strict=True)
        ]
        groups = np.arange(len(records)) if group_ids is None else np.asarray(group_ids)
        buffer = cls(packed, groups[kept], keys, skipped=skipped)
        buffer.arrays["task_rewards"] = [p.rewards.astype(np.float32) for p in packed]
        buffer.arrays["rollout_logprobs"] = [np.nan_to_num(p.old_logprobs, nan=0.0) for p in packed]
        return buffer

    def __len__(self) -> int:
        return len(self.packed)

    @property
    def loss_masks(self) -> list[np.ndarray]:
        return [p.loss_mask for p in self.packed]

    def _turns(self, index: int) -> list[np.ndarray]:
        """Packed indices of the generated tokens of each kept turn, in order."""
        p = self.packed[index]
        kept = [k for k in np.unique(p.turn_index[p.loss_mask])]
        return [np.flatnonzero(p.loss_mask & (p.turn_index == k)) for k in kept]

    def compute_advantages(
        self,
        mode: str,
        *,
        kl_coef: float = 0.0,
        kl_in_reward: bool = False,
        gamma: float = 1.0,
        lam: float = 1.0,
        gigpo_step_weight: float = 1.0,
    ) -> None:
        """Fill ``rewards``, ``advantages`` and ``returns`` (before whitening) for every episode."""
        rewards, advantages, returns = [], [], []
        for i, p in enumerate(self.packed):
            reward = self.arrays["task_rewards"][i].copy()
            if kl_in_reward and kl_coef:
                k1 = kl_k1(self.arrays["old_logprobs"][i], self.arrays["ref_logprobs"][i])
                reward -= np.where(p.loss_mask, kl_coef * k1, 0.0).astype(np.float32)
            rewards.append(reward)
        if mode == "gae":
            for i, p in enumerate(self.packed):
                adv, ret = gae_generated(rewards[i], self.arrays["values"][i], p.loss_mask, gamma, lam)
                advantages.append(adv)
                returns.append(ret)
        elif mode == "turn":
            for i, p in enumerate(self.packed):
                turns = self._turns(i)
                turn_rewards = np.array([rewards[i][idx].sum() for idx in turns])
                turn_values = np.array([self.arrays["values"][i][idx[0]] for idx in turns])
                adv_t, ret_t = turn_gae(turn_rewards, turn_values, gamma, lam)
                adv, ret = np.zeros(len(p), np.float32), np.zeros(len(p), np.float32)
                for idx, a, r in zip(turns, adv_t, ret_t, strict=True):
                    adv[idx], ret[idx] = a, r
                advantages.append(adv)
                returns.append(ret)
        elif mode in ("grpo", "gigpo"):
            episode_returns = np.array(
                [r[p.loss_mask].sum() for r, p in zip(rewards, self.packed, strict=True)]
            )
            episode_adv = grpo_advantages(episode_returns, self.group_ids)
            step_adv = None
            if mode == "gigpo":
                turn_rewards = [
                    np.array([rewards[i][idx].sum() for idx in self._turns(i)]) for i in range(len(self))
                ]
                step_adv = gigpo_step_advantages(
                    self.group_ids, self.step_keys, [_returns_to_go(t, gamma) for t in turn_rewards]
                )
            for i, p in enumerate(self.packed):
                adv = np.where(p.loss_mask, episode_adv[i], 0.0).astype(np.float32)
                if step_adv is not None:
                    for idx, value in zip(self._turns(i), step_adv[i], strict=True):
                        adv[idx] += gigpo_step_weight * value
                advantages.append(adv)
                returns.append(np.where(p.loss_mask, episode_returns[i], 0.0).astype(np.float32))
        else:
            raise ValueError(f"advantage mode must be 'gae', 'turn', 'grpo' or 'gigpo', got {mode!r}")
        self.arrays["rewards"] = rewards
        self.arrays["advantages"] = advantages
        self.arrays["returns"] = returns

    def whiten(self, name: str, all_reduce: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        """Whiten ``arrays[name]`` over the loss tokens of the *global* batch (``all_reduce`` sums
        ``[sum, sum of squares, count]`` across ranks)."""
        values = np.concatenate([a[m] for a, m in zip(self.arrays[name], self.loss_masks, strict=True)])
        stats = np.array([values.sum(), (values.astype(np.float64) ** 2).sum(), values.size], np.float64)
        if all_reduce is not None:
            stats = all_reduce(stats)
        mean = stats[0] / max(stats[2], 1.0)
        var = max(stats[1] / max(stats[2], 1.0) - mean**2, 0.0)
        scale = 1.0 / np.sqrt(var + 1e-8)
        self.arrays[name] = [
            np.where(m, (a - mean) * scale, 0.0).astype(np.float32)
            for a, m in zip(self.arrays[name], self.loss_masks, strict=True)
        ]

    def micro_batches(
        self, indices: Sequence[int], *, episodes: int = 1, max_tokens: int | None = None
    ) -> list[list[list[int]]]:
        """Split ``indices`` into micro-batches, each a list of rows, each row a list of episodes.

        Without ``max_tokens``: ``episodes`` episodes per micro-batch, one per row (in order).
        With ``max_tokens``: one row per micro-batch holding several episodes (sequence packing),
        filled first-fit by decreasing length so that no row exceeds ``max_tokens`` tokens; an
        episode longer than the budget raises ValueError (bound it with ``max_packed_tokens``).

        >>> from mem1_envs.trajectory import RolloutRecord, TurnRecord
        >>> records = [RolloutRecord([1] * n, [TurnRecord([], [2])]) for n in (5, 2, 3, 1)]
        >>> buffer = RolloutBuffer.from_records(records)
        >>> [len(p) for p in buffer.packed]
        [6, 3, 4, 2]
        >>> buffer.micro_batches(range(4), max_tokens=7)
        [[[0]], [[2, 1]], [[3]]]
        >>> buffer.micro_batches(range(4), episodes=3)
        [[[0], [1], [2]], [[3]]]
        """
        indices = [int(i) for i in indices]
        if max_tokens is None:
            if episodes < 1:
                raise ValueError(f"episodes must be >= 1, got {episodes}")
            return [[[i] for i in indices[s : s + episodes]] for s in range(0, len(indices), episodes)]
        lengths = {i: len(self.packed[i]) for i in indices}
        too_long = [(i, n) for i, n in lengths.items() if n > max_tokens]
        if too_long:
            i, n = too_long[0]
            raise ValueError(
                f"episode {i} has {n} packed tokens, more than max_tokens_per_microbatch={max_tokens}; "
                "set max_packed_tokens <= max_tokens_per_microbatch (the D7 rule then drops its earliest "
                "turns) or raise the budget"
            )
        rows: list[list[int]] = []
        used: list[int] = []
        for i in sorted(indices, key=lambda j: (-lengths[j], j)):
            for r, total in enumerate(used):
                if total + lengths[i] <= max_tokens:
                    rows[r].append(i)
                    used[r] += lengths[i]
                    break
            else:
                rows.append([i])
                used.append(lengths[i])
        return [[row] for row in rows]

    def collate(
        self,
        rows: Sequence[int | Sequence[int]],
        device: Any = None,
        dtype: Any = None,
        mask: str = "dense",
    ) -> dict[str, Any]:
        """A collated torch batch with every per-token array as a ``[B, S]`` tensor.

        Each entry of ``rows`` is an episode index (one episode per row) or a list of them, packed
        into one row with :func:`~mem1_envs.trajectory.concat_packed` (blocks of different
        episodes never attend to each other; each keeps its positions). ``mask="block"``: a
        FlexAttention ``BlockMask`` built from the block ids, rows padded to a multiple of 128.
        ``batch["rows"]`` is the list of episode lists (see :meth:`split`).
        """
        import torch

        from mem1_envs.trajectory import concat_packed
        from mem1_envs.trajectory_torch import collate

        groups = [[int(r)] if isinstance(r, (int, np.integer)) else [int(i) for i in r] for r in rows]
        chosen = [
            self.packed[group[0]] if len(group) == 1 else concat_packed([self.packed[i] for i in group])
            for group in groups
        ]
        multiple = 128 if mask == "block" else 1
        batch = collate(chosen, dtype=dtype, device=device, mask=mask, pad_to_multiple_of=multiple)
        size = batch["input_ids"].shape[1]
        for name, per_episode in self.arrays.items():
            stacked = np.zeros((len(groups), size), np.float32)
            for row, group in enumerate(groups):
                start = 0
                for i in group:
                    stacked[row, start : start + len(per_episode[i])] = per_episode[i]
                    start += len(per_episode[i])
            batch[name] = torch.from_numpy(stacked).to(device)
        batch["rows"] = groups
        return batch

    def split(self, values: Any, rows: Sequence[Sequence[int]]) -> dict[int, np.ndarray]:
        """Per-episode float32 arrays cut out of a ``[B, S]`` output of a batch collated with
        ``rows`` (right padding): ``{episode index: array of its packed length}``."""
        out: dict[int, np.ndarray] = {}
        array = values.detach().float().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
        for row, group in enumerate(rows):
            start = 0
            for i in group:
                n = len(self.packed[i])
                out[i] = array[row, start : start + n].astype(np.float32)
                start += n
        return out
