"""Benchmark MEM1-WebQA-v0: text steps/s with the scripted researcher (beside the shop's), wiki build.

Usage::

    python scripts/bench_webqa.py            # default world, 100,000-passage corpus
    python scripts/bench_webqa.py --quick    # seconds: small world, 5,000 passages (smoke test)

Env speed: the scripted researcher playing ``MEM1-WebQA-v0`` text mode (default world, N = 1, 4
and 8 objectives) and, in the same run, the scripted shopper playing ``MEM1-WebShop-v0`` text
mode (10,000 products, the figure of ``scripts/bench_shop.py``); steps/s per wall second and per
CPU second of this process, medians over ``--repeats`` (the setups take turns within each repeat,
so a change of machine load hits them alike), with the EM fraction (shop: mean reward) reached.

Wiki build: a synthetic Search-R1 corpus of ``--passages`` rows (invented titles, three passages
per title on average, each passage mentioning four other titles among filler words) is turned
into a wiki by :func:`mem1_envs.webqa.wiki.wiki_from_corpus` (grouping plus link extraction),
then its BM25 index is built; time of each part and the process's peak resident memory are
printed, with how many of the planted mentions became links (all must).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gymnasium as gym

import mem1_envs  # noqa: F401 - registers the env ids
from agents.scripted_webqa import WebQAScriptedAgent
from mem1_envs.webqa.wiki import wiki_from_corpus

_SYLLABLES = [a + b for a in "bdfgklmnprstvz" for b in ("a", "e", "i", "o", "u", "ae", "ou")]
_FILLER = "the of and a history known region early work later river north south people town was in".split()


def synthetic_corpus(n_passages: int, seed: int = 0, mentions: int = 4) -> tuple[list[dict[str, str]], int]:
    """``n_passages`` Search-R1 rows whose texts mention other titles; also the planted mention count."""
    rng = np.random.default_rng(seed)
    n_titles = max(2, n_passages // 3)
    titles: list[str] = []
    seen: set[str] = set()
    while len(titles) < n_titles:
        words = rng.integers(len(_SYLLABLES), size=(n_titles, 5))
        for row in words:
            title = (
                "".join(_SYLLABLES[i] for i in row[:3]).capitalize()
                + " "
                + "".join(_SYLLABLES[i] for i in row[3:]).capitalize()
            )
            if title not in seen and len(titles) < n_titles:
                seen.add(title)
                titles.append(title)
    owners = np.concatenate([np.arange(n_titles), rng.integers(n_titles, size=n_passages - n_titles)])
    rows, planted = [], 0
    for doc_id, owner in enumerate(owners):
        others = rng.integers(n_titles, size=mentions)
        filler = rng.integers(len(_FILLER), size=60)
        words = [_FILLER[i] for i in filler]
        planted += len(set(others.tolist()) - {int(owner)})  # each other title links once per passage
        for k, other in enumerate(others):
            words.insert(int(k * 15), titles[int(other)])
        rows.append(
            {
                "id": str(doc_id),
                "contents": f'"{titles[int(owner)]}"\n{titles[int(owner)]} ' + " ".join(words) + ".",
            }
        )
    return rows, planted


def _rss_mb() -> float:
    """Peak resident memory of this process so far, MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def bench_wiki(n_passages: int) -> dict[str, Any]:
    start = time.perf_counter()
    rows, planted = synthetic_corpus(n_passages)
    generated, rss_before = time.perf_counter(), _rss_mb()
    wiki = wiki_from_corpus(rows)
    built = time.perf_counter()
    wiki.engine  # noqa: B018 - builds the BM25 index
    indexed = time.perf_counter()
    return {
        "passages": n_passages,
        "articles": len(wiki),
        "links": len(wiki.links),
        "planted_mentions": planted,
        "generate_s": generated - start,
        "wiki_s": built - generated,
        "bm25_s": indexed - built,
        "rss_before_mb": rss_before,
        "peak_rss_mb": _rss_mb(),
    }


def play_episodes(env: gym.Env, agent: Any, seeds: range) -> tuple[int, float, float, list[float]]:
    """Play one episode per seed: ``(steps, wall seconds, CPU seconds, per-episode scores)``."""
    steps, scores = 0, []
    start, cpu_start = time.perf_counter(), time.process_time()
    for seed in seeds:
        observation, info = env.reset(seed=seed)
        agent.reset(seed)
        done = False
        while not done:
            observation, reward, terminated, truncated, info = env.step(agent.act(observation, info))
            steps += 1
            done = terminated or truncated
        scores.append(float(np.mean(info["em"])) if "em" in info else float(reward))
    return steps, time.perf_counter() - start, time.process_time() - cpu_start, scores


