"""Replay equivalence of packed trajectories on tiny random Qwen2 and Llama models (CPU, fp32).

The reference is the rollout itself: every turn's real input (prompt + context + generated)
run on its own with positions 0..n-1 and a plain causal mask. The packed batch (several
episodes, padding) must give the same log-prob for every generated token.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mem1_envs.trajectory import (  # noqa: E402
    KIND_ACTION,
    KIND_STATE,
    RolloutRecord,
    TurnRecord,
    concat_packed,
    pack_exact,
    pack_mem1,
)
from mem1_envs.trajectory_torch import (  # noqa: E402
    collate,
    collate_records,
    dense_additive_mask_torch,
    forward_logprobs,
    make_block_mask,
)

VOCAB = 97
EXACT = 1e-4


def tiny_model(family: str, attention: str) -> torch.nn.Module:
    torch.manual_seed(0)
    common = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.2,  # peaked attention: a wrong context or position shows clearly
        attn_implementation=attention,
    )
    if family == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common))
    else:
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common))
    return model.eval()


def random_episode(rng: np.random.Generator, policy: str, n_turns: int) -> dict:
    """Prompt, and per turn: the rollout context under ``policy``, state, action, observation."""
    prompt = rng.integers(1, VOCAB, rng.integers(3, 12))
    history: list[np.ndarray] = []  # per finished turn: state + action + observation
    turns = []
    for k in range(n_turns):
        kept = {"mem1": history[-1:], "window": history[-2:], "full": history, "none": []}[policy]
        context = np.concatenate(kept) if kept else np.zeros(0, np.int64)
        state = rng.integers(1, VOCAB, rng.integers(1, 5))
        action = rng.integers(1, VOCAB, rng.integers(1, 4))
        observation = rng.integers(1, VOCAB, rng.integers(0, 6)) if k + 1 < n_turns else np.zeros(0, np.int64)
        turns.append({"context": context, "state": state, "action": action, "observation": observation})
        history.append(np.concatenate([state, action, observation]))
    return {"prompt": prompt, "turns": turns}


def generated(turn: dict) -> np.ndarray:
    return np.concatenate([turn["state"], turn["action"]])


@torch.no_grad()
def rollout_logprobs(model: torch.nn.Module, episode: dict) -> list[np.ndarray]:
    """Per turn, the log-probs of its generated tokens with the turn's own input, alone."""
    out = []
    for turn in episode["turns"]:
        gen = generated(turn)
        ids = torch.from_numpy(np.concatenate([episode["prompt"], turn["context"], gen]))[None]
        logits = model(input_ids=ids, position_ids=torch.arange(ids.shape[1])[None], use_cache=False).logits
        logprobs = torch.log_softmax(logits[0].float(), -1)
        start = ids.shape[1] - gen.size
        out.append(logprobs[start - 1 : -1].gather(1, ids[0, start:, None])[:, 0].numpy())
    return out


def packed_by_turn(logprobs: torch.Tensor, batch: dict, row: int, trajectory, start: int = 0) -> list:
    """Split one episode's packed log-probs back into turns."""
    offset = int(batch["offsets"][row]) + start
    values = logprobs[row, offset : offset + len(trajectory)].numpy()
    turns = trajectory.turn_index
    return [values[trajectory.loss_mask & (turns == k)] for k in range(turns.max() + 1)]


def max_error(packed: list[np.ndarray], reference: list[np.ndarray]) -> float:
    return max(float(np.abs(p - r).max()) for p, r in zip(packed, reference, strict=True))


