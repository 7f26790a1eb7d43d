"""Exact packing of an episode (:func:`pack_exact`, its numba kernel and plain-Python twin),
the D7 token-budget rule, and sequence packing of several episodes in one row
(:func:`concat_packed`).

Truncation (D7) is described in the :mod:`mem1_envs.trajectory` docstring."""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from mem1_envs.errors import Mem1EnvsError
from mem1_envs.trajectory.packed import IdsLike, PackedTrajectory, _empty_like_positions, _ids

__all__ = ["EpisodeTooLongError", "concat_packed", "pack_exact", "pack_exact_python"]


class EpisodeTooLongError(Mem1EnvsError, ValueError):
    """The prompt plus the final turn alone do not fit the token budget (D7 in mem1_envs.trajectory)."""


@numba.njit(cache=True)
def _pack_exact_kernel(prompt, ctx_flat, ctx_off, gen_flat, gen_off, keep):  # pragma: no cover - jit
    n_prompt = prompt.shape[0]
    n_turns = ctx_off.shape[0] - 1
    size = n_prompt
    for k in range(n_turns):
        if keep[k]:
            size += ctx_off[k + 1] - ctx_off[k] + gen_off[k + 1] - gen_off[k]
    input_ids = np.empty(size, np.int64)
    position_ids = np.empty(size, np.int64)
    block_ids = np.empty(size, np.int32)
    turn_index = np.empty(size, np.int32)
    loss_mask = np.zeros(size, np.bool_)
    pred_index = np.full(size, -1, np.int64)
    for i in range(n_prompt):
        input_ids[i] = prompt[i]
        position_ids[i] = i
        block_ids[i] = 0
        turn_index[i] = -1
    i = n_prompt
    block = 1
    for k in range(n_turns):
        if not keep[k]:
            continue
        block_start = i
        position = n_prompt
        for c in range(ctx_off[k], ctx_off[k + 1]):
            input_ids[i] = ctx_flat[c]
            position_ids[i] = position
            block_ids[i] = block
            turn_index[i] = k
            position += 1
            i += 1
        for g in range(gen_off[k], gen_off[k + 1]):
            input_ids[i] = gen_flat[g]
            position_ids[i] = position
            block_ids[i] = block
            turn_index[i] = k
            loss_mask[i] = True
            # An empty context: the first generated token is predicted by the prompt's end.
            pred_index[i] = i - 1 if i > block_start else n_prompt - 1
            position += 1
            i += 1
        block += 1
    return input_ids, position_ids, block_ids, turn_index, loss_mask, pred_index


