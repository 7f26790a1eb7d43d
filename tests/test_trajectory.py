"""Packing, masks and GAE of mem1_envs.trajectory: numba kernels against their Python twins.

No torch here: this file runs in the ``core`` environment (and with ``NUMBA_DISABLE_JIT=1``).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.ppo.advantages import gae_generated, gae_generated_python
from mem1_envs.trajectory import (
    KIND_ACTION,
    KIND_OBSERVATION,
    KIND_STATE,
    EpisodeTooLongError,
    RolloutRecord,
    TurnRecord,
    _pack_exact_kernel,
    concat_packed,
    dense_mask_python,
    kind_spans,
    pack_exact,
    pack_exact_python,
    pack_mem1,
    pack_records,
    tile_counts,
)

ids = st.lists(st.integers(0, 50), max_size=6)
turn = st.tuples(ids, st.lists(st.integers(0, 50), min_size=1, max_size=6))
episode = st.tuples(
    st.lists(st.integers(0, 50), min_size=1, max_size=6), st.lists(turn, min_size=1, max_size=5)
)


@settings(max_examples=60, deadline=None)
@given(episode, st.data())
def test_pack_kernel_matches_python_twin(ep: tuple, data: st.DataObject) -> None:
    prompt, turns = ep
    keep = np.array(data.draw(st.lists(st.booleans(), min_size=len(turns), max_size=len(turns))), np.bool_)
    contexts = [np.array(c, np.int64) for c, _ in turns]
    generated = [np.array(g, np.int64) for _, g in turns]
    ctx_off = np.concatenate([[0], np.cumsum([c.size for c in contexts])]).astype(np.int64)
    gen_off = np.concatenate([[0], np.cumsum([g.size for g in generated])]).astype(np.int64)
    fast = _pack_exact_kernel(
        np.array(prompt, np.int64),
        np.concatenate(contexts).astype(np.int64),
        ctx_off,
        np.concatenate(generated).astype(np.int64),
        gen_off,
        keep,
    )
    slow = pack_exact_python(np.array(prompt, np.int64), contexts, generated, keep)
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=60, deadline=None)
@given(episode)
def test_dense_mask_matches_rule_and_rollout_contexts(ep: tuple) -> None:
    prompt, turns = ep
    packed = pack_exact(prompt, turns)
    dense = packed.dense_mask()
    np.testing.assert_array_equal(dense, dense_mask_python(packed.block_ids, packed.block_visible))
    # Independent check against the rollout: each generated token's visible tokens, read in
    # order, are exactly its turn's input up to itself, at positions 0, 1, 2, ...
    for i in np.flatnonzero(packed.loss_mask):
        k = packed.turn_index[i]
        context, generated = turns[k]
        seen = np.flatnonzero(dense[i])
        rollout_input = list(prompt) + list(context) + list(generated)
        assert packed.input_ids[seen].tolist() == rollout_input[: seen.size]
        assert packed.position_ids[seen].tolist() == list(range(seen.size))
        assert packed.input_ids[packed.pred_index[i]] == rollout_input[seen.size - 2]


@settings(max_examples=40, deadline=None)
@given(st.lists(episode, min_size=1, max_size=4))
def test_concat_packed_is_block_diagonal(episodes: list) -> None:
    parts = [pack_exact(p, t) for p, t in episodes]
    row = concat_packed(parts)
    dense = row.dense_mask()
    np.testing.assert_array_equal(dense, dense_mask_python(row.block_ids, row.block_visible))
    start = 0
    for part in parts:
        end = start + len(part)
        np.testing.assert_array_equal(dense[start:end, start:end], part.dense_mask())
        assert not dense[start:end, :start].any()
        np.testing.assert_array_equal(row.pred_index[start:end] >= 0, part.loss_mask)
        start = end


def _mem1_steps(rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return [
        (
            rng.integers(0, 9, rng.integers(0, 4)),
            rng.integers(0, 9, rng.integers(1, 4)),
            rng.integers(0, 9, rng.integers(0, 4)),
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("released", [False, True])
def test_pack_mem1_rules(released: bool) -> None:
    rng = np.random.default_rng(3)
    prompt = rng.integers(0, 9, 3)
    steps = _mem1_steps(rng, 4)
    packed = pack_mem1(prompt, steps, released_rules=released)
    dense = packed.dense_mask()
    np.testing.assert_array_equal(dense, dense_mask_python(packed.block_ids, packed.block_visible))
    assert packed.released_rules is released
    for j in range(len(steps)):
        t_seg = 1 + 3 * j
        visible_segments = set(np.flatnonzero(packed.block_visible[t_seg]).tolist())
        expected = {0, t_seg} | ({t_seg - 3, t_seg - 2, t_seg - 1} if j else set())
        if released:
            expected.discard(t_seg - 3)  # D2
        assert visible_segments == expected
        obs_seg = 3 + 3 * j
        assert set(np.flatnonzero(packed.block_visible[obs_seg]).tolist()) == (
            {obs_seg} if released else {0, t_seg, t_seg + 1, obs_seg}  # D3
        )
        assert packed.loss_mask[packed.block_ids == t_seg].all()
    if released:
        np.testing.assert_array_equal(packed.position_ids, np.arange(len(packed)))  # D4
    else:
        # Turn 1 is exact: its generated tokens see q t0 r0 i0 at positions 0.. in order.
        i = np.flatnonzero(packed.turn_index == 1)[0]
        seen = np.flatnonzero(dense[i])
        assert packed.position_ids[seen].tolist() == list(range(seen.size))


def test_record_round_trip_and_mem1_steps() -> None:
    state, action, obs = np.array([1, 2]), np.array([3]), np.array([4, 5])
    record = RolloutRecord(
        [9, 9],
        [
            TurnRecord(
                [],
                np.concatenate([state, action]),
                generated_kinds=[KIND_STATE] * 2 + [KIND_ACTION],
                old_logprobs=[-0.1, -0.2, -0.3],
                reward=0.5,
            ),
            TurnRecord(
                np.concatenate([state, action, obs]),
                [6],
                context_kinds=[KIND_STATE] * 2 + [KIND_ACTION] + [KIND_OBSERVATION] * 2,
            ),
        ],
        reward=2.0,
    )
    steps = record.mem1_steps()
    assert [s.tolist() for s in steps[0]] == [[1, 2], [3], [4, 5]]
    assert [s.tolist() for s in steps[1]] == [[], [6], []]
    packed = record.pack()
    assert packed.rewards[packed.loss_mask].tolist() == [0.0, 0.0, 0.5, 2.0]
    np.testing.assert_allclose(packed.old_logprobs[packed.loss_mask][:3], [-0.1, -0.2, -0.3])
    assert np.isnan(packed.old_logprobs[packed.loss_mask][3])
    assert kind_spans(record.turns[1].context_kinds) == [(1, 0, 2), (2, 2, 3), (3, 3, 5)]
    with pytest.raises(ValueError, match="not a MEM1-shaped"):
        RolloutRecord([9], [TurnRecord([], [1]), TurnRecord([2], [3])]).mem1_steps()


def test_d7_truncation_drops_earliest_turns_never_the_last() -> None:
    turns = [([], [1, 2, 3]), ([4], [5, 6]), ([7, 8], [9])]  # blocks of 3, 3, 3 tokens
    packed = pack_exact([0, 0], turns, max_tokens=8)
    assert packed.dropped_turns == (0,)
    assert len(packed) == 8 and set(packed.turn_index[packed.loss_mask].tolist()) == {1, 2}
    # The kept blocks are exactly those of the untruncated packing.
    full = pack_exact([0, 0], turns)
    np.testing.assert_array_equal(packed.input_ids[2:], full.input_ids[5:])
    np.testing.assert_array_equal(packed.position_ids[2:], full.position_ids[5:])
    assert pack_exact([0, 0], turns, max_tokens=5).dropped_turns == (0, 1)
    with pytest.raises(EpisodeTooLongError, match="max_tokens=4"):
        pack_exact([0, 0], turns, max_tokens=4)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: pack_exact([], [([], [1])]), "prompt_ids must hold at least one token"),
        (lambda: pack_exact([1], []), "turns must hold at least one"),
        (lambda: pack_exact([1], [([], [])]), "generated ids must hold at least one token, got 0"),
        (lambda: pack_exact([1], [([], [1])], max_tokens=0), "max_tokens must be >= 1 or None, got 0"),
        (lambda: pack_exact([1], [([[1]], [1])]), "must be a 1-D sequence"),
        (lambda: pack_mem1([1], [([], [], [3])]), "generated nothing"),
        (lambda: gae_generated([0.0], [0.0], [True], gamma=1.5), "gamma=1.5"),
        (lambda: TurnRecord([1], [2], old_logprobs=[0.1, 0.2]), "old_logprobs must have shape"),
    ],
)
def test_bad_arguments_name_the_value(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(0, 2**31 - 1),
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
)
def test_gae_kernel_matches_python_twin(size: int, seed: int, gamma: float, lam: float) -> None:
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(3, size)).astype(np.float32)
    values = rng.normal(size=(3, size)).astype(np.float32)
    mask = rng.random((3, size)) < 0.6
    episodes = np.sort(rng.integers(0, 3, (3, size)), axis=1)  # rows packing several episodes
    adv, ret = gae_generated(rewards, values, mask, gamma, lam, episode_index=episodes)
    for b in range(3):
        adv_py, ret_py = gae_generated_python(rewards[b], values[b], mask[b], gamma, lam, episodes[b])
        np.testing.assert_allclose(adv[b], adv_py, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ret[b], ret_py, rtol=1e-4, atol=1e-4)
    assert not adv[~mask].any()


def test_gae_skips_context_tokens_on_a_packed_episode() -> None:
    packed = pack_exact([1, 2], [([], [3, 4]), ([3, 4, 7], [5])], final_reward=1.0)
    values = np.arange(len(packed), dtype=np.float32)
    adv, ret = gae_generated(packed.rewards, values, packed.loss_mask, gamma=1.0, lam=1.0)
    # gamma = lambda = 1: every generated token's return is the final reward.
    np.testing.assert_allclose(ret[packed.loss_mask], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(adv[packed.loss_mask], 1.0 - values[packed.loss_mask])
    # Two episodes in one row: the first does not bootstrap from the second.
    row = concat_packed([packed, pack_exact([1], [([], [2])], final_reward=5.0)])
    _, ret = gae_generated(row.rewards, np.zeros(len(row)), row.loss_mask, episode_index=row.episode_index)
    assert ret[row.loss_mask].tolist() == [1.0, 1.0, 1.0, 5.0]
    single, _ = gae_generated(row.rewards, np.zeros(len(row)), row.loss_mask)
    assert single[row.loss_mask].tolist() == [6.0, 6.0, 6.0, 5.0]  # what ignoring episodes would do


def test_pack_records_reports_episodes_whose_answer_cannot_fit() -> None:
    records = [RolloutRecord([1] * 6, [TurnRecord([], [2, 3])]), RolloutRecord([1], [TurnRecord([], [2])])]
    packed, skipped = pack_records(records, max_tokens=5)
    assert skipped == [0] and len(packed) == 1 and packed[0].input_ids.tolist() == [1, 2]


@settings(max_examples=40, deadline=None)
@given(st.lists(episode, min_size=1, max_size=3), st.sampled_from([1, 3, 8]))
def test_tile_counts_equal_the_dense_mask_reduced(episodes: list, tile: int) -> None:
    """The FlexAttention tile kernel against the twin rule, padding as collate pads."""
    row = concat_packed([pack_exact(p, t) for p, t in episodes])
    size = -(-len(row) // tile) * tile
    block_ids = np.concatenate([row.block_ids, np.full(size - len(row), row.num_blocks, np.int32)])
    visible = np.eye(row.num_blocks + 1, dtype=bool)
    visible[: row.num_blocks, : row.num_blocks] = row.block_visible
    n = size // tile
    reduced = dense_mask_python(block_ids, visible).reshape(n, tile, n, tile).sum(axis=(1, 3))
    np.testing.assert_array_equal(tile_counts(block_ids, visible, tile), reduced)
    with pytest.raises(ValueError, match="multiple of tile"):
        tile_counts(np.zeros(5, np.int32), np.ones((1, 1), bool), 2)
