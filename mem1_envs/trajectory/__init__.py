"""Packing multi-turn episodes for training: positions, loss and attention masks.

A bounded-memory agent re-encodes a fresh context every turn, so one episode is not one causal
sequence. To recompute, in one forward pass, the log-probability of every generated token
exactly as the model produced it, :func:`pack_exact` lays the episode out as ::

    prompt | turn 0: context_0 generated_0 | turn 1: context_1 generated_1 | ...

where ``context_k`` is whatever followed the prompt in turn k's input (for MEM1: the previous
internal state, action and observation; for ``window``/``full``: several past turns), copied as
context-only tokens (no loss). Each block attends to the prompt and causally to itself, and its
position ids restart right after the prompt, exactly as at rollout. A prompt of 2 tokens, a
first turn with no context and 2 generated tokens, a second turn with 1 context token and 1
generated token (``x`` = may attend, ``G`` = generated, loss on it)::

                 p0 p1 G  G  c  G        position  block  loss
        p0       x  .  .  .  .  .           0        0
        p1       x  x  .  .  .  .           1        0
    t0  G        x  x  x  .  .  .           2        1     yes
    t0  G        x  x  x  x  .  .           3        1     yes
    t1  c        x  x  .  .  x  .           2        2
    t1  G        x  x  .  .  x  x           3        2     yes

The mask is stored compactly: a block id per token plus a small ``[blocks, blocks]`` table of
which blocks see which; token ``i`` may attend token ``j`` when ``j <= i`` and
``block_visible[block_ids[i], block_ids[j]]``. :meth:`PackedTrajectory.dense_mask` expands it
(a numba kernel filling contiguous ranges); ``mem1_envs.trajectory_torch`` turns a batch into
Hugging Face inputs (an *additive* float mask, never a True/False one) or a FlexAttention
``BlockMask`` built from the block ids with no ``S x S`` tensor.

The logits that predict a generated token sit on the token before it *in its turn's input*:
``pred_index`` gives that packed index (the previous token in the block, or the prompt's last
token when the turn's context is empty; the prompt's last hidden state is the same in every
turn, so sharing it is exact).

:func:`pack_mem1` is MEM1's cheaper single-copy packing ``q, t0, r0, i0, t1, r1, i1, ...``
(t = internal state, r = action, i = observation) with the released code's defects D1-D4
fixed, or reproduced with ``released_rules=True``. It is exact for turns 0 and 1 only: from
turn 2 on, the kept segments were re-encoded at rollout with other neighbours and positions
(D5), which a single copy cannot represent.

Truncation (D7). ``pack_exact(..., max_tokens=n)`` never cuts a token out of a block: when the
packed episode is longer than ``n``, whole *earliest* turns are dropped (they carry no loss in
this sample; the other blocks are unchanged because blocks never see each other) until it
fits, and :attr:`PackedTrajectory.dropped_turns` reports which. The last turn, which carries the
final answer and the task reward, is never dropped: when the prompt plus the last turn alone
exceed ``n``, :class:`EpisodeTooLongError` is raised so the caller skips (and counts) the
episode instead of training on a reward whose answer it cut away (:func:`pack_records` does
that and lists the skipped episodes).

The trainer's path: the rollout collector fills one :class:`RolloutRecord` per episode; then
``batch = collate_records(records)`` (``mem1_envs.trajectory_torch``), one model forward,
``gather_logprobs(logits, batch)`` for per-token log-probs aligned with ``input_ids``, and
:func:`agents.ppo.advantages.gae_generated` on ``batch["rewards"]``, the critic's values and ``batch["loss_mask"]``
(with ``episode_index`` when rows pack several episodes).

>>> packed = pack_exact([7, 8], [([], [1, 2]), ([5], [3])])
>>> packed.input_ids.tolist(), packed.position_ids.tolist()
([7, 8, 1, 2, 5, 3], [0, 1, 2, 3, 2, 3])
>>> packed.loss_mask.astype(int).tolist(), packed.block_ids.tolist()
([0, 0, 1, 1, 0, 1], [0, 0, 1, 1, 2, 2])
>>> packed.dense_mask().astype(int)[5].tolist()  # the last generated token
[1, 1, 0, 0, 1, 1]
>>> packed.pred_index.tolist()  # which logits predict each generated token (-1: no loss)
[-1, -1, 1, 2, -1, 4]
"""

from __future__ import annotations

from mem1_envs.trajectory.masks import dense_mask_python, fill_dense_masks, tile_counts, tile_lists
from mem1_envs.trajectory.mem1_reference import pack_mem1
from mem1_envs.trajectory.packed import PackedTrajectory
from mem1_envs.trajectory.packing import (
    EpisodeTooLongError,
    _pack_exact_kernel,  # noqa: F401 - private, but tests/test_trajectory.py imports it from here
    concat_packed,
    pack_exact,
    pack_exact_python,
)
from mem1_envs.trajectory.records import (
    KIND_ACTION,
    KIND_OBSERVATION,
    KIND_OTHER,
    KIND_STATE,
    RolloutRecord,
    TurnRecord,
    kind_spans,
    pack_records,
)

__all__ = [
    "KIND_ACTION",
    "KIND_OBSERVATION",
    "KIND_OTHER",
    "KIND_STATE",
    "EpisodeTooLongError",
    "PackedTrajectory",
    "RolloutRecord",
    "TurnRecord",
    "concat_packed",
    "dense_mask_python",
    "fill_dense_masks",
    "kind_spans",
    "pack_exact",
    "pack_exact_python",
    "pack_mem1",
    "pack_records",
    "tile_counts",
    "tile_lists",
]
