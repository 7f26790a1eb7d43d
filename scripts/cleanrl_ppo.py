"""CleanRL-style PPO in plain torch over the wrapped MultiQA env (no RL library needed).

One readable file in the manner of cleanrl/ppo.py: a Gymnasium ``SyncVectorEnv`` of
``TokenizeObservation(CandidateActions(MEM1-MultiQA-v0))``, a small policy that embeds the token
ids (mean over the attention mask) and scores the K candidate slots, invalid slots masked
(the masks come from ``envs.call("action_masks")``), GAE, clipped PPO. At the end it evaluates
the greedy policy and a uniform-random policy over the same candidates on held-out questions::

    python scripts/cleanrl_ppo.py --total-timesteps 8000

Needs torch (``pip install mem1-envs[train]``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mem1_envs  # noqa: F401  (registers the env ids)
from wrappers import CandidateActions, TokenizeObservation


@dataclass(frozen=True)
class Args:
    """Command-line arguments (``--name value``)."""

    seed: int = 0
    """Seed of torch, numpy and the envs."""
    world: str = "small"
    """MultiQA world size."""
    num_objectives: int = 1
    """Questions per episode."""
    num_candidates: int = 12
    """K, the candidate slots."""
    max_length: int = 256
    """Token ids per observation."""
    total_timesteps: int = 8000
    """Env steps of training, all envs together."""
    num_envs: int = 4
    """Parallel envs (SyncVectorEnv)."""
    num_steps: int = 64
    """Steps per env per rollout."""
    learning_rate: float = 2.5e-3
    """Adam step size."""
    gamma: float = 1.0
    """Discount (MEM1: 1, the reward comes at the end)."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    num_minibatches: int = 4
    """Mini-batches per epoch."""
    update_epochs: int = 4
    """Epochs per rollout."""
    clip_coef: float = 0.2
    """PPO clip range."""
    ent_coef: float = 0.01
    """Entropy bonus."""
    vf_coef: float = 0.5
    """Value-loss weight."""
    max_grad_norm: float = 0.5
    """Gradient clip."""
    embed_dim: int = 32
    """Token embedding width."""
    eval_episodes: int = 100
    """Held-out episodes per evaluated policy."""


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name, default in asdict(Args()).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    args = Args(**vars(parser.parse_args(argv)))
    for name in (
        "total_timesteps",
        "num_envs",
        "num_steps",
        "num_minibatches",
        "update_epochs",
        "eval_episodes",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def make_env(args: Args, split: str) -> gym.Env:
    env = gym.make("MEM1-MultiQA-v0", world=args.world, num_objectives=args.num_objectives, split=split)
    return TokenizeObservation(CandidateActions(env, args.num_candidates), max_length=args.max_length)


def run(args: Args) -> dict[str, Any]:
    try:
        import torch
        from torch import nn
        from torch.distributions import Categorical
    except ImportError as error:
        raise ImportError("cleanrl_ppo.py needs torch: pip install mem1-envs[train]") from error

    # -- seeding --------------------------------------------------------------------------
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    torch.set_num_threads(1)  # tiny networks: threads cost more than they save

    # -- envs -----------------------------------------------------------------------------
    envs = gym.vector.SyncVectorEnv(
        [lambda: make_env(args, "train")] * args.num_envs,
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,  # CleanRL's classic semantics
    )
    vocab_size = int(envs.single_observation_space["input_ids"].high.max()) + 1
    num_actions = int(envs.single_action_space.n)

    # -- agent ----------------------------------------------------------------------------
    class Agent(nn.Module):
        """Mean-pooled token embeddings -> MLP -> candidate logits and a value."""

        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab_size, args.embed_dim)
            self.body = nn.Sequential(nn.Linear(args.embed_dim, 64), nn.Tanh())
            self.actor = nn.Linear(64, num_actions)
            self.critic = nn.Linear(64, 1)

        def features(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            weights = mask.float().unsqueeze(-1)
            pooled = (self.embed(ids) * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            return self.body(pooled)

        def value(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.critic(self.features(ids, mask)).squeeze(-1)

        def act(self, ids, mask, action_mask, action=None):
            hidden = self.features(ids, mask)
            logits = self.actor(hidden).masked_fill(~action_mask, torch.finfo(torch.float32).min)
            dist = Categorical(logits=logits)
            if action is None:
                action = dist.sample()
            return action, dist.log_prob(action), dist.entropy(), self.critic(hidden).squeeze(-1)

    agent = Agent()
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)

    # -- storage --------------------------------------------------------------------------
    shape = (args.num_steps, args.num_envs)
    ids_buf = torch.zeros((*shape, args.max_length), dtype=torch.long)
    attn_buf = torch.zeros((*shape, args.max_length), dtype=torch.long)
    masks_buf = torch.zeros((*shape, num_actions), dtype=torch.bool)
    actions, logprobs, rewards, dones, values = (torch.zeros(shape) for _ in range(5))

    def to_tensors(observation: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.as_tensor(observation["input_ids"]), torch.as_tensor(
            observation["attention_mask"]
        ).long()

    def current_masks() -> torch.Tensor:
        return torch.as_tensor(np.stack(envs.call("action_masks")))

    # -- rollout + update loop ------------------------------------------------------------
    batch_size = args.num_envs * args.num_steps
    minibatch_size = max(1, batch_size // args.num_minibatches)
    iterations = max(1, args.total_timesteps // batch_size)
    observation, _ = envs.reset(seed=args.seed)
    next_ids, next_attn = to_tensors(observation)
    next_done = torch.zeros(args.num_envs)
    episode_returns: list[float] = []
    running = np.zeros(args.num_envs)
    start = time.perf_counter()
    for iteration in range(1, iterations + 1):
        for step in range(args.num_steps):
            ids_buf[step], attn_buf[step], dones[step] = next_ids, next_attn, next_done
            masks_buf[step] = current_masks()
            with torch.no_grad():
                action, logprob, _, value = agent.act(next_ids, next_attn, masks_buf[step])
            actions[step], logprobs[step], values[step] = action, logprob, value
            observation, reward, terminated, truncated, _ = envs.step(action.numpy())
            done = np.logical_or(terminated, truncated)
            running += reward
            episode_returns += running[done].tolist()
            running[done] = 0.0
            rewards[step] = torch.as_tensor(reward, dtype=torch.float32)
            next_ids, next_attn = to_tensors(observation)
            next_done = torch.as_tensor(done, dtype=torch.float32)

        # GAE: a done step's successor (already the next episode's start) is not bootstrapped.
        with torch.no_grad():
            next_value = agent.value(next_ids, next_attn)
            advantages = torch.zeros(shape)
            last = torch.zeros(args.num_envs)
            for t in reversed(range(args.num_steps)):
                not_done = 1.0 - (next_done if t == args.num_steps - 1 else dones[t + 1])
                following = next_value if t == args.num_steps - 1 else values[t + 1]
                delta = rewards[t] + args.gamma * following * not_done - values[t]
                last = delta + args.gamma * args.gae_lambda * not_done * last
                advantages[t] = last
            returns = advantages + values

        flat = lambda x: x.reshape(batch_size, *x.shape[2:])  # noqa: E731
        b_ids, b_attn, b_masks = flat(ids_buf), flat(attn_buf), flat(masks_buf)
        b_actions, b_logprobs, b_adv, b_returns = (
            flat(actions),
            flat(logprobs),
            flat(advantages),
            flat(returns),
        )
        for _ in range(args.update_epochs):
            order = torch.as_tensor(rng.permutation(batch_size))
            for begin in range(0, batch_size, minibatch_size):
                index = order[begin : begin + minibatch_size]
                _, new_logprob, entropy, new_value = agent.act(
                    b_ids[index], b_attn[index], b_masks[index], b_actions[index].long()
                )
                ratio = (new_logprob - b_logprobs[index]).exp()
                adv = b_adv[index]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8) if len(index) > 1 else adv
                policy_loss = torch.max(
                    -adv * ratio, -adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)
                ).mean()
                value_loss = 0.5 * ((new_value - b_returns[index]) ** 2).mean()
                loss = policy_loss - args.ent_coef * entropy.mean() + args.vf_coef * value_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()
        recent = float(np.mean(episode_returns[-50:])) if episode_returns else float("nan")
        print(
            f"iteration {iteration}/{iterations} episodes {len(episode_returns)} mean_return_last_50 {recent:.3f}"
        )
    train_seconds = time.perf_counter() - start
    envs.close()

    # -- evaluation on held-out questions -------------------------------------------------
    def evaluate(greedy: bool) -> float:
        env = make_env(args, "test")
        total = 0.0
        for episode in range(args.eval_episodes):
            observation, _ = env.reset(seed=10_000 + args.seed + episode)
            done = False
            while not done:
                mask = env.get_wrapper_attr("action_masks")()
                if greedy:
                    ids, attn = to_tensors(observation)
                    with torch.no_grad():
                        hidden = agent.features(ids[None], attn[None])
                        logits = agent.actor(hidden)[0].masked_fill(~torch.as_tensor(mask), float("-inf"))
                    action = int(logits.argmax())
                else:
                    action = int(rng.choice(np.flatnonzero(mask)))
                observation, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = terminated or truncated
        return total / args.eval_episodes

    return {
        "total_timesteps": iterations * batch_size,
        "train_seconds": round(train_seconds, 1),
        "train_episodes": len(episode_returns),
        "mean_reward_trained": evaluate(greedy=True),
        "mean_reward_uniform_random": evaluate(greedy=False),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    result = run(parse_args(argv))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
