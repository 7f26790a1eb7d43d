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
from typing import Any

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


def measure(world: str, episodes: dict[int, int], repeats: int) -> dict[str, Any]:
    """Every figure of this benchmark, measured now: world generation (median over ``repeats``),
    build and cache load, BM25 top-3 queries/s (batched and one at a time; every repeat's seconds
    too), and per (objectives, memory) the scripted agent's steps/s, EM, peak and dependency."""
    config = sources.world_config(world)
    generation = [timed(generate_world, config, 0)[1] for _ in range(repeats)]
    with tempfile.TemporaryDirectory() as cache:
        previous = os.environ.get("MEM1_ENVS_CACHE")
        os.environ["MEM1_ENVS_CACHE"] = cache
        try:
            sources.load_world_source.cache_clear()
            source, build = timed(sources.load_world_source, world, 0)
            sources.load_world_source.cache_clear()
            _, load = timed(sources.load_world_source, world, 0)
        finally:
            if previous is None:
                os.environ.pop("MEM1_ENVS_CACHE")
            else:
                os.environ["MEM1_ENVS_CACHE"] = previous
    sources.load_world_source.cache_clear()

    queries = [q.text for q in source.questions[:1000]]
    source.engine.search(queries[:10], 3)  # compile
    batched = [timed(source.engine.search, queries, 3)[1] for _ in range(repeats)]
    single = [timed(lambda: [source.engine.search([q], 3) for q in queries])[1] for _ in range(repeats)]
    result: dict[str, Any] = {
        "world": world,
        "generate_s": generation,
        "build_s": build,
        "load_s": load,
        "passages": len(source.engine),
        "questions": len(source.questions),
        "queries": len(queries),
        "search_batched_s": batched,
        "search_single_s": single,
        "env": [],
    }
    for objectives, count in episodes.items():
        for memory in ("mem1", "full"):
            env = gym.make("MEM1-MultiQA-v0", num_objectives=objectives, memory=memory, world=world)
            play(env, MultiQAScriptedAgent(), [10**6])  # warm-up: load, compile
            runs, seconds = timed(play, env, MultiQAScriptedAgent(), range(count))
            result["env"].append(
                {
                    "objectives": objectives,
                    "memory": memory,
                    "episodes": count,
                    "steps": sum(r.turns for r in runs),
                    "seconds": seconds,
                    "em_per_objective": float(np.mean([r.em for r in runs]) / objectives),
                    "peak_context_tokens": max(r.peak_context_tokens for r in runs),
                    "mean_dependency": float(np.mean([r.dependency for r in runs])),
                }
            )
            env.close()
    return result


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
    r = measure(world, episodes, repeats)
    print(f"generate world: median {statistics.median(r['generate_s']):.2f} s over {repeats}")
    print(f"generate + index + write cache: {r['build_s']:.2f} s; load from cache: {r['load_s']:.2f} s")
    print(f"passages: {r['passages']}, questions: {r['questions']}")
    n = r["queries"]
    print(
        f"BM25 top-3, {n} queries: batched {n / statistics.median(r['search_batched_s']):,.0f} q/s, "
        f"one at a time {n / statistics.median(r['search_single_s']):,.0f} q/s"
    )
    print("objectives | memory | episodes | EM/N | steps/s | peak ctx tokens (max) | mean dependency")
    for e in r["env"]:
        print(
            f"{e['objectives']} | {e['memory']} | {e['episodes']} | {e['em_per_objective']:.3f} | "
            f"{e['steps'] / e['seconds']:,.0f} | {e['peak_context_tokens']} | {e['mean_dependency']:,.0f}"
        )


if __name__ == "__main__":
    main()
