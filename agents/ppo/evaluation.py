"""What the episodes scored: the metrics of a training step's rollouts and the held-out evaluation.

Both reduce per-rank sums over ranks once (:meth:`PPOTrainer.all_reduce
<agents.ppo.trainer.PPOTrainer.all_reduce>`), so a rank never waits on another mid-way and the
figures are those of the global batch whatever the number of ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
import torch

from agents.llm_policy import GenerationConfig, LLMPolicy
from agents.ppo.checkpoint import rng_state, set_rng_state
from agents.rollout import Episode, collect

if TYPE_CHECKING:
    from agents.ppo.trainer import PPOTrainer

AllReduce = Callable[[np.ndarray], np.ndarray]


def _score_sums(episodes: Sequence[Episode]) -> list[float]:
    """``[reward, EM, F1]`` summed over ``episodes``."""
    return [sum(e.reward for e in episodes), sum(e.em for e in episodes), sum(e.f1 for e in episodes)]


def rollout_metrics(
    episodes: Sequence[Episode], all_reduce: AllReduce, world: int, rollout_seconds: float
) -> dict[str, float]:
    """Per-episode means of a step's rollouts over all ranks, the peak context and the token rate.

    >>> from types import SimpleNamespace as E
    >>> episodes = [E(reward=1.0, em=1.0, f1=1.0, turns=2, peak_model_tokens=50, generated_tokens=8)]
    >>> float(rollout_metrics(episodes, lambda sums: sums, world=1, rollout_seconds=2.0)["rollout_tokens_per_s"])
    4.0
    """
    stats = all_reduce(
        np.array(
            [
                *_score_sums(episodes),
                sum(e.turns for e in episodes),
                max(e.peak_model_tokens for e in episodes),
                sum(e.generated_tokens for e in episodes),
                len(episodes),
            ],
            np.float64,
        )
    )
    n = max(stats[6], 1.0)
    return {
        "reward": stats[0] / n,
        "em": stats[1] / n,
        "f1": stats[2] / n,
        "turns": stats[3] / n,
        "peak_context_tokens": stats[4] / world,  # mean over ranks of each rank's max
        "rollout_tokens_per_s": stats[5] / max(rollout_seconds, 1e-9) / world,
    }


@torch.no_grad()
def evaluate(trainer: PPOTrainer, seeds: Sequence[int], greedy: bool = True) -> dict[str, float]:
    """Mean reward/EM/F1 of ``trainer``'s policy on held-out (``split="test"``) episodes.

    The RNG state is left untouched. The seeds are split across ranks (rank ``r`` plays
    ``seeds[r::world]``, any count) and the sums are reduced once at the end."""
    c = trainer.config
    mine = list(seeds)[trainer.rank :: trainer.world]
    kwargs = {**c.env_options(), "split": "test"}
    policy = LLMPolicy(
        trainer.core.policy,
        trainer.tokenizer,
        protocol=kwargs.get("protocol", "mem1"),
        generation=GenerationConfig(
            max_new_tokens=c.max_new_tokens,
            temperature=c.temperature,
            top_p=c.top_p,
            do_sample=not greedy,
        ),
        backend=trainer.sampler.backend,  # issue 11: the same engine as the rollouts
    )
    saved = rng_state()
    episodes: list[Episode] = []
    with trainer._generation_model(policy):  # collective under FSDP2: every rank enters, even with no seed
        if mine:
            envs = [gym.make(c.env_id, **kwargs) for _ in range(min(c.num_envs, len(mine)))]
            episodes = collect(envs, policy, mine, generation_seed=c.seed)
            for env in envs:
                env.close()
    set_rng_state(saved)
    total = trainer.all_reduce(np.array([*_score_sums(episodes), len(episodes)], np.float64))
    n = max(total[3], 1.0)
    return {"eval_reward": total[0] / n, "eval_em": total[1] / n, "eval_f1": total[2] / n}
