"""MEM1's single-copy reference packing (:func:`pack_mem1`): cheaper than :func:`pack_exact
<mem1_envs.trajectory.packing.pack_exact>` but exact for turns 0 and 1 only (D5); with
``released_rules=True`` it reproduces the released code's defects D1-D4."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mem1_envs.trajectory.packed import IdsLike, PackedTrajectory, _empty_like_positions, _ids

__all__ = ["pack_mem1"]


def pack_mem1(
    prompt_ids: IdsLike,
    steps: Sequence[tuple[IdsLike, IdsLike, IdsLike]],
    *,
    released_rules: bool = False,
    final_reward: float = 0.0,
) -> PackedTrajectory:
    """MEM1's single-copy packing ``q | t0 r0 i0 | t1 r1 i1 | ...`` (approximate, see D5).

    ``steps`` holds ``(state_ids, action_ids, observation_ids)`` per turn; at rollout turn j saw
    ``q t_{j-1} r_{j-1} i_{j-1}`` (exactly these tokens, positions from 0) and generated
    ``t_j r_j``. Segment visibility (``x`` = sees; every segment also sees itself causally)::

                 fixed (default)                      released_rules=True
        t_j, r_j  q, t_{j-1}, r_{j-1}, i_{j-1}, t_j    q, r_{j-1}, i_{j-1}, t_j    (D2)
        i_j       q, t_j, r_j                          itself only                 (D3)
        positions restart after q every turn           0..S-1 straight through     (D4)

    With ``released_rules=True`` the trajectory is flagged so that collation also reproduces
    D1 (a 1.0/0.0 mask *added* to the scores, which masks nothing). Turns 0 and 1 are exact
    with the fixed rules; later turns are not (D5): use :func:`pack_exact` for exactness.

    >>> packed = pack_mem1([9], [([1], [2], [3]), ([4], [5], [])])
    >>> packed.input_ids.tolist(), packed.position_ids.tolist()
    ([9, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5])
    >>> released = pack_mem1([9], [([1], [2], [3]), ([4], [5], [])], released_rules=True)
    >>> released.dense_mask().astype(int)[4].tolist()  # t1 does not see t0 (D2)
    [1, 0, 1, 1, 1, 0]
    """
    prompt = _ids(prompt_ids, "prompt_ids")
    if prompt.size == 0:
        raise ValueError("prompt_ids must hold at least one token, got 0")
    if not steps:
        raise ValueError("steps must hold at least one (state, action, observation) triple, got 0")
    segments = [prompt]
    for j, (state, action, observation) in enumerate(steps):
        state, action = _ids(state, f"steps[{j}] state"), _ids(action, f"steps[{j}] action")
        if state.size + action.size == 0:
            raise ValueError(f"steps[{j}] generated nothing (empty state and action)")
        segments += [state, action, _ids(observation, f"steps[{j}] observation")]
    n_segments = len(segments)
    lengths = np.array([s.size for s in segments], np.int64)
    input_ids = np.concatenate(segments)
    block_ids = np.repeat(np.arange(n_segments, dtype=np.int32), lengths)
    size = input_ids.size
    visible = np.eye(n_segments, dtype=np.bool_)
    position_ids = np.arange(size, dtype=np.int64)
    loss_mask = np.zeros(size, np.bool_)
    turn_index = np.full(size, -1, np.int32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    n_prompt = prompt.size
    previous_context = 0  # |t_{j-1} r_{j-1} i_{j-1}|
    for j in range(len(steps)):
        t, r, i = 1 + 3 * j, 2 + 3 * j, 3 + 3 * j
        for seg in (t, r):
            visible[seg, 0] = True
            visible[seg, t] = True
            if j > 0:
                visible[seg, t - 3 + (1 if released_rules else 0) : t] = True  # D2 drops t_{j-1}
        if not released_rules:
            visible[i, [0, t, r]] = True
        generated = slice(starts[t], starts[r] + lengths[r])
        loss_mask[generated] = True
        turn_index[starts[t] : starts[i] + lengths[i]] = j
        if not released_rules:
            position_ids[generated] = n_prompt + previous_context + np.arange(lengths[t] + lengths[r])
            position_ids[starts[i] : starts[i] + lengths[i]] = (
                n_prompt + lengths[t] + lengths[r] + np.arange(lengths[i])
            )
        previous_context = int(lengths[t] + lengths[r] + lengths[i])
    pred_index = np.where(loss_mask, np.arange(size) - 1, -1).astype(np.int64)
    rewards, old = _empty_like_positions(size)
    rewards[np.flatnonzero(loss_mask)[-1]] = np.float32(final_reward)
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
        released_rules=released_rules,
    )
