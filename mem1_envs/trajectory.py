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
:func:`gae_generated` on ``batch["rewards"]``, the critic's values and ``batch["loss_mask"]``
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

from collections.abc import Sequence
from dataclasses import dataclass, field

import numba
import numpy as np

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
    "gae_generated",
    "gae_generated_python",
    "kind_spans",
    "pack_exact",
    "pack_exact_python",
    "pack_mem1",
    "pack_records",
    "tile_counts",
    "tile_lists",
]

# Segment kinds of a token inside a turn (context or generated).
KIND_OTHER = 0  # separators, chat-template tokens: anything the protocol does not name
KIND_STATE = 1  # internal state (<think>/<IS> block)
KIND_ACTION = 2  # action (<search>/<answer> block)
KIND_OBSERVATION = 3  # observation written by the environment (<information> block)


class EpisodeTooLongError(ValueError):
    """The prompt plus the final turn alone do not fit the token budget (see D7 in the module)."""


IdsLike = Sequence[int] | np.ndarray


def _ids(values: IdsLike | None, name: str) -> np.ndarray:
    array = np.asarray([] if values is None else values, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of token ids, got shape {array.shape}")
    return array


# ----------------------------------------------------------------------------------------------
# Rollout records: what the collector fills, one per episode
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TurnRecord:
    """One turn of a rollout, as token ids.

    Attributes:
        context_ids: the tokens that followed the prompt in this turn's model input.
        generated_ids: the tokens the model generated this turn.
        context_kinds: a ``KIND_*`` per context token (None: all ``KIND_OTHER``).
        generated_kinds: a ``KIND_*`` per generated token (None: all ``KIND_ACTION``).
        old_logprobs: the sampler's log-prob of each generated token (None: unknown).
        reward: a per-turn reward, placed on this turn's last generated token.
    """

    context_ids: np.ndarray
    generated_ids: np.ndarray
    context_kinds: np.ndarray | None = None
    generated_kinds: np.ndarray | None = None
    old_logprobs: np.ndarray | None = None
    reward: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "context_ids", _ids(self.context_ids, "context_ids"))
        object.__setattr__(self, "generated_ids", _ids(self.generated_ids, "generated_ids"))
        if self.generated_ids.size == 0:
            raise ValueError("generated_ids must hold at least one token, got 0")
        for name, ids in (("context_kinds", self.context_ids), ("generated_kinds", self.generated_ids)):
            kinds = getattr(self, name)
            if kinds is not None:
                kinds = np.asarray(kinds, dtype=np.int8)
                if kinds.shape != ids.shape:
                    raise ValueError(f"{name} must have shape {ids.shape}, got {kinds.shape}")
                object.__setattr__(self, name, kinds)
        if self.old_logprobs is not None:
            logprobs = np.asarray(self.old_logprobs, dtype=np.float32)
            if logprobs.shape != self.generated_ids.shape:
                raise ValueError(
                    f"old_logprobs must have shape {self.generated_ids.shape}, got {logprobs.shape}"
                )
            object.__setattr__(self, "old_logprobs", logprobs)

    def kinds(self) -> tuple[np.ndarray, np.ndarray]:
        """Context and generated kinds with the defaults filled in."""
        context = self.context_kinds
        if context is None:
            context = np.full(self.context_ids.shape, KIND_OTHER, np.int8)
        generated = self.generated_kinds
        if generated is None:
            generated = np.full(self.generated_ids.shape, KIND_ACTION, np.int8)
        return context, generated


def kind_spans(kinds: IdsLike) -> list[tuple[int, int, int]]:
    """``(kind, start, end)`` runs of equal kinds.

    >>> kind_spans([1, 1, 2, 3, 3])
    [(1, 0, 2), (2, 2, 3), (3, 3, 5)]
    """
    kinds = np.asarray(kinds)
    spans: list[tuple[int, int, int]] = []
    start = 0
    for index in range(1, kinds.size + 1):
        if index == kinds.size or kinds[index] != kinds[start]:
            spans.append((int(kinds[start]), start, index))
            start = index
    return spans


