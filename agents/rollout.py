"""Rollout collection: step many episodes turn by turn, one batched generation per turn.

Every turn of every active episode is encoded by the policy into ``(prompt_ids, context_ids)``
(the prompt is the env's ``info["prompt"]``, tokenized once and shared by every turn), all
rows are generated in one batch, and each episode's :class:`~mem1_envs.trajectory.TurnRecord`
keeps the exact context ids the model was fed and the generated ids with their sampler
log-probs as produced. Generated text is never re-tokenized. Finished episodes become
:class:`~mem1_envs.trajectory.RolloutRecord` objects ready for ``pack_exact``; reference
log-probs and values are then computed for a whole batch by one exact packed forward in the
trainer (identical to per-turn scoring, see ``tests/test_ppo.py``).

>>> import pytest; _ = pytest.importorskip("transformers")
>>> import gymnasium as gym, mem1_envs
>>> from agents.llm_policy import LLMPolicy, GenerationConfig
>>> from agents.tiny_model import default_tiny_model
>>> policy = LLMPolicy.from_pretrained(default_tiny_model(), generation=GenerationConfig(max_new_tokens=8))
>>> envs = [gym.make("MEM1-MultiQA-v0", world="small", max_turns=2) for _ in range(2)]
>>> episodes = collect(envs, policy, seeds=[0, 1, 2])
>>> len(episodes), all(len(e.record.turns) >= 1 for e in episodes)
(3, True)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mem1_envs.base_env import task_prompt
from mem1_envs.trajectory import RolloutRecord, TurnRecord

__all__ = ["Episode", "collect", "unwrap_envs"]


@dataclass
class Episode:
    """One finished episode.

    Attributes:
        record: token-level record for training (prompt ids, per-turn context/generated ids).
        seed: the reset seed.
        reward: the summed environment reward.
        em: summed exact matches over objectives (0 when the episode never answered).
        f1: summed F1 over objectives.
        turns: turns played.
        peak_model_tokens: largest prompt + context + generated length, in model tokens.
        generated_tokens: generated tokens over the episode.
        info: the environment's last ``info``.
        texts: the responses as text, per turn.
    """

    record: RolloutRecord
    seed: int | None
    reward: float
    em: float
    f1: float
    turns: int
    peak_model_tokens: int
    generated_tokens: int
    info: dict[str, Any] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)


def unwrap_envs(envs: Any) -> list[Any]:
    """A list of single environments from a list or a Gymnasium ``SyncVectorEnv`` (its ``envs``)."""
    inner = getattr(envs, "envs", None)
    if inner is not None:
        return list(inner)
    envs = list(envs)
    if not envs:
        raise ValueError("collect needs at least one environment, got 0")
    return envs


def collect(
    envs: Any,
    policy: Any,
    seeds: Sequence[int | None],
    *,
    options: Sequence[dict[str, Any] | None] | None = None,
    generation_seed: int | None = None,
) -> list[Episode]:
    """Play one episode per seed (in waves of ``len(envs)``); returns them in seed order.

    ``policy`` is an :class:`agents.llm_policy.LLMPolicy` (anything with ``encode`` and a batched
    ``generate``). ``generation_seed`` seeds torch's sampler once before the first wave.
    """
    envs = unwrap_envs(envs)
    if options is not None and len(options) != len(seeds):
        raise ValueError(f"options needs one entry per seed ({len(seeds)}), got {len(options)}")
    if generation_seed is not None:
        import torch

        torch.manual_seed(generation_seed)
    episodes: list[Episode] = []
    for start in range(0, len(seeds), len(envs)):
        wave = list(range(start, min(start + len(envs), len(seeds))))
        episodes += _play_wave(
            envs[: len(wave)],
            policy,
            [seeds[i] for i in wave],
            [options[i] if options else None for i in wave],
        )
    return episodes


def _play_wave(
    envs: list[Any], policy: Any, seeds: list[int | None], options: list[dict[str, Any] | None]
) -> list[Episode]:
    observations, infos, prompts = [], [], []
    for env, seed, option in zip(envs, seeds, options, strict=True):
        observation, info = env.reset(seed=seed, options=option)
        observations.append(observation)
        infos.append(info)
        prompts.append(task_prompt(info))
    turns: list[list[TurnRecord]] = [[] for _ in envs]
    texts: list[list[str]] = [[] for _ in envs]
    rewards = [0.0] * len(envs)
    peaks = [0] * len(envs)
    prompt_ids: list[np.ndarray] = [np.zeros(0, np.int64)] * len(envs)
    active = list(range(len(envs)))
    while active:
        inputs = []
        for i in active:
            ids, context = policy.encode(prompts[i], observations[i])
            prompt_ids[i] = ids
            inputs.append((ids, context))
        generations = policy.generate(inputs)
        still = []
        for i, (ids, context), out in zip(active, inputs, generations, strict=True):
            observation, reward, terminated, truncated, info = envs[i].step(out.text)
            # Each turn's reward sits on its last generated token (the task reward on the last turn's).
            turns[i].append(
                TurnRecord(context, out.token_ids, old_logprobs=out.logprobs, reward=float(reward))
            )
            texts[i].append(out.text)
            peaks[i] = max(peaks[i], len(ids) + len(context) + len(out.token_ids))
            rewards[i] += float(reward)
            observations[i], infos[i] = observation, info
            if not (terminated or truncated):
                still.append(i)
        active = still
    episodes = []
    for i, seed in enumerate(seeds):
        info = infos[i]
        episodes.append(
            Episode(
                record=RolloutRecord(prompt_ids[i], turns[i]),
                seed=seed,
                reward=rewards[i],
                em=float(np.sum(info.get("em", [0.0]))),
                f1=float(np.sum(info.get("f1", [0.0]))),
                turns=len(turns[i]),
                peak_model_tokens=peaks[i],
                generated_tokens=sum(len(t.generated_ids) for t in turns[i]),
                info=info,
                texts=texts[i],
            )
        )
    return episodes


def timed_collect(*args: Any, **kwargs: Any) -> tuple[list[Episode], float]:
    """:func:`collect` and its wall time in seconds."""
    start = time.perf_counter()
    episodes = collect(*args, **kwargs)
    return episodes, time.perf_counter() - start
