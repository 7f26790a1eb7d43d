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
    """Play one episode per seed; returns them in seed order.

    ``policy`` is an :class:`agents.llm_policy.LLMPolicy` (anything with ``encode`` and a batched
    ``generate``). ``generation_seed`` seeds torch's sampler once before the first episode.

    With the Hugging Face backend, episodes run in waves of ``len(envs)``, one batched
    ``generate`` per turn. With an engine backend that takes single requests (``submit``/``poll``,
    see :mod:`agents.engines`), every episode runs on its own: its next turn is requested as soon
    as its observation exists and a free environment starts the next seed at once, so no episode
    waits for the slowest row of a turn.
    """
    envs = unwrap_envs(envs)
    if options is not None and len(options) != len(seeds):
        raise ValueError(f"options needs one entry per seed ({len(seeds)}), got {len(options)}")
    if generation_seed is not None:
        import torch

        torch.manual_seed(generation_seed)
    backend = getattr(policy, "backend", None)
    if hasattr(backend, "submit") and hasattr(backend, "poll"):
        return _play_streaming(envs, policy, list(seeds), options)
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


class _Playing:
    """One episode in progress: its env, what it saw, what the model produced."""

    def __init__(self, env: Any, seed: int | None, option: dict[str, Any] | None, slot: int = 0):
        self.env, self.seed, self.slot = env, seed, slot
        self.observation, self.info = env.reset(seed=seed, options=option)
        self.prompt = task_prompt(self.info)
        self.prompt_ids: np.ndarray = np.zeros(0, np.int64)
        self.turns: list[TurnRecord] = []
        self.texts: list[str] = []
        self.reward = 0.0
        self.peak = 0

    def next_input(self, policy: Any) -> tuple[np.ndarray, np.ndarray]:
        ids, context = policy.encode(self.prompt, self.observation)
        self.prompt_ids = ids
        return ids, context

    def play(self, context: np.ndarray, out: Any) -> bool:
        """Step the env with one response; True when the episode has ended."""
        observation, reward, terminated, truncated, info = self.env.step(out.text)
        # Each turn's reward sits on its last generated token (the task reward on the last turn's).
        self.turns.append(TurnRecord(context, out.token_ids, old_logprobs=out.logprobs, reward=float(reward)))
        self.texts.append(out.text)
        self.peak = max(self.peak, len(self.prompt_ids) + len(context) + len(out.token_ids))
        self.reward += float(reward)
        self.observation, self.info = observation, info
        return bool(terminated or truncated)

    def episode(self) -> Episode:
        info = self.info
        return Episode(
            record=RolloutRecord(self.prompt_ids, self.turns),
            seed=self.seed,
            reward=self.reward,
            em=float(np.sum(info.get("em", [0.0]))),
            f1=float(np.sum(info.get("f1", [0.0]))),
            turns=len(self.turns),
            peak_model_tokens=self.peak,
            generated_tokens=sum(len(t.generated_ids) for t in self.turns),
            info=info,
            texts=self.texts,
        )


def _play_wave(
    envs: list[Any], policy: Any, seeds: list[int | None], options: list[dict[str, Any] | None]
) -> list[Episode]:
    playing = [_Playing(env, seed, option) for env, seed, option in zip(envs, seeds, options, strict=True)]
    active = list(range(len(envs)))
    while active:
        inputs = [playing[i].next_input(policy) for i in active]
        generations = policy.generate(inputs)
        active = [
            i
            for i, (_, context), out in zip(active, inputs, generations, strict=True)
            if not playing[i].play(context, out)
        ]
    return [p.episode() for p in playing]


def _play_streaming(
    envs: list[Any], policy: Any, seeds: list[int | None], options: Sequence[dict[str, Any] | None] | None
) -> list[Episode]:
    """Episodes as independent request chains on an engine backend (see :func:`collect`).

    Each request's sampling seed comes from one base seed drawn from torch's generator and the
    (episode, turn) it belongs to, so results do not depend on the order requests finish in.
    """
    import torch

    backend = policy.backend
    base = int(torch.randint(0, 2**31 - 1, ()).item())
    free = list(range(len(envs)))
    waiting = list(range(len(seeds)))
    playing: dict[int, _Playing] = {}
    contexts: dict[int, np.ndarray] = {}
    done: dict[int, Episode] = {}

    def send(index: int) -> None:
        ids, context = playing[index].next_input(policy)
        contexts[index] = context
        seed = int(np.random.SeedSequence([base, index, len(playing[index].turns)]).generate_state(1)[0] >> 1)
        backend.submit(index, np.concatenate([ids, context]), policy.generation, policy.stop_strings, seed)

    def start_next() -> None:
        while free and waiting:
            index, slot = waiting.pop(0), free.pop(0)
            playing[index] = _Playing(envs[slot], seeds[index], options[index] if options else None, slot)
            send(index)

    start_next()
    while playing:
        for index, out in backend.poll():
            if playing[index].play(contexts.pop(index), out):
                finished = playing.pop(index)
                done[index] = finished.episode()
                free.append(finished.slot)
            else:
                send(index)
        start_next()
    return [done[i] for i in range(len(seeds))]


def timed_collect(*args: Any, **kwargs: Any) -> tuple[list[Episode], float]:
    """:func:`collect` and its wall time in seconds."""
    start = time.perf_counter()
    episodes = collect(*args, **kwargs)
    return episodes, time.perf_counter() - start
