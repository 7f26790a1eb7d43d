"""Benchmark the shop: text-mode env steps/s with the scripted agent, catalog build time, reward kernel.

Usage::

    python scripts/bench_shop.py            # 10k env run, catalogs of 10k and 1M products
    python scripts/bench_shop.py --quick    # seconds: small catalog, few episodes (smoke test)

Everything runs in this one process (one core for the env loop). Figures are medians over
``--repeats`` runs measured in this run; nothing is read from a file. Env speed is given per
wall-clock second and per CPU second of this process (the second is the one-core figure when
other work shares the machine; the load average is printed at start and end).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agents.scripted_shop import WebShopScriptedAgent
from mem1_envs.shop.catalog import generate_catalog
from mem1_envs.shop.engine import ShopEngine
from mem1_envs.shop.goals import sample_goal
from mem1_envs.shop.reward import (
    RewardTables,
    batch_item_reward,
    batch_item_reward_python,
    encode_item,
)
from mem1_envs.shop.text_env import WebShopTextEnv


def bench_env(shop: ShopEngine, episodes: int, repeats: int, n_items: int) -> dict[str, Any]:
    env = WebShopTextEnv(shop=shop, n_products=len(shop.catalog), n_items=n_items)
    agent = WebShopScriptedAgent()
    rates, cpu_rates, rewards, turns = [], [], [], []
    for repeat in range(repeats):
        steps = 0
        start, cpu_start = time.perf_counter(), time.process_time()
        for episode in range(episodes):
            seed = repeat * episodes + episode
            observation, info = env.reset(seed=seed)
            agent.reset(seed)
            done = False
            while not done:
                observation, reward, terminated, truncated, info = env.step(agent.act(observation, info))
                steps += 1
                done = terminated or truncated
            rewards.append(reward)
            turns.append(info["turn"])
        rates.append(steps / (time.perf_counter() - start))
        cpu_rates.append(steps / (time.process_time() - cpu_start))
    return {
        "steps_per_s": statistics.median(rates),
        "steps_per_s_all": rates,
        "steps_per_cpu_s": statistics.median(cpu_rates),
        "mean_reward": float(np.mean(rewards)),
        "success": float(np.mean([r >= 1.0 for r in rewards])),
        "turns": float(np.mean(turns)),
    }


def bench_build(n_products: int) -> dict[str, float]:
    start, cpu_start = time.perf_counter(), time.process_time()
    catalog = generate_catalog(n_products, seed=0)
    generated = time.perf_counter()
    shop = ShopEngine.build(catalog)
    indexed, cpu_indexed = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as folder:
        shop.save(folder)
        saved = time.perf_counter()
        loaded = ShopEngine.load(folder, seed=0)
        reloaded = time.perf_counter()
        loaded.search("gluten free potato chips")  # numba backend (>= 200k products): compiles here
        first_query = time.perf_counter() - reloaded
        queries = ["gluten free potato chips sea salt", "black hoodie large", "usb cable fast charging"]
        times = []
        for k in range(30):
            loaded._results.clear()  # no cached results: every query is searched
            query_start = time.perf_counter()
            loaded.search(queries[k % 3])
            times.append(time.perf_counter() - query_start)
    return {
        "generate_s": generated - start,
        "index_s": indexed - generated,
        "build_cpu_s": cpu_indexed - cpu_start,
        "save_s": saved - indexed,
        "load_s": reloaded - saved,
        "first_query_s": first_query,
        "query_ms": statistics.median(times) * 1000,
    }


def bench_kernel(shop: ShopEngine, n: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    tables = RewardTables.build(shop.catalog)
    goals = [sample_goal(shop, rng) for _ in range(200)]
    rows = []
    for k in range(n):
        item = goals[k % len(goals)].items[0]
        product = int(rng.integers(len(shop.catalog)))
        selected = {kind: values[0] for kind, values in shop.catalog.options(product)}
        rows.append(encode_item(shop.catalog, item, product, selected))
    arrays = {key: np.stack([r[key] for r in rows]) for key in rows[0]}
    batch_item_reward(tables, **arrays)  # compile
    fast, slow = [], []
    for _ in range(3):
        start = time.perf_counter()
        out_fast = batch_item_reward(tables, **arrays)
        fast.append(time.perf_counter() - start)
        start = time.perf_counter()
        out_slow = batch_item_reward_python(tables, **arrays)
        slow.append(time.perf_counter() - start)
    assert np.array_equal(out_fast, out_slow)
    return {
        "numba_s": statistics.median(fast),
        "python_s": statistics.median(slow),
        "speedup": statistics.median(slow) / statistics.median(fast),
        "numba_all": fast,
        "python_all": slow,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test in seconds")
    parser.add_argument("--episodes", type=int, default=300, help="episodes per env repeat")
    parser.add_argument("--repeats", type=int, default=3, help="env repeats (the median is reported)")
    parser.add_argument(
        "--sizes", type=int, nargs="*", default=[10_000, 1_000_000], help="catalog sizes to build"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.episodes, args.repeats, args.sizes = 20, 1, [2_000]
    env_size = 2_000 if args.quick else 10_000
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus")
    print("load average at start: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))

    ShopEngine.build(generate_catalog(50, seed=1))  # warm-up: imports and first-call costs not timed
    print("\n## catalog generation + index (no cache)")
    print(
        f"{'products':>10} {'generate s':>11} {'index s':>9} {'both, CPU s':>12} {'save s':>8} {'load s':>8} "
        f"{'1st query s':>12} {'query ms':>9}"
    )
    for size in args.sizes:
        r = bench_build(size)
        print(
            f"{size:>10,} {r['generate_s']:>11.2f} {r['index_s']:>9.2f} {r['build_cpu_s']:>12.2f} {r['save_s']:>8.2f} "
            f"{r['load_s']:>8.2f} {r['first_query_s']:>12.2f} {r['query_ms']:>9.2f}"
        )

    shop = ShopEngine.build(generate_catalog(env_size, seed=0))
    print(f"\n## MEM1-WebShop-v0 text mode, scripted agent, {env_size:,} products, one process")
    print(
        f"{'goal':>8} {'steps/s (median)':>17} {'steps/CPU-s':>12} {'mean reward':>12} {'success':>8} {'turns':>6}"
    )
    for n_items in (1, 3):
        r = bench_env(shop, args.episodes, args.repeats, n_items)
        print(
            f"{n_items:>2} item{'s' if n_items > 1 else ' '} {r['steps_per_s']:>17,.0f} {r['steps_per_cpu_s']:>12,.0f} "
            f"{r['mean_reward']:>12.3f} "
            f"{r['success']:>8.2f} {r['turns']:>6.1f}"
        )

    n = 2_000 if args.quick else 100_000
    r = bench_kernel(shop, n)
    print(f"\n## reward: numba batch kernel vs its Python twin, {n:,} triples")
    print(
        f"numba {r['numba_s'] * 1000:.1f} ms, python {r['python_s'] * 1000:.1f} ms, speed-up {r['speedup']:.0f}x"
    )
    print("\nload average at end: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
