"""Train a stable-baselines3 / sb3-contrib agent on a wrapped mem1-envs env, save, reload, evaluate.

The env is wrapped for numeric RL libraries: ``CandidateActions`` (``Discrete(K)`` over candidate
responses, with ``action_masks()``) then ``TokenizeObservation`` (token ids + attention mask).
After training the model is saved, loaded back, and evaluated on held-out questions
(``--eval-split``) next to a uniform-random policy over the same valid candidates::

    python scripts/train_sb3.py --env MEM1-MultiQA-v0 --algo maskable_ppo --world small \\
        --num-objectives 1 --timesteps 6000

``--algo ppo`` trains plain PPO, which does not see the masks: a masked slot it picks is an
invalid response, handled by the env's rule (MultiQA: reward 0, episode over).
Needs ``pip install mem1-envs[rl]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mem1_envs  # noqa: F401  (registers the env ids)
from mem1_envs import registry
from wrappers import CandidateActions, TokenizeObservation

try:
    import torch
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
except ImportError:  # train() names the extra to install
    torch = None
    BaseFeaturesExtractor = object

ALGOS = ("maskable_ppo", "ppo")
POLICIES = ("embedding", "mlp")


class TokenEmbeddingExtractor(BaseFeaturesExtractor):
    """SB3 features from ``TokenizeObservation``'s Dict: token embeddings averaged over the mask.

    SB3's default ``CombinedExtractor`` feeds the raw ids to an MLP as numbers; an embedding
    treats them as the symbols they are (what ``--policy embedding``, the default, uses).
    """

    def __init__(self, observation_space: gym.spaces.Dict, embed_dim: int = 32):
        super().__init__(observation_space, features_dim=embed_dim)
        vocab_size = int(observation_space["input_ids"].high.max()) + 1
        self.embed = torch.nn.Embedding(vocab_size, embed_dim)

    def forward(self, observations: dict[str, Any]) -> Any:
        ids = observations["input_ids"].long()  # SB3 hands Box observations over as floats
        weights = observations["attention_mask"].float().unsqueeze(-1)
        return (self.embed(ids) * weights).sum(1) / weights.sum(1).clamp(min=1.0)


@dataclass(frozen=True)
class Args:
    """Command-line arguments (``--name value``)."""

    env: str = "MEM1-MultiQA-v0"
    """Env id, one of ``mem1_envs.registry.env_ids()``; the options below reach it where its config has them."""
    algo: str = "maskable_ppo"
    """``maskable_ppo`` (sb3-contrib, uses the action masks) or ``ppo`` (stable-baselines3)."""
    policy: str = "embedding"
    """``embedding`` (:class:`TokenEmbeddingExtractor`) or ``mlp`` (SB3's default on raw ids)."""
    timesteps: int = 6000
    """Total env steps of training."""
    n_envs: int = 4
    """Parallel envs."""
    vec_env: str = "dummy"
    """``dummy`` (one process) or ``subproc`` (SB3's SubprocVecEnv, one process per env)."""
    n_steps: int = 128
    """Steps per env per PPO update."""
    batch_size: int = 128
    """PPO mini-batch size."""
    n_epochs: int = 4
    """PPO epochs per update."""
    learning_rate: float = 1e-3
    """Adam step size."""
    ent_coef: float = 0.01
    """Entropy bonus."""
    seed: int = 0
    """Seed of the model, the envs and the evaluation."""
    world: str = "small"
    """MultiQA world size (``small`` or ``default``)."""
    num_objectives: int = 1
    """MultiQA questions per episode."""
    n_products: int = 500
    """WebShop catalog size (``--env MEM1-WebShop-v0``; use ``--num-candidates 24`` there)."""
    num_candidates: int = 12
    """K, the candidate slots."""
    max_length: int = 256
    """Token ids per observation."""
    train_split: str = "train"
    """Questions to train on."""
    eval_split: str = "test"
    """Questions to evaluate on (``test`` never appears in ``train``)."""
    eval_episodes: int = 100
    """Episodes per evaluated policy."""
    save: str = ""
    """Where to save the model (``.zip``); empty: a temporary folder, removed after the evaluation."""
    progress: bool = True
    """Show a progress bar while training."""


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name, default in asdict(Args()).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default)
    args = Args(**vars(parser.parse_args(argv)))
    if args.env not in registry.env_ids():
        parser.error(f"--env must be one of {registry.env_ids()}, got {args.env!r}")
    if args.algo not in ALGOS:
        parser.error(f"--algo must be one of {ALGOS}, got {args.algo!r}")
    if args.policy not in POLICIES:
        parser.error(f"--policy must be one of {POLICIES}, got {args.policy!r}")
    if args.vec_env not in ("dummy", "subproc"):
        parser.error(f"--vec-env must be dummy or subproc, got {args.vec_env!r}")
    for name in ("timesteps", "n_envs", "n_steps", "batch_size", "n_epochs", "eval_episodes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def env_kwargs(args: Args, split: str) -> dict[str, Any]:
    """The options ``args.env`` takes (its config fields: the shop has no world or split)."""
    options = {
        "world": args.world,
        "num_objectives": args.num_objectives,
        "split": split,
        "n_products": args.n_products,
    }
    return registry.env_kwargs(args.env, options)


def make_env(args: Args, split: str) -> gym.Env:
    """The wrapped env: candidates over the text env, then tokenised observations."""
    env = gym.make(args.env, **env_kwargs(args, split))
    env = CandidateActions(env, num_candidates=args.num_candidates)
    return TokenizeObservation(env, max_length=args.max_length)


def evaluate(env: gym.Env, choose: Any, episodes: int, seed: int) -> float:
    """Mean episode return of ``choose(observation, mask) -> action`` over seeded episodes."""
    total = 0.0
    for episode in range(episodes):
        observation, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            mask = env.get_wrapper_attr("action_masks")()
            observation, reward, terminated, truncated, _ = env.step(choose(observation, mask))
            total += float(reward)
            done = terminated or truncated
    return total / episodes


def progress_bar(args: Args) -> Any:
    """A tqdm bar over env steps (SB3's own bar also needs ``rich``, which the ``rl`` extra lacks)."""
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    class TqdmCallback(BaseCallback):
        def _on_training_start(self) -> None:
            self.bar = tqdm(total=args.timesteps, desc=f"{args.algo} on {args.env}", unit="step")

        def _on_step(self) -> bool:
            self.bar.update(self.training_env.num_envs)
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    return TqdmCallback()


def train(args: Args) -> dict[str, Any]:
    """Train, save, reload and evaluate; returns the figures it prints."""
    if torch is None:
        raise ImportError("train_sb3.py needs stable-baselines3 and sb3-contrib: pip install mem1-envs[rl]")
    torch.set_num_threads(1)  # a tiny network: threads cost more than they save
    try:
        from sb3_contrib import MaskablePPO
        from stable_baselines3 import PPO
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.logger import Logger
        from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv
    except ImportError as error:
        raise ImportError(
            "train_sb3.py needs stable-baselines3 and sb3-contrib: pip install mem1-envs[rl]"
        ) from error

    algo_cls = MaskablePPO if args.algo == "maskable_ppo" else PPO
    vec_cls = SubprocVecEnv if args.vec_env == "subproc" else DummyVecEnv
    vec_kwargs = {"start_method": "spawn"} if args.vec_env == "subproc" else None
    venv = make_vec_env(
        lambda: make_env(args, args.train_split),
        n_envs=args.n_envs,
        seed=args.seed,
        vec_env_cls=vec_cls,
        vec_env_kwargs=vec_kwargs,
    )
    model = algo_cls(
        "MultiInputPolicy",
        venv,
        n_steps=args.n_steps,
        batch_size=args.batch_size,
        n_epochs=args.n_epochs,
        learning_rate=args.learning_rate,
        ent_coef=args.ent_coef,
        policy_kwargs={"features_extractor_class": TokenEmbeddingExtractor}
        if args.policy == "embedding"
        else None,
        gamma=1.0,  # MEM1: the task reward comes at the end and is not discounted
        seed=args.seed,
        device="cpu",
        verbose=0,
    )
    # SB3's default logger makes an empty tempdir/SB3-<date> folder per learn(), never removed;
    # with verbose=0 nothing is written to it, so a logger without outputs replaces it.
    model.set_logger(Logger(folder=None, output_formats=[]))
    start = time.perf_counter()
    model.learn(total_timesteps=args.timesteps, callback=progress_bar(args) if args.progress else None)
    train_seconds = time.perf_counter() - start
    venv.close()

    with tempfile.TemporaryDirectory(prefix="mem1-sb3-") as scratch:
        path = args.save or os.path.join(scratch, f"{args.algo}.zip")
        model.save(path)
        loaded = algo_cls.load(path, device="cpu")

    env = make_env(args, args.eval_split)
    rng = np.random.default_rng(args.seed)

    def trained(observation: Any, mask: np.ndarray) -> int:
        if args.algo == "maskable_ppo":
            action, _ = loaded.predict(observation, action_masks=mask, deterministic=True)
        else:
            action, _ = loaded.predict(observation, deterministic=True)
        return int(action)

    def uniform(observation: Any, mask: np.ndarray) -> int:
        return int(rng.choice(np.flatnonzero(mask)))

    eval_seed = 10_000 + args.seed
    result = {
        "algo": args.algo,
        "timesteps": args.timesteps,
        "train_seconds": round(train_seconds, 1),
        "eval_episodes": args.eval_episodes,
        "mean_reward_trained": evaluate(env, trained, args.eval_episodes, eval_seed),
        "mean_reward_uniform_random": evaluate(env, uniform, args.eval_episodes, eval_seed),
        "model_path": args.save or None,
    }
    env.close()
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    result = train(parse_args(argv))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
