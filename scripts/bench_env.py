"""Benchmark MEM1-MultiQA-v0's building blocks on the default world, all measured in one run.

Prints: world generation and index time (into a fresh cache folder), cached load time,
BM25 queries/s (batched and one at a time, top-3), env steps/s with the scripted agent, and
peak context tokens at 1, 4 and 16 objectives under the ``mem1`` and ``full`` policies.

    python scripts/bench_env.py            # default world, the figures in BENCHMARKS.md
    python scripts/bench_env.py --quick    # small world, a few episodes (smoke test)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym
import numpy as np

import mem1_envs  # noqa: F401
from agents.play import play
from agents.scripted import MultiQAScriptedAgent
from mem1_envs.qa import sources
from mem1_envs.qa.world import generate_world


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small world and few episodes (smoke test)")
    args = parser.parse_args(argv)
    world = "small" if args.quick else "default"
    episodes = {1: 4, 4: 2, 16: 1} if args.quick else {1: 200, 4: 50, 16: 20}
    repeats = 1 if args.quick else 3

    print(f"## world={world}")
    config = sources.world_config(world)
    generation = [timed(generate_world, config, 0)[1] for _ in range(repeats)]
    print(f"generate world: median {statistics.median(generation):.2f} s over {repeats}")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["MEM1_ENVS_CACHE"] = cache
        sources.load_world_source.cache_clear()
        source, build = timed(sources.load_world_source, world, 0)
        sources.load_world_source.cache_clear()
        _, load = timed(sources.load_world_source, world, 0)
        print(f"generate + index + write cache: {build:.2f} s; load from cache: {load:.2f} s")
        print(f"passages: {len(source.engine)}, questions: {len(source.questions)}")
    os.environ.pop("MEM1_ENVS_CACHE")
    sources.load_world_source.cache_clear()

    queries = [q.text for q in source.questions[:1000]]
    source.engine.search(queries[:10], 3)  # compile
    batched = [timed(source.engine.search, queries, 3)[1] for _ in range(repeats)]
    single = [timed(lambda: [source.engine.search([q], 3) for q in queries])[1] for _ in range(repeats)]
    print(
        f"BM25 top-3, {len(queries)} queries: batched {len(queries) / statistics.median(batched):,.0f} q/s, "
        f"one at a time {len(queries) / statistics.median(single):,.0f} q/s"
    )

    print("objectives | memory | episodes | EM/N | steps/s | peak ctx tokens (max) | mean dependency")
    for objectives, count in episodes.items():
        for memory in ("mem1", "full"):
            env = gym.make("MEM1-MultiQA-v0", num_objectives=objectives, memory=memory, world=world)
            play(env, MultiQAScriptedAgent(), [10**6])  # warm-up: load, compile
            runs, seconds = timed(play, env, MultiQAScriptedAgent(), range(count))
            steps = sum(r.turns for r in runs)
            print(
                f"{objectives} | {memory} | {count} | {np.mean([r.em for r in runs]) / objectives:.3f} | "
                f"{steps / seconds:,.0f} | {max(r.peak_context_tokens for r in runs)} | "
                f"{np.mean([r.dependency for r in runs]):,.0f}"
            )


if __name__ == "__main__":
    main()
