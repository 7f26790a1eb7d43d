"""PPO loss terms and advantage estimators against hand-computed values on toy batches."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agents.ppo import losses as L  # noqa: E402
from agents.ppo.advantages import (  # noqa: E402
    gae_generated_python,
    gigpo_step_advantages,
    grpo_advantages,
    turn_gae,
)
from agents.ppo.buffer import RolloutBuffer  # noqa: E402
from agents.ppo.config import PPOConfig, preset  # noqa: E402
from mem1_envs.trajectory import RolloutRecord, TurnRecord  # noqa: E402

pytestmark = pytest.mark.train


def test_masked_mean_whiten_ignore_masked_values_even_nan():
    x = torch.tensor([[1.0, 3.0, float("nan")]])
    m = torch.tensor([[True, True, False]])
    assert L.masked_mean(x, m).item() == 2.0
    assert L.masked_mean(x, m, denominator=4).item() == 1.0
    assert L.masked_var(x, m).item() == 1.0


def test_clipped_surrogate_matches_hand_computation():
    logp = torch.tensor([[-1.0, -0.5, 0.0]])
    old = torch.tensor([[-1.2, -0.5, 0.0]])
    adv = torch.tensor([[1.0, -2.0, 5.0]])
    mask = torch.tensor([[True, True, False]])
    loss, stats = L.policy_loss(logp, old, adv, mask, clip_ratio=0.1)
    # token 0: ratio e^0.2 = 1.2214 > 1.1, A > 0: the clipped term -1.1 is the max; token 1: ratio 1, -(-2)
    assert loss.item() == pytest.approx((-1.1 + 2.0) / 2, abs=1e-6)
    assert stats["clipped"].item() == 1.0
    assert stats["approx_kl"].item() == pytest.approx(math.exp(0.2) - 1 - 0.2, abs=1e-6)


def test_clipped_value_loss_matches_hand_computation():
    values = torch.tensor([[0.5, 2.0]])
    old = torch.tensor([[0.0, 1.0]])
    returns = torch.tensor([[1.0, 1.0]])
    mask = torch.tensor([[True, True]])
    loss, stats = L.value_loss(values, old, returns, mask, clip_range=0.2)
    # token 0: max((0.5-1)^2, (0.2-1)^2) = 0.64; token 1: max((2-1)^2, (1.2-1)^2) = 1
    assert loss.item() == pytest.approx(0.5 * (0.64 + 1.0) / 2, abs=1e-6)
    assert stats["vf_clipped"].item() == 1.0
    unclipped, _ = L.value_loss(values, old, returns, mask, clip_range=None)
    assert unclipped.item() == pytest.approx(0.5 * (0.25 + 1.0) / 2, abs=1e-6)


def test_entropy_and_kl_estimators():
    assert L.entropy_from_logprobs(torch.log_softmax(torch.zeros(1, 2), -1)).item() == pytest.approx(
        math.log(2), abs=1e-6
    )
    logp, ref = torch.tensor([-0.5]), torch.tensor([-1.0])
    assert L.kl_k1(logp, ref).item() == pytest.approx(0.5)
    assert L.kl_k3(logp, ref).item() == pytest.approx(math.exp(-0.5) + 0.5 - 1, abs=1e-6)
    assert L.kl_k3(ref, ref).item() == 0.0


def test_explained_variance():
    mask = torch.tensor([True, True, True])
    returns = torch.tensor([1.0, 2.0, 3.0])
    assert L.explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert L.explained_variance(torch.zeros(3), returns, mask) == pytest.approx(0.0)


def test_grpo_and_gigpo_advantages():
    adv = grpo_advantages(np.array([2.0, 0.0, 1.0, 1.0]), np.array([0, 0, 1, 1]))
    assert adv.tolist() == pytest.approx([1.0, -1.0, 0.0, 0.0], abs=1e-5)
    steps = gigpo_step_advantages(
        [0, 0, 0],
        [["p", "x"], ["p", "x"], ["p", "y"]],
        [np.array([1.0, 1.0]), np.array([0.0, 0.0]), np.array([1.0, 1.0])],
    )
    # step group "p" holds all three first turns, "x" the two second turns that share a context
    assert steps[0].tolist() == pytest.approx([0.7071, 1.0], abs=1e-3)
    assert steps[1].tolist() == pytest.approx([-1.4142, -1.0], abs=1e-3)
    assert steps[2].tolist() == pytest.approx([0.7071, 0.0], abs=1e-3)


def test_turn_gae_matches_hand_computation():
    adv, ret = turn_gae(np.array([0.0, 0.0, 1.0]), np.array([0.2, 0.4, 0.8]), gamma=0.5, lam=0.5)
    # deltas: 0 + .5*.4 - .2 = 0; 0 + .5*.8 - .4 = 0; 1 - .8 = .2
    assert adv.tolist() == pytest.approx([0.2 * 0.0625, 0.2 * 0.25, 0.2], abs=1e-6)
    assert ret.tolist() == pytest.approx((adv + np.array([0.2, 0.4, 0.8])).tolist(), abs=1e-6)


def _toy_record() -> RolloutRecord:
    return RolloutRecord(
        [1, 2],
        [
            TurnRecord([], [3, 4], old_logprobs=[-1.0, -2.0]),
            TurnRecord([3, 4, 9], [5], old_logprobs=[-0.5], reward=1.0),
        ],
    )


def test_buffer_gae_with_k1_kl_in_reward_matches_python_twin():
    buffer = RolloutBuffer.from_records([_toy_record()])
    p = buffer.packed[0]
    buffer.arrays["old_logprobs"] = buffer.arrays["rollout_logprobs"]
    buffer.arrays["ref_logprobs"] = [np.where(p.loss_mask, -1.0, 0.0).astype(np.float32)]
    buffer.arrays["values"] = [np.where(p.loss_mask, 0.25, 0.0).astype(np.float32)]
    buffer.compute_advantages("gae", kl_coef=0.1, kl_in_reward=True)
    rewards = buffer.arrays["rewards"][0]
    # k1 = old - ref on generated tokens: 0, -1, 0.5; reward -= 0.1 * k1; task reward 1 on the last one
    assert rewards[p.loss_mask].tolist() == pytest.approx([0.0, 0.1, 1.0 - 0.05], abs=1e-6)
    expected, _ = gae_generated_python(rewards, buffer.arrays["values"][0], p.loss_mask)
    assert buffer.arrays["advantages"][0].tolist() == pytest.approx(expected.tolist(), abs=1e-6)
    # gamma = lambda = 1: the advantage of a token is its reward-to-go minus its value
    assert buffer.arrays["advantages"][0][p.loss_mask].tolist() == pytest.approx([0.8, 0.8, 0.7], abs=1e-6)
    buffer.whiten("advantages")
    assert buffer.arrays["advantages"][0][p.loss_mask].mean() == pytest.approx(0.0, abs=1e-6)


def test_buffer_turn_level_advantage_is_constant_within_a_turn():
    buffer = RolloutBuffer.from_records([_toy_record()])
    p = buffer.packed[0]
    buffer.arrays["values"] = [np.where(p.loss_mask, 0.25, 0.0).astype(np.float32)]
    buffer.compute_advantages("turn")
    adv = buffer.arrays["advantages"][0]
    assert adv[p.loss_mask].tolist() == pytest.approx([0.75, 0.75, 0.75])
    assert adv[~p.loss_mask].tolist() == [0.0] * int((~p.loss_mask).sum())


def test_config_validation_names_the_value():
    with pytest.raises(ValueError, match="advantage must be one of"):
        PPOConfig(advantage="vtrace")
    with pytest.raises(ValueError, match="needs group_size >= 2, got 1"):
        PPOConfig(advantage="grpo", critic="none")
    with pytest.raises(ValueError, match="total_steps must be >= 1, got 0"):
        preset("tiny-cpu", total_steps=0)
    mem1 = preset("qwen2.5-7b")
    assert (mem1.gamma, mem1.lam, mem1.clip_ratio, mem1.entropy_coef, mem1.grad_clip) == (
        1.0,
        1.0,
        0.2,
        0.001,
        1.0,
    )
    assert (mem1.kl_coef, mem1.critic_lr, mem1.episodes_per_step, mem1.mini_batch_episodes, mem1.top_p) == (
        0.001,
        1e-5,
        128,
        64,
        0.95,
    )


def test_buffer_leaves_out_episodes_whose_answer_does_not_fit():
    short = RolloutRecord([1], [TurnRecord([], [2])], reward=1.0)
    buffer = RolloutBuffer.from_records([_toy_record(), short], group_ids=[7, 8], max_tokens=4)
    assert buffer.skipped == [0] and len(buffer) == 1 and buffer.group_ids.tolist() == [8]


def test_a_huge_log_ratio_gives_a_finite_loss_and_gradients():
    # A sampler/trainer mismatch of 1e4 nats on one token (either sign, either advantage sign).
    logp = torch.tensor([[0.0, -1.0, -2.0, -0.5]], requires_grad=True)
    old = torch.tensor([[-1e4, -1.0, 1e4, -0.4]])
    adv = torch.tensor([[-1.0, 0.5, 1.0, 2.0]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    for dual in (None, 3.0):
        loss, stats = L.policy_loss(logp, old, adv, mask, clip_ratio=0.2, dual_clip=dual)
        (grad,) = torch.autograd.grad(loss, logp)
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), dual
        assert math.isfinite(stats["approx_kl"].item())
    # Unclamped, the same batch overflows: the clamp is what keeps it finite.
    unclamped, _ = L.policy_loss(logp, old, adv, mask, clip_ratio=0.2, log_ratio_clamp=None)
    assert not torch.isfinite(unclamped)


def test_dual_clip_caps_negative_advantage_tokens():
    logp = torch.tensor([[math.log(5.0), math.log(5.0), math.log(0.5)]])
    old = torch.zeros(1, 3)
    adv = torch.tensor([[-1.0, 1.0, -1.0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    plain, _ = L.policy_loss(logp, old, adv, mask, clip_ratio=0.2)
    dual, stats = L.policy_loss(logp, old, adv, mask, clip_ratio=0.2, dual_clip=3.0)
    # token 0: ratio 5, A = -1: max(5, 1.2) = 5, capped at 3; token 1: A > 0, -1.2; token 2: max(0.5, 0.8)
    assert plain.item() == pytest.approx((5.0 - 1.2 + 0.8) / 3, abs=1e-5)
    assert dual.item() == pytest.approx((3.0 - 1.2 + 0.8) / 3, abs=1e-5)
    assert stats["dual_clipped"].item() == 1.0
    with pytest.raises(ValueError, match="dual_clip must be > 1"):
        L.policy_loss(logp, old, adv, mask, clip_ratio=0.2, dual_clip=1.0)


def test_loss_safety_settings_are_validated():
    with pytest.raises(ValueError, match="kl_mode='k3_loss'"):
        PPOConfig(advantage="grpo", critic="none", group_size=2)  # the default KL is k1_reward
    PPOConfig(advantage="gigpo", critic="none", group_size=2, kl_mode="k3_loss")
    PPOConfig(advantage="grpo", critic="none", group_size=2, kl_coef=0.0)  # no KL: nothing to misplace
    with pytest.raises(ValueError, match=r"dual_clip must be > 1 or None, got 0\.5"):
        PPOConfig(dual_clip=0.5)
    with pytest.raises(ValueError, match="log_ratio_clamp must be > 0"):
        PPOConfig(log_ratio_clamp=0.0)
    with pytest.raises(ValueError, match=r"max_packed_tokens \(512\) must be <= max_tokens_per_microbatch"):
        PPOConfig(max_packed_tokens=512, max_tokens_per_microbatch=256)
    # "auto": recompute when training (bf16 autocast) and sampling (fp32) precisions differ.
    assert PPOConfig(dtype="bfloat16").old_logprobs_source == "recompute"
    assert PPOConfig().old_logprobs_source == "rollout"
    assert PPOConfig(dtype="bfloat16", old_logprobs="rollout").old_logprobs_source == "rollout"
    assert preset("qwen2.5-7b").old_logprobs_source == "recompute"