def bench_envs(
    setups: dict[str, tuple[gym.Env, Any]], episodes: int, repeats: int
) -> dict[str, dict[str, Any]]:
    """Steps/s of every setup, the setups taking turns within each repeat (so load changes hit all alike)."""
    runs: dict[str, list[tuple[int, float, float, list[float]]]] = {name: [] for name in setups}
    for env, agent in setups.values():  # warm up (search kernels, first layouts) on an unmeasured seed
        play_episodes(env, agent, range(10**6, 10**6 + 1))
    for repeat in range(repeats):
        for name, (env, agent) in setups.items():
            runs[name].append(play_episodes(env, agent, range(repeat * episodes, (repeat + 1) * episodes)))
    return {
        name: {
            "steps_per_s": statistics.median(steps / wall for steps, wall, _, _ in rows),
            "steps_per_cpu_s": statistics.median(steps / cpu for steps, _, cpu, _ in rows),
            "score": float(np.mean([score for *_, scores in rows for score in scores])),
        }
        for name, rows in runs.items()
    }


def context_growth(world: str, episodes: int, sizes: tuple[int, ...] = (1, 2, 4, 8)) -> list[dict[str, Any]]:
    """Peak context tokens of the scripted researcher per context policy and N (same seeds)."""
    rows = []
    for memory in ("mem1", "window", "full"):
        for n in sizes:
            env = gym.make(
                "MEM1-WebQA-v0", world=world, num_objectives=n, memory=memory, max_context_tokens=1 << 20
            )
            agent, peaks, beyond, ems = WebQAScriptedAgent(), [], [], []
            for seed in range(episodes):
                observation, info = env.reset(seed=seed)
                prompt = env.unwrapped.count_tokens(info["prompt"])
                done = False
                while not done:
                    observation, _, terminated, truncated, info = env.step(agent.act(observation, info))
                    done = terminated or truncated
                peaks.append(info["peak_context_tokens"])
                beyond.append(info["peak_context_tokens"] - prompt)
                ems.append(float(np.mean(info.get("em", [0.0]))))
            rows.append(
                {
                    "memory": memory,
                    "n": n,
                    "peak": float(np.mean(peaks)),
                    "beyond": float(np.mean(beyond)),
                    "em": float(np.mean(ems)),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small world and corpus, few episodes")
    parser.add_argument(
        "--passages", type=int, default=None, help="corpus size (default 100,000; quick 5,000)"
    )
    parser.add_argument(
        "--episodes", type=int, default=None, help="episodes per repeat (default 40; quick 4)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="repeats per figure (default 3; quick 1)")
    args = parser.parse_args(argv)
    quick = args.quick
    passages = args.passages or (5_000 if quick else 100_000)
    episodes = args.episodes or (4 if quick else 40)
    repeats = args.repeats or (1 if quick else 3)
    world = "small" if quick else "default"
    print(f"# bench_webqa  python {platform.python_version()}  load average at start: {os.getloadavg()}")

    print("\n## Text mode: steps/s with the scripted agent (same run)")
    print("| env | objectives | steps/s (wall, median) | steps/CPU-s (median) | EM / reward |")
    print("|---|---|---|---|---|")
    from agents.scripted_shop import WebShopScriptedAgent
    from mem1_envs.shop.text_env import WebShopTextEnv

    n_products = 500 if quick else 10_000
    setups: dict[str, tuple[gym.Env, Any]] = {}
    for n in (1, 4, 8):
        env = gym.make("MEM1-WebQA-v0", world=world, num_objectives=n)
        setups[f"MEM1-WebQA-v0 ({world} world) | {n}"] = (env, WebQAScriptedAgent())
    shop_env = WebShopTextEnv(n_products=n_products)  # as scripts/bench_shop.py measures it
    setups[f"MEM1-WebShop-v0 ({n_products:,} products) | 1 item"] = (shop_env, WebShopScriptedAgent())
    for name, row in bench_envs(setups, episodes, repeats).items():
        print(f"| {name} | {row['steps_per_s']:,.0f} | {row['steps_per_cpu_s']:,.0f} | {row['score']:.3f} |")

    print(f"\n## Peak context tokens of the scripted researcher ({world} world, {episodes} seeds each)")
    print("| context | N | EM fraction | peak context tokens | peak beyond the prompt |")
    print("|---|---|---|---|---|")
    growth = context_growth(world, episodes)
    for row in growth:
        print(
            f"| {row['memory']} | {row['n']} | {row['em']:.3f} | {row['peak']:,.0f} | {row['beyond']:,.0f} |"
        )
    by = {(r["memory"], r["n"]): r for r in growth}
    for memory in ("mem1", "window", "full"):
        two, eight = by[(memory, 2)], by[(memory, 8)]
        print(
            f"- {memory}: N=8/N=2 peak {eight['peak'] / two['peak']:.2f}x, beyond the prompt {eight['beyond'] / two['beyond']:.2f}x"
        )

    print(f"\n## Wiki from a {passages:,}-passage synthetic corpus")
    row = bench_wiki(passages)
    print(
        f"articles {row['articles']:,}, links {row['links']:,} (planted mentions of other titles {row['planted_mentions']:,})"
    )
    print(
        f"corpus generation {row['generate_s']:.1f} s (not counted); wiki (grouping + links) {row['wiki_s']:.2f} s; "
        f"BM25 index {row['bm25_s']:.2f} s; total build {row['wiki_s'] + row['bm25_s']:.2f} s"
    )
    print(
        f"peak RSS {row['peak_rss_mb']:,.0f} MB (before the build, corpus in memory: {row['rss_before_mb']:,.0f} MB)"
    )
    print(f"\nload average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
