"""Behaviour cloning (SFT) of an LLM policy from the scripted agent's episodes.

    python scripts/train_sft.py --episodes 512 --epochs 1 --out-dir runs/sft           # tiny model
    python scripts/train_sft.py --model /models/Qwen2.5-0.5B --lr 1e-5 --device cuda --out-dir runs/sft-qwen

Scripted episodes (``agents.scripted.MultiQAScriptedAgent``, 100% accurate on the generated
world) are encoded exactly as the policy sees them at rollout, packed with ``pack_exact`` and
trained with the loss on generated tokens only (``agents.sft``). The result is saved with
``save_pretrained`` (policy + tokenizer), ready for ``scripts/train_ppo.py --policy`` and
``scripts/evaluate.py --agent hf --model``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mem1_envs.memory import POLICIES
from mem1_envs.validation import check_float, check_folder, check_int, cli_type

_positive = cli_type(check_int, int, minimum=1)
_seed = cli_type(check_int, int, minimum=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="tiny", help="local HF model folder, or 'tiny' (the offline default)"
    )
    parser.add_argument("--out-dir", default="runs/sft", help="where the policy and tokenizer are saved")
    parser.add_argument("--episodes", type=_positive, default=512, help="scripted training episodes")
    parser.add_argument("--seed-start", type=_seed, default=0)
    parser.add_argument("--epochs", type=_positive, default=1)
    parser.add_argument("--lr", type=cli_type(check_float, float, above=0), default=1e-2)
    parser.add_argument("--batch-episodes", type=_positive, default=8)
    parser.add_argument("--world", default="small", choices=["small", "default"])
    parser.add_argument("--objectives", type=_positive, default=1)
    parser.add_argument("--max-turns", type=_positive, default=None)
    parser.add_argument("--memory", default="mem1", choices=list(POLICIES))
    parser.add_argument("--protocol", default="mem1")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--max-packed-tokens", type=_positive, default=None, help="D7 budget per packed episode"
    )
    parser.add_argument("--progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.model != "tiny":
        try:
            check_folder("--model", args.model)  # a local folder: nothing is fetched from a hub
        except ValueError as error:
            parser.error(str(error))
    import torch

    from agents.llm_policy import LLMPolicy
    from agents.sft import scripted_records, sft_train

    torch.manual_seed(args.seed_start)
    path = args.model
    if path == "tiny":
        from agents.tiny_model import default_tiny_model

        path = default_tiny_model()
    policy = LLMPolicy.from_pretrained(path, device=args.device, protocol=args.protocol)
    env_kwargs = {
        "world": args.world,
        "num_objectives": args.objectives,
        "memory": args.memory,
        "protocol": args.protocol,
        "split": "train",
    }
    if args.max_turns is not None:
        env_kwargs["max_turns"] = args.max_turns
    start = time.perf_counter()
    seeds = range(args.seed_start, args.seed_start + args.episodes)
    records, rewards = scripted_records(policy, env_kwargs, seeds)
    collect_seconds = time.perf_counter() - start
    policy.model.to(args.device)
    losses = sft_train(
        policy.model,
        records,
        epochs=args.epochs,
        lr=args.lr,
        batch_episodes=args.batch_episodes,
        seed=args.seed_start,
        max_tokens=args.max_packed_tokens,
        progress=args.progress,
        device=args.device,
    )
    os.makedirs(args.out_dir, exist_ok=True)
    policy.model.save_pretrained(args.out_dir)
    policy.tokenizer.save_pretrained(args.out_dir)
    summary = {
        "episodes": len(records),
        "scripted_mean_reward": sum(rewards) / len(rewards),
        "first_loss": losses[0],
        "final_loss": losses[-1],
        "steps": len(losses),
        "collect_seconds": collect_seconds,
        "train_seconds": time.perf_counter() - start - collect_seconds,
    }
    with open(os.path.join(args.out_dir, "sft_summary.json"), "w", encoding="utf-8") as handle:
        json.dump({**summary, "losses": losses, "env_kwargs": env_kwargs}, handle, indent=1)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
