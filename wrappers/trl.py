"""TRL ``GRPOTrainer`` on any MEM1 env: whole episodes, handed to TRL as exact per-turn samples.

A MEM1 context is pruned every turn, so an episode is not one growing conversation: turn ``t``
was generated from its own context. :class:`EpisodeRollout` is a ``rollout_func`` for TRL's
``GRPOTrainer`` that plays whole episodes with the trainer's generation (its vLLM engine when
``use_vllm`` is on, its model otherwise) and returns one TRL sample per turn:

* ``prompt_ids``: the exact ids the model was fed that turn (chat-template prefix + task prompt
  + that turn's bounded context, as :func:`agents.rollout.collect` recorded them);
* ``completion_ids``: the ids generated that turn, as produced (never decoded and re-encoded);
* ``logprobs``: the sampler's log-probs of those ids;
* extra fields ``episode_reward`` (the env's summed reward), ``episode_id`` (the group id shared
  by an episode's turns), ``turn`` (-1 on a padding slot) and ``seed``.

TRL computes GRPO advantages over ``num_generations`` consecutive rows. Each episode therefore
fills exactly ``turn_slots`` rows (its turns, then padding slots whose completion is masked out
of the loss through ``env_mask``), every row carrying the episode's reward, and
``num_generations = episodes_per_prompt * turn_slots``. A group's mean is then exactly the mean
over its episodes, and every turn of episode ``e`` gets advantage ``R_e - mean``: episode-level
GRPO, trained on the contexts that were really sampled.

Limits (TRL 1.16's ``rollout_func`` contract): the per-process batch
(``per_device_train_batch_size * steps_per_generation``) and ``num_generations`` must be
multiples of ``turn_slots``; padding slots are real rows (they cost a 2-token forward and show
up in TRL's completion-length logs as 0-token completions); with ``scale_rewards="group"`` the
standard deviation is taken over rows, which rescales every advantage by the same constant
``sqrt(T(G-1)/(GT-1))``; ``mask_truncated_completions`` must stay off (a turn that ends on a
closing action tag has no EOS, and TRL would call it truncated); a loss type that averages per
sequence (``"grpo"``) counts padding slots in its denominator, the token-level default
(``"dapo"``) does not.

>>> rollout = EpisodeRollout("MEM1-MultiQA-v0", {"world": "small", "max_turns": 3})
>>> rollout.turn_slots
3
>>> parse_seed(prompt_for(17, "Answer: who?"))
17
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

import mem1_envs  # noqa: F401 - registers the env ids
from agents.llm_policy import Generation, GenerationConfig, HFGenerateBackend, LLMPolicy
from mem1_envs.base_env import task_prompt

__all__ = [
    "EpisodeRollout",
    "RolloutCall",
    "TRLVLLMBackend",
    "TurnSample",
    "env_reward",
    "episode_dataset",
    "parse_seed",
    "prompt_for",
]

_SEED = re.compile(r"\Aepisode seed: (-?\d+)\n")


def prompt_for(seed: int, task: str) -> str:
    """The dataset prompt of one episode: a seed line, then the task prompt (for TRL's logs)."""
    return f"episode seed: {int(seed)}\n{task}"


def parse_seed(prompt: Any) -> int:
    """The seed inside a prompt made by :func:`prompt_for` (TRL hands the rollout only prompts)."""
    text = prompt if isinstance(prompt, str) else None
    match = _SEED.match(text) if text is not None else None
    if match is None:
        raise ValueError(
            f"prompt must start with 'episode seed: <int>' (see episode_dataset), got {prompt!r:.80}"
        )
    return int(match.group(1))


def episode_dataset(env_id: str, seeds: Sequence[int], **env_kwargs: Any) -> Any:
    """A ``datasets.Dataset`` with one row per episode seed: ``prompt`` and ``seed`` columns.

    The prompt carries the episode's task prompt (the start of its first observation) so TRL's
    completion logs are readable; the rollout reads only the seed line.
    """
    from datasets import Dataset

    if len(seeds) == 0:
        raise ValueError("seeds must not be empty, got 0 seeds")
    env = gym.make(env_id, **env_kwargs)
    prompts = [prompt_for(seed, task_prompt(env.reset(seed=int(seed))[1])) for seed in seeds]
    env.close()
    return Dataset.from_dict({"prompt": prompts, "seed": [int(s) for s in seeds]})


def env_reward(completions: list[Any], episode_reward: list[float], **_: Any) -> list[float]:
    """TRL reward function: each turn sample's reward is its episode's env reward."""
    return [float(r) for r in episode_reward]


@dataclass(frozen=True)
class TurnSample:
    """One row handed to TRL."""

    seed: int
    episode_id: str
    turn: int
    """Turn index in the episode; -1 for a padding slot."""
    prompt_ids: list[int]
    completion_ids: list[int]
    reward: float


@dataclass
class RolloutCall:
    """What one rollout call produced: its episodes (``agents.rollout.Episode``) and rows."""

    episodes: list[Any] = field(default_factory=list)
    rows: list[TurnSample] = field(default_factory=list)
    generate_calls: int = 0


class TRLVLLMBackend(HFGenerateBackend):
    """Generation through the trainer's vLLM engine (``trainer.vllm_generation``, colocate or server).

    vLLM samples with the trainer's settings (``max_completion_length``, ``temperature``, ...);
    each response is then cut right after its first closing action tag or EOS: a prefix of a
    sampled sequence is itself an exact sample under that stopping rule, and its ids and
    log-probs are kept as vLLM returned them.
    """

    def __init__(self, vllm_generation: Any, tokenizer: Any):
        super().__init__(model=None, tokenizer=tokenizer)
        self.vllm_generation = vllm_generation

    def generate(
        self, input_ids: Sequence[np.ndarray], config: GenerationConfig, stop_strings: tuple[str, ...]
    ) -> list[Generation]:
        prompts = [np.asarray(ids, np.int64).tolist() for ids in input_ids]
        _, completions, logprobs, _ = self.vllm_generation.generate(
            prompts=prompts, images=None, num_generations=1
        )
        stop_set = set(self._single_token_stops(stop_strings) or [])
        results = []
        for b, ids in enumerate(completions):
            ids = np.asarray(ids, np.int64)
            end, finish = self._end(ids, stop_strings, stop_set)
            # vLLM gives per-token lists whose first entry is the sampled token's log-prob.
            row = [np.nan if lp is None or lp[0] is None else lp[0] for lp in logprobs[b][:end]]
            results.append(
                Generation(
                    text=self.tokenizer.decode(ids[:end], skip_special_tokens=False),
                    token_ids=ids[:end].copy(),
                    logprobs=np.asarray(row, np.float32),
                    finish=finish,
                )
            )
        return results


class _CountingPolicy:
    """An LLMPolicy that counts its batched generate calls (for lock-step across processes)."""

    def __init__(self, policy: LLMPolicy):
        self.policy = policy
        self.calls = 0

    def encode(self, prompt: str, observation: str) -> tuple[np.ndarray, np.ndarray]:
        return self.policy.encode(prompt, observation)

    def generate(self, inputs: Sequence[tuple[np.ndarray, np.ndarray]], **options: Any) -> list[Generation]:
        self.calls += 1
        return self.policy.generate(inputs, **options)


class EpisodeRollout:
    """A TRL ``rollout_func``: plays whole episodes, returns exact per-turn samples.

    Args:
        env_id: a registered env id (``"MEM1-MultiQA-v0"``, ``"MEM1-WebShop-v0"``, ...).
        env_kwargs: ``gym.make`` keyword arguments of every episode.
        turn_slots: rows per episode (default: the env's turn limit, ``config.turn_limit``).
        protocol: tag set whose closing action tags end a response (default: the env's).

    Use: ``GRPOTrainer(model, reward_funcs=[env_reward], rollout_func=rollout,
    train_dataset=episode_dataset(env_id, seeds, **env_kwargs),
    args=GRPOConfig(num_generations=G * rollout.turn_slots, ...))``.
    ``calls`` keeps every call's episodes and rows (the last ``keep_calls``).
    """

    def __init__(
        self,
        env_id: str,
        env_kwargs: dict[str, Any] | None = None,
        *,
        turn_slots: int | None = None,
        protocol: str | None = None,
        keep_calls: int = 8,
    ):
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        probe = gym.make(env_id, **self.env_kwargs)
        config = getattr(probe.unwrapped, "config", None)
        self.protocol = protocol or getattr(config, "protocol", None) or "mem1"
        if turn_slots is None:
            turn_slots = getattr(config, "turn_limit", None)
            if turn_slots is None:
                raise ValueError(f"{env_id} has no config.turn_limit; pass turn_slots")
        limit = getattr(config, "turn_limit", None)
        probe.close()
        if int(turn_slots) < 1:
            raise ValueError(f"turn_slots must be >= 1, got {turn_slots}")
        if limit is not None and int(turn_slots) < limit:
            raise ValueError(f"turn_slots must be >= the env's turn limit {limit}, got {turn_slots}")
        self.turn_slots = int(turn_slots)
        self.keep_calls = keep_calls
        self.calls: list[RolloutCall] = []
        self._envs: list[Any] = []
        self._count = 0
        self.__name__ = "mem1_episode_rollout"

    # -- TRL entry point ------------------------------------------------------------------
    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list[Any]]:
        # TRL groups num_generations rows in training and num_generations_eval in evaluation.
        training = getattr(getattr(trainer, "model", None), "training", True)
        groups = trainer.num_generations if training else getattr(trainer, "num_generations_eval", None)
        seeds = self._episode_seeds(prompts, int(groups or trainer.num_generations))
        tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
        call = RolloutCall()
        with self._policy(trainer, tokenizer) as policy:
            counted = _CountingPolicy(policy)
            from agents.rollout import collect

            call.episodes = collect(self._env_pool(len(seeds)), counted, seeds)
            # Every process must call a collective generator the same number of times (vLLM
            # server mode gathers prompts; DeepSpeed ZeRO-3 gathers weights): pad to turn_slots.
            if int(getattr(trainer.accelerator, "num_processes", 1)) > 1:
                dummy = (np.zeros(0, np.int64), np.asarray([self._pad_id(tokenizer)], np.int64))
                while counted.calls < self.turn_slots:
                    counted.generate([dummy])
            call.generate_calls = counted.calls
        self._count += 1
        process = int(getattr(trainer.accelerator, "process_index", 0))
        out: dict[str, list[Any]] = {
            k: [] for k in ("prompt_ids", "completion_ids", "logprobs", "env_mask", "episode_reward")
        }
        out.update(episode_id=[], turn=[], seed=[])
        pad, eos = self._pad_id(tokenizer), self._eos_id(tokenizer)
        for k, episode in enumerate(call.episodes):
            episode_id = f"{process}-{self._count}-{k}"
            record = episode.record
            if len(record.turns) > self.turn_slots:
                raise ValueError(
                    f"an episode played {len(record.turns)} turns, more than turn_slots={self.turn_slots}"
                )
            base = np.asarray(record.prompt_ids, np.int64)
            for t in range(self.turn_slots):
                if t < len(record.turns):
                    turn = record.turns[t]
                    prompt_ids = np.concatenate([base, turn.context_ids]).tolist()
                    completion = np.asarray(turn.generated_ids, np.int64).tolist()
                    logprobs = np.asarray(turn.old_logprobs, np.float64).tolist()
                    mask, index = [1] * len(completion), t
                else:  # a padding slot: in the group statistics, out of the loss
                    prompt_ids, completion, logprobs, mask, index = [pad], [eos], [0.0], [0], -1
                out["prompt_ids"].append(prompt_ids)
                out["completion_ids"].append(completion)
                out["logprobs"].append(logprobs)
                out["env_mask"].append(mask)
                out["episode_reward"].append(float(episode.reward))
                out["episode_id"].append(episode_id)
                out["turn"].append(index)
                out["seed"].append(episode.seed)
                call.rows.append(
                    TurnSample(episode.seed, episode_id, index, prompt_ids, completion, float(episode.reward))
                )
        self.calls = [*self.calls, call][-self.keep_calls :]
        return out

    # -- helpers --------------------------------------------------------------------------
    def _episode_seeds(self, prompts: list[Any], num_generations: int) -> list[int]:
        T = self.turn_slots
        if num_generations % T:
            raise ValueError(
                f"num_generations must be a multiple of turn_slots={T} (episodes per prompt * {T}), "
                f"got {num_generations}"
            )
        if len(prompts) % T:
            raise ValueError(
                f"the per-process batch (per_device_train_batch_size * steps_per_generation) must be a "
                f"multiple of turn_slots={T}, got {len(prompts)} prompts"
            )
        seeds = []
        for start in range(0, len(prompts), T):
            chunk = prompts[start : start + T]
            if any(p != chunk[0] for p in chunk):
                raise ValueError(
                    f"rows {start}..{start + T - 1} must repeat one episode prompt, got different prompts"
                )
            seeds.append(parse_seed(chunk[0]))
        return seeds

    def _env_pool(self, n: int) -> list[Any]:
        while len(self._envs) < n:
            self._envs.append(gym.make(self.env_id, **self.env_kwargs))
        return self._envs[:n]

    @contextlib.contextmanager
    def _policy(self, trainer: Any, tokenizer: Any) -> Iterator[LLMPolicy]:
        args = trainer.args
        generation = GenerationConfig(
            max_new_tokens=int(args.max_completion_length),
            temperature=float(args.temperature),
            top_p=float(args.top_p),
        )
        if getattr(trainer, "use_vllm", False):
            backend = TRLVLLMBackend(trainer.vllm_generation, tokenizer)
            yield LLMPolicy(
                trainer.model, tokenizer, protocol=self.protocol, generation=generation, backend=backend
            )
            return
        unsupported = {
            "top_k": (getattr(args, "top_k", 0), (0, None)),
            "min_p": (getattr(args, "min_p", None), (None,)),
            "repetition_penalty": (getattr(args, "repetition_penalty", 1.0), (1.0, None)),
        }
        for name, (value, defaults) in unsupported.items():
            if value not in defaults:
                raise ValueError(
                    f"{name} is not supported by the transformers rollout path, got {name}={value} "
                    "(use vLLM or leave it at its default)"
                )
        if getattr(trainer, "is_fsdp_enabled", False):
            raise ValueError("FSDP without vLLM is not supported by EpisodeRollout: set use_vllm=True")
        from trl.models import unwrap_model_for_generation

        with unwrap_model_for_generation(
            trainer.model_wrapped,
            trainer.accelerator,
            gather_deepspeed3_params=args.ds3_gather_for_generation,
            gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs,
        ) as model:
            yield LLMPolicy(model, tokenizer, protocol=self.protocol, generation=generation)

    @staticmethod
    def _pad_id(tokenizer: Any) -> int:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return int(pad)

    @staticmethod
    def _eos_id(tokenizer: Any) -> int:
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.pad_token_id
        return int(eos)

    def close(self) -> None:
        """Close the pooled environments."""
        for env in self._envs:
            env.close()
        self._envs = []