@pytest.mark.parametrize("family", ["qwen2", "llama"])
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("policy", ["mem1", "window", "full", "none"])
def test_packed_forward_replays_every_turn_exactly(family, attention, policy) -> None:
    padding_side = "left" if policy in ("mem1", "full") else "right"  # both sides, every model
    model = tiny_model(family, attention)
    rng = np.random.default_rng(zlib.crc32(f"{family}/{attention}/{policy}/{padding_side}".encode()))
    episodes = [random_episode(rng, policy, int(rng.integers(2, 5))) for _ in range(3)]
    trajectories = [
        pack_exact(e["prompt"], [(t["context"], generated(t)) for t in e["turns"]]) for e in episodes
    ]
    batch = collate(trajectories, padding_side=padding_side, pad_id=0)
    assert len({len(t) for t in trajectories}) > 1, "the batch must need padding"
    with torch.no_grad():
        logprobs = forward_logprobs(model, batch)
    for row, (episode, trajectory) in enumerate(zip(episodes, trajectories, strict=True)):
        error = max_error(packed_by_turn(logprobs, batch, row, trajectory), rollout_logprobs(model, episode))
        assert error < EXACT, f"{family}/{attention}/{policy} episode {row}: {error:.2e}"


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_sequence_packed_row_and_records_path(family) -> None:
    """Several episodes in one row, built from rollout records, in three calls."""
    model = tiny_model(family, "sdpa")
    rng = np.random.default_rng(7)
    episodes = [random_episode(rng, "mem1", 3) for _ in range(3)]
    records = [
        RolloutRecord(
            e["prompt"],
            [
                TurnRecord(
                    t["context"],
                    generated(t),
                    generated_kinds=[KIND_STATE] * t["state"].size + [KIND_ACTION] * t["action"].size,
                )
                for t in e["turns"]
            ],
            reward=1.0,
        )
        for e in episodes
    ]
    parts = [r.pack() for r in records]
    row = concat_packed(parts)
    batch = collate([row, parts[0]], pad_id=0)
    with torch.no_grad():
        logprobs = forward_logprobs(model, batch)
    start = 0
    for episode, part in zip(episodes, parts, strict=True):
        reference = rollout_logprobs(model, episode)
        assert max_error(packed_by_turn(logprobs, batch, 0, part, start), reference) < EXACT
        start += len(part)
    assert (
        max_error(packed_by_turn(logprobs, batch, 1, parts[0]), rollout_logprobs(model, episodes[0])) < EXACT
    )
    # The records path gives the same batch, and MEM1 steps round-trip from the records.
    same = collate_records(records[:1], pad_id=0)
    torch.testing.assert_close(same["attention_mask"], collate(parts[:1])["attention_mask"])
    assert [s[2].tolist() for s in records[0].mem1_steps()] == [
        t["observation"].tolist() for t in episodes[0]["turns"]
    ]


def test_wrong_positions_are_detected() -> None:
    """The comparison is sensitive: positions that run on (D4) break replay by far more than 1e-4."""
    model = tiny_model("qwen2", "eager")
    episode = random_episode(np.random.default_rng(1), "mem1", 3)
    trajectory = pack_exact(episode["prompt"], [(t["context"], generated(t)) for t in episode["turns"]])
    batch = collate([trajectory])
    batch["position_ids"] = torch.arange(len(trajectory))[None]
    with torch.no_grad():
        logprobs = forward_logprobs(model, batch)
    assert max_error(packed_by_turn(logprobs, batch, 0, trajectory), rollout_logprobs(model, episode)) > 1e-2


def _mem1_inputs(episode: dict) -> list:
    return [(t["state"], t["action"], t["observation"]) for t in episode["turns"]]


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_pack_mem1_fixed_rules_exact_for_turns_0_and_1(family, record_property) -> None:
    model = tiny_model(family, "eager")
    rng = np.random.default_rng(11)
    episodes = [random_episode(rng, "mem1", 5) for _ in range(3)]
    trajectories = [pack_mem1(e["prompt"], _mem1_inputs(e)) for e in episodes]
    batch = collate(trajectories, pad_id=0)
    with torch.no_grad():
        logprobs = forward_logprobs(model, batch)
    later = []
    for row, (episode, trajectory) in enumerate(zip(episodes, trajectories, strict=True)):
        packed = packed_by_turn(logprobs, batch, row, trajectory)
        reference = rollout_logprobs(model, episode)
        assert max_error(packed[:2], reference[:2]) < EXACT
        later.append([float(np.abs(p - r).max()) for p, r in zip(packed[2:], reference[2:], strict=True)])
    errors = np.array(later).max(axis=0)
    # D5, reported rather than asserted: the single copy cannot match re-encoded contexts.
    message = ", ".join(f"turn {k + 2}: {e:.3g}" for k, e in enumerate(errors))
    print(f"pack_mem1 fixed rules ({family}), max |log-prob error| of later turns: {message}")
    record_property(f"pack_mem1_later_turn_errors_{family}", message)


