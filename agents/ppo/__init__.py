"""Masked PPO for LLM policies on packed, exactly masked multi-turn episodes.

Modules: :mod:`agents.ppo.config` (settings, presets), :mod:`agents.ppo.losses` (pure loss
terms), :mod:`agents.ppo.advantages` (GAE, turn GAE, GRPO, GiGPO), :mod:`agents.ppo.buffer`
(rollout buffer), :mod:`agents.ppo.model` (policy + critic packed forward),
:mod:`agents.ppo.trainer` (the training loop), :mod:`agents.ppo.metrics` (JSONL/TensorBoard).
Everything but ``config`` and ``advantages`` needs torch.
"""

from agents.ppo.config import PRESETS, PPOConfig, preset

__all__ = ["PRESETS", "PPOConfig", "preset"]
