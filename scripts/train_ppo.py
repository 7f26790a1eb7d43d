"""Train an LLM policy with masked PPO (or GRPO/GiGPO) on a MEM1 environment.

    python scripts/train_ppo.py --config tiny-cpu --total-steps 20 --out-dir runs/tiny
    python scripts/train_ppo.py --config tiny-cpu --policy runs/sft/policy   # from an SFT start
    torchrun --nproc_per_node=2 scripts/train_ppo.py --config tiny-cpu       # DDP (gloo on CPU)
    torchrun --nproc_per_node=8 scripts/train_ppo.py --config qwen2.5-7b --model /models/Qwen2.5-7B-Instruct

Every field of ``agents.ppo.config.PPOConfig`` is a flag (``--kl-mode k3_loss``); ``--resume``
continues from the latest sharded checkpoint in ``<out-dir>/checkpoints`` (or an old
``<out-dir>/checkpoint.pt``) exactly where it stopped.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import sys
import typing
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agents.ppo.config import PRESETS, PPOConfig, preset


def _parse_value(text: str, annotation: Any) -> Any:
    kind = str(annotation)
    if text == "None":
        return None
    if "tuple" in kind:  # env_kwargs: "world=small,num_objectives=2"
        pairs = []
        for item in text.split(","):
            key, _, value = item.partition("=")
            try:
                pairs.append((key.strip(), ast.literal_eval(value)))
            except (ValueError, SyntaxError):
                pairs.append((key.strip(), value))
        return tuple(pairs)
    if "bool" in kind:
        return text.lower() in ("1", "true", "yes")
    if "int" in kind and "float" not in kind:
        return int(text)
    if "float" in kind:
        return float(text)
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="tiny-cpu", choices=sorted(PRESETS), help="preset to start from")
    parser.add_argument("--policy", default=None, help="initial policy folder (e.g. an SFT checkpoint)")
    parser.add_argument("--resume", action="store_true", help="continue from <out-dir>/checkpoints/latest")
    hints = typing.get_type_hints(PPOConfig)
    for field in dataclasses.fields(PPOConfig):
        parser.add_argument(
            "--" + field.name.replace("_", "-"), dest=field.name, default=None, help=f"({hints[field.name]})"
        )
    return parser


def config_from_args(args: argparse.Namespace) -> PPOConfig:
    hints = typing.get_type_hints(PPOConfig)
    overrides = {
        f.name: _parse_value(getattr(args, f.name), hints[f.name])
        for f in dataclasses.fields(PPOConfig)
        if getattr(args, f.name) is not None
    }
    return preset(args.config, **overrides)


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    from agents.ppo.trainer import PPOTrainer

    trainer = PPOTrainer(config, policy_path=args.policy)
    history = trainer.train(resume=args.resume)
    trainer.save_policy()
    if trainer.is_main and history:
        last = history[-1]
        print(
            f"step {trainer.step}: reward {last['reward']:.3f} kl {last['kl']:.4f} "
            f"logprob_gap {last['logprob_gap']:.2e} tokens/s {last['tokens_per_s']:.0f}"
        )
    trainer.close()
    return history


if __name__ == "__main__":
    main()