def test_released_rules_leak_the_future() -> None:
    """D1-D4 reproduced: with the released rules, changing the *last* turn's tokens changes the
    log-probs of turn 0, and turn 0 no longer matches the rollout; the fixed rules do neither."""
    model = tiny_model("qwen2", "eager")
    episode = random_episode(np.random.default_rng(5), "mem1", 3)
    altered = {"prompt": episode["prompt"], "turns": [dict(t) for t in episode["turns"]]}
    altered["turns"][-1]["action"] = (altered["turns"][-1]["action"] + 1) % VOCAB
    reference = rollout_logprobs(model, episode)
    for released in (False, True):
        trajectories = [
            pack_mem1(e["prompt"], _mem1_inputs(e), released_rules=released) for e in (episode, altered)
        ]
        batch = collate(trajectories)
        if released:
            assert batch["attention_mask"].max() == 1.0  # the 1.0/0.0 float mask of D1
        with torch.no_grad():
            logprobs = forward_logprobs(model, batch)
        turn0 = [packed_by_turn(logprobs, batch, row, t)[0] for row, t in enumerate(trajectories)]
        future_effect = float(np.abs(turn0[0] - turn0[1]).max())
        replay_error = float(np.abs(turn0[0] - reference[0]).max())
        print(
            f"released_rules={released}: future effect on turn 0 {future_effect:.3g}, error {replay_error:.3g}"
        )
        if released:
            assert future_effect > 1e-3 and replay_error > 1e-3
        else:
            assert future_effect < 1e-6 and replay_error < EXACT


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_numba_mask_equals_torch_twin_and_block_mask() -> None:
    """The numba additive mask equals the vectorised torch twin, and FlexAttention with the
    block mask built from block ids gives the same attention output as SDPA with the dense mask."""
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    rng = np.random.default_rng(2)
    parts = [
        pack_exact(e["prompt"], [(t["context"], generated(t)) for t in e["turns"]])
        for e in (random_episode(rng, policy, 4) for policy in ("mem1", "window", "full"))
    ]
    parts.append(pack_mem1([1, 2, 3], _mem1_inputs(random_episode(rng, "mem1", 3))))
    batch = collate(
        [concat_packed(parts[:2]), parts[2], parts[3]], pad_id=0, padding_side="left", pad_to_multiple_of=16
    )
    twin = dense_additive_mask_torch(batch["block_ids"], batch["block_visible"])
    torch.testing.assert_close(batch["attention_mask"], twin, rtol=0, atol=0)
    bf16 = collate(parts, dtype=torch.bfloat16)["attention_mask"]
    assert bf16.dtype == torch.bfloat16 and torch.isfinite(bf16).all()
    torch.testing.assert_close(bf16.float() == 0, collate(parts)["attention_mask"] == 0)

    rows, size = batch["input_ids"].shape
    block_mask = make_block_mask(batch["block_ids"], batch["block_visible"], block_size=16)
    # The tile structure equals the one torch derives from the full grid, and so does attention.
    reference = flex.create_block_mask(
        block_mask.mask_mod, rows, None, size, size, device="cpu", BLOCK_SIZE=16
    )
    torch.testing.assert_close(block_mask.to_dense(), reference.to_dense())
    q, k, v = (torch.randn(rows, 2, size, 8) for _ in range(3))
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=batch["attention_mask"])
    got = flex.flex_attention(q, k, v, block_mask=block_mask)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert "block_mask" in collate(parts, mask="block", block_size=16)


@pytest.mark.train  # compiles FlexAttention for the CPU: one to two minutes
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_hugging_face_flex_attention_with_block_mask_matches_dense() -> None:
    pytest.importorskip("torch.nn.attention.flex_attention")
    rng = np.random.default_rng(4)
    episodes = [random_episode(rng, "window", 3) for _ in range(2)]
    trajectories = [
        pack_exact(e["prompt"], [(t["context"], generated(t)) for t in e["turns"]]) for e in episodes
    ]
    model = tiny_model("qwen2", "sdpa")
    with torch.no_grad():
        dense = forward_logprobs(model, collate(trajectories, pad_to_multiple_of=16))
        model.set_attn_implementation("flex_attention")
        block = forward_logprobs(model, collate(trajectories, mask="block", block_size=16))
    assert float((dense - block).abs().max()) < EXACT
