"""GRPO with TRL's GRPOTrainer on a MEM1 env: whole episodes, trained as exact per-turn samples.

    # CPU, offline, the suite's tiny model (a smoke run)
    python scripts/train_trl_grpo.py --output_dir runs/trl --max_steps 2 --max_completion_length 8 \\
        --env_kwargs '{"world": "small", "max_turns": 2, "invalid_action": "penalize"}'
    # a real model on GPUs, TRL's vLLM engine colocated, any accelerate/DeepSpeed config
    accelerate launch scripts/train_trl_grpo.py --model Qwen/Qwen2.5-1.5B-Instruct --use_vllm \\
        --vllm_mode colocate --bf16 --episodes_per_prompt 8 --per_device_train_batch_size 48 \\
        --max_completion_length 256 --env_kwargs '{"num_objectives": 2}' --output_dir runs/trl-qwen

Every TRL ``GRPOConfig`` flag applies (``--config grpo.yaml`` too). ``num_generations`` is set
to ``episodes_per_prompt * turn_slots`` (the env's turn limit): each episode fills
``turn_slots`` rows (see ``wrappers/trl.py``), so ``per_device_train_batch_size`` must be a
multiple of ``turn_slots``. Rewards are the env's (``env_reward``); nothing else is added.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class EnvArguments:
    """The env, its episodes and the model (the rest is TRL's GRPOConfig)."""

    model: str = field(default="tiny", metadata={"help": "HF model folder/hub name, or 'tiny' (offline)"})
    env_id: str = field(default="MEM1-MultiQA-v0", metadata={"help": "a registered MEM1 env id"})
    env_kwargs: str = field(default='{"world": "small"}', metadata={"help": "gym.make kwargs as JSON"})
    first_seed: int = field(default=0, metadata={"help": "first episode seed of the dataset"})
    num_seeds: int = field(default=256, metadata={"help": "episode seeds in the dataset"})
    episodes_per_prompt: int = field(default=2, metadata={"help": "episodes per seed (the GRPO group)"})
    turn_slots: int | None = field(default=None, metadata={"help": "rows per episode (default: turn limit)"})


def build(argv: list[str] | None = None, extra_rewards: tuple[Any, ...] = ()) -> tuple[Any, Any]:
    """``(trainer, rollout)`` from command-line arguments, ready for ``trainer.train()``.

    ``extra_rewards``: TRL reward functions added to ``env_reward`` (Python callers only).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer, TrlParser

    from wrappers.trl import EpisodeRollout, env_reward, episode_dataset

    argv = list(sys.argv[1:] if argv is None else argv)
    # First the env arguments: the turn slots fix num_generations, which GRPOConfig checks.
    env_args, _ = TrlParser((EnvArguments,)).parse_args_and_config(argv, return_remaining_strings=True)
    env_kwargs = json.loads(env_args.env_kwargs)
    if not isinstance(env_kwargs, dict):
        raise ValueError(f"env_kwargs must be a JSON object, got {env_args.env_kwargs!r}")
    if env_args.episodes_per_prompt < 1 or env_args.num_seeds < 1:
        raise ValueError(
            f"episodes_per_prompt and num_seeds must be >= 1, got {env_args.episodes_per_prompt}, {env_args.num_seeds}"
        )
    rollout = EpisodeRollout(env_args.env_id, env_kwargs, turn_slots=env_args.turn_slots)
    generations = env_args.episodes_per_prompt * rollout.turn_slots
    _, training_args = TrlParser((EnvArguments, GRPOConfig)).parse_args_and_config(
        [*argv, "--num_generations", str(generations)]
    )
    if training_args.per_device_train_batch_size % rollout.turn_slots:
        raise ValueError(
            f"per_device_train_batch_size must be a multiple of turn_slots={rollout.turn_slots}, "
            f"got {training_args.per_device_train_batch_size}"
        )
    path = env_args.model
    if path == "tiny":
        from agents.tiny_model import default_tiny_model

        path = default_tiny_model()
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
    seeds = range(env_args.first_seed, env_args.first_seed + env_args.num_seeds)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[env_reward, *extra_rewards],
        args=training_args,
        train_dataset=episode_dataset(env_args.env_id, list(seeds), **env_kwargs),
        processing_class=tokenizer,
        rollout_func=rollout,
    )
    return trainer, rollout


def main(argv: list[str] | None = None) -> Any:
    trainer, rollout = build(argv)
    trainer.train()
    trainer.save_model(trainer.args.output_dir)
    rollout.close()
    return trainer


if __name__ == "__main__":
    main()