@dataclass(frozen=True, eq=False)
class RolloutRecord:
    """One finished episode as the rollout collector saw it.

    Attributes:
        prompt_ids: the task prompt's tokens (the start of every turn's input).
        turns: the turns in order.
        reward: the task reward, placed on the episode's last generated token.

    >>> record = RolloutRecord([7, 8], [TurnRecord([], [1, 2]), TurnRecord([1, 2, 9], [3])], reward=1.0)
    >>> packed = record.pack()
    >>> packed.rewards.tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    """

    prompt_ids: np.ndarray
    turns: tuple[TurnRecord, ...]
    reward: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt_ids", _ids(self.prompt_ids, "prompt_ids"))
        object.__setattr__(self, "turns", tuple(self.turns))
        if not self.turns:
            raise ValueError("a rollout record needs at least one turn, got 0")

    def pack(self, max_tokens: int | None = None) -> PackedTrajectory:
        """The exact packing of this episode (see :func:`pack_exact`)."""
        return pack_exact(
            self.prompt_ids,
            [(turn.context_ids, turn.generated_ids) for turn in self.turns],
            max_tokens=max_tokens,
            turn_rewards=[turn.reward for turn in self.turns],
            final_reward=self.reward,
            old_logprobs=[turn.old_logprobs for turn in self.turns],
        )

    def mem1_steps(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(state, action, observation)`` ids per turn, for :func:`pack_mem1`.

        Needs MEM1-shaped contexts: turn k+1's context is turn k's generated tokens followed by
        turn k's observation (separators count as part of the observation). The state is the
        leading ``KIND_STATE`` run of the generated tokens. The last turn's observation is empty.
        """
        steps = []
        for index, turn in enumerate(self.turns):
            if index == 0 and turn.context_ids.size:
                raise ValueError(
                    f"turn 0 of a MEM1 episode has no context, got {turn.context_ids.size} tokens"
                )
            _, kinds = turn.kinds()
            state_len = int(np.argmin(kinds == KIND_STATE)) if (kinds != KIND_STATE).any() else kinds.size
            observation = np.zeros(0, np.int64)
            if index + 1 < len(self.turns):
                following = self.turns[index + 1].context_ids
                size = turn.generated_ids.size
                if following.size < size or not np.array_equal(following[:size], turn.generated_ids):
                    raise ValueError(
                        f"turn {index + 1}'s context does not start with turn {index}'s generated tokens: "
                        "not a MEM1-shaped episode"
                    )
                observation = following[size:]
            steps.append((turn.generated_ids[:state_len], turn.generated_ids[state_len:], observation))
        return steps


# ----------------------------------------------------------------------------------------------
# The packed form
# ----------------------------------------------------------------------------------------------


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


def pack_records(
    records: Sequence[RolloutRecord], max_tokens: int | None = None
) -> tuple[list[PackedTrajectory], list[int]]:
    """Pack records exactly under the D7 rule; returns ``(packed, skipped)`` where ``skipped``
    lists the indices of records whose prompt plus final turn exceed ``max_tokens`` (report them).

    >>> record = RolloutRecord([1] * 5, [TurnRecord([], [2, 3])])
    >>> packed, skipped = pack_records([record, RolloutRecord([1], [TurnRecord([], [2])])], max_tokens=4)
    >>> len(packed), skipped
    (1, [0])
    """
    packed, skipped = [], []
    for index, record in enumerate(records):
        try:
            packed.append(record.pack(max_tokens=max_tokens))
        except EpisodeTooLongError:
            skipped.append(index)
    return packed, skipped


# ----------------------------------------------------------------------------------------------
# MEM1's single-copy packing
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Dense masks
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _block_ranges(block_ids, visible):  # pragma: no cover - jit
    """Token range of every block, and (CSR) the other non-empty blocks each block sees."""
    size = block_ids.shape[0]
    n_blocks = visible.shape[0]
    start = np.zeros(n_blocks, np.int64)
    end = np.zeros(n_blocks, np.int64)
    count = np.zeros(n_blocks, np.int64)
    for i in range(size):
        b = block_ids[i]
        if count[b] == 0:
            start[b] = i
        end[b] = i + 1
        count[b] += 1
    for b in range(n_blocks):
        if count[b] != end[b] - start[b]:
            raise ValueError("the tokens of a block must be contiguous")
    seen_from = np.zeros(n_blocks + 1, np.int64)
    seen = np.zeros(n_blocks * n_blocks, np.int64)
    n = 0
    for s in range(n_blocks):
        for t in range(n_blocks):
            if t != s and visible[s, t] and count[t] > 0:
                seen[n] = t
                n += 1
        seen_from[s + 1] = n
    return start, end, seen_from, seen


@numba.njit(cache=True)
def _fill_one(out, block_ids, visible, allowed, blocked):  # pragma: no cover - jit
    size = block_ids.shape[0]
    start, end, seen_from, seen = _block_ranges(block_ids, visible)
    out[:, :] = blocked
    # Every allowed set is a union of contiguous ranges: fill ranges, never test pairs.
    for i in range(size):
        s = block_ids[i]
        for k in range(seen_from[s], seen_from[s + 1]):
            t = seen[k]
            out[i, start[t] : min(end[t], i + 1)] = allowed
        out[i, start[s] : i + 1] = allowed


@numba.njit(cache=True)
def _fill_batch(out, block_ids, visible, allowed, blocked):  # pragma: no cover - jit
    for b in range(out.shape[0]):
        _fill_one(out[b], block_ids[b], visible[b], allowed[b], blocked[b])


@numba.njit(cache=True)
def _tile_counts_kernel(block_ids, visible, tile):  # pragma: no cover - jit
    """Allowed (query, key) pairs per ``tile x tile`` tile of one row, from ranges alone."""
    size = block_ids.shape[0]
    n_tiles = size // tile
    start, end, seen_from, seen = _block_ranges(block_ids, visible)
    counts = np.zeros((n_tiles, n_tiles), np.int64)
    for i in range(size):
        q_tile = i // tile
        s = block_ids[i]
        for k in range(seen_from[s], seen_from[s + 1] + 1):
            if k < seen_from[s + 1]:
                t = seen[k]
                lo, hi = start[t], min(end[t], i + 1)
            else:
                lo, hi = start[s], i + 1
            if lo >= hi:
                continue
            for kv_tile in range(lo // tile, (hi - 1) // tile + 1):
                counts[q_tile, kv_tile] += min(hi, (kv_tile + 1) * tile) - max(lo, kv_tile * tile)
    return counts


def tile_counts(block_ids: np.ndarray, block_visible: np.ndarray, tile: int) -> np.ndarray:
    """``[S/tile, S/tile]`` counts of allowed pairs per tile of one row, without an ``S x S`` mask.

    A tile is empty (0), full (``tile**2``) or partial: what a FlexAttention ``BlockMask`` needs.
    ``S`` must be a multiple of ``tile``.

    >>> packed = pack_exact([1, 2], [([], [3, 4])])
    >>> tile_counts(packed.block_ids, packed.block_visible, 2).tolist()
    [[3, 0], [4, 3]]
    """
    size = int(np.asarray(block_ids).shape[0])
    if tile < 1 or size % tile:
        raise ValueError(f"the sequence length ({size}) must be a multiple of tile (got tile={tile})")
    return _tile_counts_kernel(
        np.ascontiguousarray(block_ids, dtype=np.int64),
        np.ascontiguousarray(block_visible, dtype=np.bool_),
        tile,
    )


@numba.njit(cache=True)
def _tile_lists_kernel(counts, full_count):  # pragma: no cover - jit
    n = counts.shape[0]
    partial_num = np.zeros(n, np.int32)
    partial_idx = np.zeros((n, n), np.int32)
    full_num = np.zeros(n, np.int32)
    full_idx = np.zeros((n, n), np.int32)
    for q in range(n):
        for k in range(n):
            c = counts[q, k]
            if c == full_count:
                full_idx[q, full_num[q]] = k
                full_num[q] += 1
            elif c > 0:
                partial_idx[q, partial_num[q]] = k
                partial_num[q] += 1
    return partial_num, partial_idx, full_num, full_idx


def tile_lists(counts: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """FlexAttention's block lists from :func:`tile_counts`: ``(partial_num, partial_idx, full_num,
    full_idx)``, per query tile the number and (first columns of) indices of its key tiles."""
    return _tile_lists_kernel(np.ascontiguousarray(counts, dtype=np.int64), tile * tile)


def fill_dense_masks(
    out: np.ndarray,
    block_ids: np.ndarray,
    block_visible: np.ndarray,
    allowed: object,
    blocked: object,
) -> np.ndarray:
    """Write ``allowed``/``blocked`` into ``out[b, i, j]`` (``[B, S, S]``, any numeric or bool dtype).

    ``block_ids`` is ``[B, S]`` (blocks contiguous per row), ``block_visible`` ``[B, K, K]``;
    ``allowed``/``blocked`` are scalars or one value per row (how the released-rules D1 rows
    differ). Returns ``out``.
    """
    rows = out.shape[0]
    allowed_rows = np.broadcast_to(np.asarray(allowed, dtype=out.dtype), (rows,)).copy()
    blocked_rows = np.broadcast_to(np.asarray(blocked, dtype=out.dtype), (rows,)).copy()
    _fill_batch(
        out,
        np.ascontiguousarray(block_ids, dtype=np.int64),
        np.ascontiguousarray(block_visible, dtype=np.bool_),
        allowed_rows,
        blocked_rows,
    )
    return out


def dense_mask_python(block_ids: Sequence[int], block_visible: np.ndarray) -> np.ndarray:
    """Plain-Python twin of the dense mask: the rule itself, pair by pair (the test oracle)."""
    size = len(block_ids)
    mask = np.zeros((size, size), np.bool_)
    for i in range(size):
        for j in range(i + 1):
            mask[i, j] = bool(block_visible[block_ids[i], block_ids[j]])
    return mask


# ----------------------------------------------------------------------------------------------
# Advantages over generated tokens only
# ----------------------------------------------------------------------------------------------


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
