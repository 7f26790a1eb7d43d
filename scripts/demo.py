"""The main job on the embedded default world: a scripted MEM1-style agent plays MEM1-MultiQA-v0.

For 1, 4 and 16 objectives it plays episodes under the bounded ``mem1`` context and under the
``full`` (ReAct-style) history, and prints EM and F1 (summed over objectives, per episode),
turns, peak context tokens and env steps/s. The same agent reads the same facts either way;
only the memory differs.

    python scripts/demo.py                      # 1, 4, 16 objectives, 20 episodes each
    python scripts/demo.py --objectives 2 --episodes 3 --world small
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

import gymnasium as gym
from tqdm import tqdm

import mem1_envs  # noqa: F401  (registers the env ids)
from agents.play import EpisodeStats, play_episode
from agents.scripted import MultiQAScriptedAgent
from mem1_envs.memory import POLICIES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objectives", type=int, nargs="+", default=[1, 4, 16], help="questions per episode")
    parser.add_argument("--episodes", type=int, default=20, help="episodes per setting")
    parser.add_argument(
        "--memory",
        nargs="+",
        default=["mem1", "full"],
        choices=list(POLICIES),
        help="context policies to compare",
    )
    parser.add_argument("--world", default="default", help="generated world size: default or small")
    parser.add_argument("--seed", type=int, default=0, help="first episode seed")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    return args


def summarise(objectives: int, memory: str, runs: list[EpisodeStats], seconds: float) -> dict[str, str]:
    steps = sum(r.turns for r in runs)
    return {
        "objectives": str(objectives),
        "memory": memory,
        "EM": f"{statistics.mean(r.em for r in runs):.2f}/{objectives}",
        "F1": f"{statistics.mean(r.f1 for r in runs):.2f}/{objectives}",
        "turns": f"{statistics.mean(r.turns for r in runs):.1f}",
        "peak ctx tokens": str(max(r.peak_context_tokens for r in runs)),
        "steps/s": f"{steps / seconds:.0f}",
    }


def print_table(rows: list[dict[str, str]]) -> None:
    headers = list(rows[0])
    widths = [max(len(h), *(len(row[h]) for row in rows)) for h in headers]
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(row[h].ljust(w) for h, w in zip(headers, widths, strict=True)))


def warm_up(world: str) -> None:
    """Load the world and compile the numba reward kernels before anything is timed."""
    env = gym.make("MEM1-MultiQA-v0", world=world)
    play_episode(env, MultiQAScriptedAgent(), seed=-1 % 2**31)
    env.close()


def main(argv: list[str] | None = None) -> list[dict[str, str]]:
    args = parse_args(argv)
    settings = [(n, memory) for n in args.objectives for memory in args.memory]
    rows = []
    warm_up(args.world)
    progress = tqdm(total=len(settings) * args.episodes, desc="episodes", unit="ep")
    for objectives, memory in settings:
        env = gym.make("MEM1-MultiQA-v0", num_objectives=objectives, memory=memory, world=args.world)
        agent = MultiQAScriptedAgent()
        runs, start = [], time.perf_counter()
        for seed in range(args.seed, args.seed + args.episodes):
            runs.append(play_episode(env, agent, seed))
            progress.update()
        rows.append(summarise(objectives, memory, runs, time.perf_counter() - start))
        env.close()
    progress.close()
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