def pack_exact_python(
    prompt: np.ndarray, contexts: Sequence[np.ndarray], generated: Sequence[np.ndarray], keep: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Plain-Python twin of the packing kernel (the test oracle)."""
    ids: list[int] = list(prompt)
    positions = list(range(len(prompt)))
    blocks = [0] * len(prompt)
    turns = [-1] * len(prompt)
    loss = [False] * len(prompt)
    pred = [-1] * len(prompt)
    block = 1
    for k, (context, gen) in enumerate(zip(contexts, generated, strict=True)):
        if not keep[k]:
            continue
        start = len(ids)
        for offset, token in enumerate(list(context) + list(gen)):
            is_generated = offset >= len(context)
            ids.append(int(token))
            positions.append(len(prompt) + offset)
            blocks.append(block)
            turns.append(k)
            loss.append(is_generated)
            if not is_generated:
                pred.append(-1)
            elif len(ids) - 1 > start:
                pred.append(len(ids) - 2)
            else:
                pred.append(len(prompt) - 1)
        block += 1
    return (
        np.array(ids, np.int64),
        np.array(positions, np.int64),
        np.array(blocks, np.int32),
        np.array(turns, np.int32),
        np.array(loss, np.bool_),
        np.array(pred, np.int64),
    )


def _flatten(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(arrays) + 1, np.int64)
    offsets[1:] = np.cumsum([a.size for a in arrays])
    flat = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
    return flat.astype(np.int64, copy=False), offsets


def _keep_for_budget(prompt_len: int, block_lens: np.ndarray, max_tokens: int | None) -> np.ndarray:
    """The D7 rule: drop whole earliest turns until the packed episode fits."""
    keep = np.ones(block_lens.size, np.bool_)
    if max_tokens is None:
        return keep
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")
    last = prompt_len + int(block_lens[-1])
    if last > max_tokens:
        raise EpisodeTooLongError(
            f"prompt ({prompt_len} tokens) plus the final turn ({int(block_lens[-1])} tokens) exceed "
            f"max_tokens={max_tokens}: the final answer cannot be kept, skip this episode"
        )
    total = prompt_len + int(block_lens.sum())
    for k in range(block_lens.size - 1):
        if total <= max_tokens:
            break
        keep[k] = False
        total -= int(block_lens[k])
    return keep


def pack_exact(
    prompt_ids: IdsLike,
    turns: Sequence[tuple[IdsLike, IdsLike]],
    *,
    max_tokens: int | None = None,
    turn_rewards: Sequence[float] | None = None,
    final_reward: float = 0.0,
    old_logprobs: Sequence[np.ndarray | None] | None = None,
) -> PackedTrajectory:
    """Pack an episode so every generated token sees exactly its rollout context and positions.

    Args:
        prompt_ids: the task prompt (at least one token).
        turns: ``(context_ids, generated_ids)`` per turn; context = what followed the prompt in
            that turn's model input (any memory policy: mem1, window, full, ...).
        max_tokens: packed-length budget; the D7 rule of the module docstring applies.
        turn_rewards: optional reward per turn, put on that turn's last generated token.
        final_reward: the task reward, put on the episode's last generated token.
        old_logprobs: optional sampler log-probs per turn (one per generated token, or None).
    """
    prompt = _ids(prompt_ids, "prompt_ids")
    if prompt.size == 0:
        raise ValueError("prompt_ids must hold at least one token (its end predicts the first one), got 0")
    if not turns:
        raise ValueError("turns must hold at least one (context_ids, generated_ids) pair, got 0")
    contexts = [_ids(c, f"turns[{k}] context") for k, (c, _) in enumerate(turns)]
    generated = [_ids(g, f"turns[{k}] generated") for k, (_, g) in enumerate(turns)]
    for k, gen in enumerate(generated):
        if gen.size == 0:
            raise ValueError(f"turns[{k}] generated ids must hold at least one token, got 0")
    block_lens = np.array([c.size + g.size for c, g in zip(contexts, generated, strict=True)], np.int64)
    keep = _keep_for_budget(prompt.size, block_lens, max_tokens)
    ctx_flat, ctx_off = _flatten(contexts)
    gen_flat, gen_off = _flatten(generated)
    input_ids, position_ids, block_ids, turn_index, loss_mask, pred_index = _pack_exact_kernel(
        prompt, ctx_flat, ctx_off, gen_flat, gen_off, keep
    )
    n_blocks = int(keep.sum()) + 1
    visible = np.eye(n_blocks, dtype=np.bool_)
    visible[:, 0] = True
    rewards, old = _empty_like_positions(input_ids.size)
    last_of_turn = {int(t): i for i, t in enumerate(turn_index) if loss_mask[i]}
    if turn_rewards is not None:
        if len(turn_rewards) != len(turns):
            raise ValueError(f"turn_rewards needs one value per turn ({len(turns)}), got {len(turn_rewards)}")
        for k, reward in enumerate(turn_rewards):
            if keep[k]:
                rewards[last_of_turn[k]] += np.float32(reward)
    rewards[np.flatnonzero(loss_mask)[-1]] += np.float32(final_reward)
    if old_logprobs is not None:
        if len(old_logprobs) != len(turns):
            raise ValueError(f"old_logprobs needs one entry per turn ({len(turns)}), got {len(old_logprobs)}")
        for k, values in enumerate(old_logprobs):
            if values is None or not keep[k]:
                continue
            where = np.flatnonzero(loss_mask & (turn_index == k))
            values = np.asarray(values, np.float32)
            if values.shape != where.shape:
                raise ValueError(f"old_logprobs[{k}] must have shape {where.shape}, got {values.shape}")
            old[where] = values
    return PackedTrajectory(
        input_ids=input_ids,
        position_ids=position_ids,
        loss_mask=loss_mask,
        block_ids=block_ids,
        block_visible=visible,
        pred_index=pred_index,
        turn_index=turn_index,
        rewards=rewards,
        old_logprobs=old,
        dropped_turns=tuple(int(k) for k in np.flatnonzero(~keep)),
    )


def concat_packed(parts: Sequence[PackedTrajectory]) -> PackedTrajectory:
    """Several packed episodes in one row (sequence packing); blocks of different episodes never
    see each other, and each keeps its own positions.

    >>> a, b = pack_exact([1], [([], [2])]), pack_exact([3, 4], [([], [5])])
    >>> row = concat_packed([a, b])
    >>> row.pred_index.tolist(), row.dense_mask().astype(int)[4].tolist()
    ([-1, 0, -1, -1, 3], [0, 0, 1, 1, 1])
    """
    if not parts:
        raise ValueError("concat_packed needs at least one trajectory, got 0")
    if len({p.released_rules for p in parts}) > 1:
        raise ValueError("cannot mix released-rules and fixed trajectories in one row")
    n_blocks = sum(p.num_blocks for p in parts)
    visible = np.zeros((n_blocks, n_blocks), np.bool_)
    block_ids, pred_index, episode_index = [], [], []
    token_offset = block_offset = episode_offset = 0
    for p in parts:
        visible[block_offset : block_offset + p.num_blocks, block_offset : block_offset + p.num_blocks] = (
            p.block_visible
        )
        block_ids.append(p.block_ids + block_offset)
        pred_index.append(np.where(p.pred_index >= 0, p.pred_index + token_offset, -1))
        episode_index.append(p.episode_index + episode_offset)
        episode_offset += int(p.episode_index.max()) + 1
        token_offset += len(p)
        block_offset += p.num_blocks
    return PackedTrajectory(
        input_ids=np.concatenate([p.input_ids for p in parts]),
        position_ids=np.concatenate([p.position_ids for p in parts]),
        loss_mask=np.concatenate([p.loss_mask for p in parts]),
        block_ids=np.concatenate(block_ids).astype(np.int32),
        block_visible=visible,
        pred_index=np.concatenate(pred_index).astype(np.int64),
        turn_index=np.concatenate([p.turn_index for p in parts]),
        rewards=np.concatenate([p.rewards for p in parts]),
        old_logprobs=np.concatenate([p.old_logprobs for p in parts]),
        dropped_turns=(),
        episode_index=np.concatenate(episode_index).astype(np.int32),
        released_rules=parts[0].released_rules,
    )
