"""Behaviour cloning from scripted episodes, with the exact packing of the PPO trainer.

The scripted agent plays the environment; every turn is encoded exactly as the LLM policy
would see it (:meth:`agents.llm_policy.LLMPolicy.encode`: shared prompt ids, this turn's
context ids) and its response becomes the turn's "generated" ids. Episodes are packed with
``pack_exact`` and the loss is the mean negative log-likelihood of the generated tokens only
(observations, prompts and context copies carry no loss), as in MEM1's SFT baseline.

>>> import pytest; _ = pytest.importorskip("transformers")
>>> from agents.llm_policy import LLMPolicy
>>> from agents.tiny_model import default_tiny_model
>>> policy = LLMPolicy.from_pretrained(default_tiny_model())
>>> records, rewards = scripted_records(policy, {"world": "small"}, seeds=[0, 1])
>>> rewards, len(records[0].turns) >= 2
([1.0, 1.0], True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mem1_envs.base_env import task_prompt
from mem1_envs.trajectory import RolloutRecord, TurnRecord

__all__ = ["scripted_records", "sft_train"]


def scripted_records(
    policy: Any,
    env_kwargs: dict[str, Any],
    seeds: Sequence[int],
    env_id: str = "MEM1-MultiQA-v0",
    agent_for: Callable[[Any], Any] | None = None,
) -> tuple[list[RolloutRecord], list[float]]:
    """Scripted episodes as token records (``policy`` encodes contexts and responses).

    ``agent_for(env)`` makes the agent to clone (default: the env's registered reference agent).
    """
    import gymnasium as gym

    import mem1_envs  # noqa: F401 - registers the env ids
    from mem1_envs.registry import find_part

    env = gym.make(env_id, **env_kwargs)
    agent = (agent_for or find_part(env, "scripted_agent"))(env.unwrapped)
    records, rewards = [], []
    for seed in seeds:
        observation, info = env.reset(seed=seed)
        agent.reset(seed=seed)
        prompt = task_prompt(info)
        turns, total, done = [], 0.0, False
        prompt_ids = np.zeros(0, np.int64)
        while not done:
            prompt_ids, context = policy.encode(prompt, observation)
            response = agent.act(observation, info)
            # The response ends with a closing action tag, where generation stops: no eos needed.
            generated = policy.tokenizer.encode(response, add_special_tokens=False)
            observation, reward, terminated, truncated, info = env.step(response)
            turns.append(TurnRecord(context, generated, reward=float(reward)))
            total += float(reward)
            done = terminated or truncated
        records.append(RolloutRecord(prompt_ids, turns))
        rewards.append(total)
    env.close()
    return records, rewards


def sft_train(
    model: Any,
    records: Sequence[RolloutRecord],
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    batch_episodes: int = 8,
    seed: int = 0,
    grad_clip: float = 1.0,
    max_tokens: int | None = None,
    progress: bool = False,
    device: Any = None,
    warmup_steps: int = 0,
    on_step: Callable[[int, dict[str, float]], bool | None] | None = None,
) -> list[float]:
    """Train ``model`` in place on the generated tokens of ``records``; returns the loss per step.

    Batches are built on ``device`` (default: where the model's parameters are). The learning
    rate warms up linearly over ``warmup_steps`` then decays linearly to 0; ``on_step(step,
    metrics)`` sees each step's loss, learning rate and generated tokens; when it returns True,
    training stops there (a time budget).
    """
    import torch

    from agents.ppo.model import ActorCritic
    from mem1_envs.trajectory_torch import collate

    if device is None:
        device = next(model.parameters()).device
    # The LM head on the predicting positions only: generated tokens are a small share of a
    # packed episode, so this skips most of a [B, S, V] logits tensor.
    scorer = ActorCritic(model, critic="none")
    packed = [record.pack(max_tokens=max_tokens) for record in records]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    total_steps = epochs * -(-len(packed) // batch_episodes)

    def schedule(n: int) -> float:
        if n < warmup_steps:
            return (n + 1) / warmup_steps
        return 1.0 - (n - warmup_steps) / max(total_steps - warmup_steps, 1)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    rng = np.random.default_rng(seed)
    losses: list[float] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, desc="sft", dynamic_ncols=True)
    model.train()
    stop = False
    for _ in range(epochs):
        if stop:
            break
        order = rng.permutation(len(packed))
        for start in range(0, len(order), batch_episodes):
            batch = collate([packed[i] for i in order[start : start + batch_episodes]], device=device)
            logprobs = scorer(batch)["logprobs"]
            mask = batch["loss_mask"]
            loss = -(logprobs * mask).sum() / mask.sum().clamp(min=1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            lr_now = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if on_step is not None and on_step(
                len(losses),
                {"loss": losses[-1], "lr": lr_now, "grad_norm": float(norm), "tokens": float(mask.sum())},
            ):
                stop = True
                break
    if bar is not None:
        bar.close()
    model.eval()
    return losses
