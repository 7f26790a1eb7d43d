"""Does PPO improve on its SFT start? Tiny model, 1 objective, small world, fixed seeds, CPU.

    python scripts/learning_check.py                       # the BENCHMARKS.md curve
    python scripts/learning_check.py --out runs/learning.json

1. SFT: behaviour cloning of the scripted agent for ``--sft-steps`` steps (a deliberately short
   warm start: the tiny model learns the turn format only partly).
2. PPO (``tiny-cpu`` preset, MEM1's k1 KL in the reward, GAE gamma = lambda = 1) for
   ``--ppo-steps`` steps on training questions.
3. Held-out evaluation (``split="test"`` questions, seeds from 10**9, sampling at temperature 1
   with a fixed generation seed) before PPO and every ``--eval-every`` PPO steps.

The environment penalises an invalid action with -0.1 and goes on (``invalid_action="penalize"``,
``max_turns=2``), so the reward measures both answering (EM, +1) and following the protocol.
Prints the curve and returns it; ``tests/test_ppo_learning.py`` asserts the improvement.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ENV = (("world", "small"), ("num_objectives", 1), ("max_turns", 2), ("invalid_action", "penalize"))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sft-steps", type=int, default=60)
    parser.add_argument("--sft-lr", type=float, default=1e-2)
    parser.add_argument("--ppo-steps", type=int, default=12)
    parser.add_argument("--actor-lr", type=float, default=5e-4)
    parser.add_argument("--episodes-per-step", type=int, default=16)
    parser.add_argument("--eval-episodes", type=int, default=64)
    parser.add_argument("--eval-every", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the curve as JSON")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from agents.llm_policy import GenerationConfig, LLMPolicy
    from agents.ppo.config import preset
    from agents.ppo.trainer import PPOTrainer
    from agents.sft import scripted_records, sft_train
    from agents.tiny_model import default_tiny_model

    scratch = tempfile.mkdtemp(prefix="learning-check-")
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    policy = LLMPolicy.from_pretrained(default_tiny_model(), generation=GenerationConfig(max_new_tokens=40))
    batch = 8
    records, _ = scripted_records(policy, {**dict(ENV), "split": "train"}, range(args.sft_steps * batch))
    sft_losses = sft_train(policy.model, records, lr=args.sft_lr, batch_episodes=batch, seed=args.seed)
    sft_folder = os.path.join(scratch, "sft")
    policy.model.save_pretrained(sft_folder)
    policy.tokenizer.save_pretrained(sft_folder)
    sft_seconds = time.perf_counter() - start

    config = preset(
        "tiny-cpu",
        env_kwargs=(*ENV, ("split", "train")),
        num_envs=args.episodes_per_step,
        episodes_per_step=args.episodes_per_step,
        mini_batch_episodes=args.episodes_per_step,
        micro_batch_episodes=args.episodes_per_step,
        max_new_tokens=40,
        total_steps=args.ppo_steps,
        actor_lr=args.actor_lr,
        seed=args.seed,
        out_dir=os.path.join(scratch, "ppo"),
        save_every=10**6,
        progress=False,
    )
    trainer = PPOTrainer(config, policy_path=sft_folder)
    seeds = list(range(10**9, 10**9 + args.eval_episodes))
    curve = [{"ppo_step": 0, **trainer.evaluate(seeds, greedy=False)}]
    print(
        f"SFT {args.sft_steps} steps (loss {sft_losses[0]:.2f} -> {sft_losses[-1]:.2f}) in {sft_seconds:.0f} s"
    )
    print(f"ppo_step 0: held-out reward {curve[0]['eval_reward']:.3f} em {curve[0]['eval_em']:.3f}")
    train_rewards = []
    while trainer.step < args.ppo_steps:
        metrics = trainer.train(stop_after=1)[-1]
        train_rewards.append(metrics["reward"])
        if trainer.step % args.eval_every == 0 or trainer.step == args.ppo_steps:
            point = {"ppo_step": trainer.step, **trainer.evaluate(seeds, greedy=False)}
            curve.append(point)
            print(
                f"ppo_step {trainer.step}: held-out reward {point['eval_reward']:.3f} em {point['eval_em']:.3f} "
                f"(train reward {metrics['reward']:.3f}, kl {metrics['kl']:.4f}, clipfrac {metrics['clipfrac']:.3f})"
            )
    trainer.close()
    result = {
        "sft_steps": args.sft_steps,
        "ppo_steps": args.ppo_steps,
        "sft_final_loss": sft_losses[-1],
        "curve": curve,
        "train_rewards": train_rewards,
        "start_reward": curve[0]["eval_reward"],
        "final_reward": curve[-1]["eval_reward"],
        "best_reward": float(np.max([p["eval_reward"] for p in curve[1:]]))
        if len(curve) > 1
        else float("nan"),
        "seconds": time.perf_counter() - start,
    }
    print(
        f"held-out reward: SFT start {result['start_reward']:.3f} -> after PPO {result['final_reward']:.3f} "
        f"({result['seconds']:.0f} s)"
    )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=1)
    shutil.rmtree(scratch, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
