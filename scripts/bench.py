"""One benchmark command: the suite's benchmarks in one sitting, every figure beside its baseline.

Runs the functions of the existing ``scripts/bench_*.py`` (and the CPU trainer check of
``scripts/gpu_check.py``), one progress bar per benchmark, and pairs each figure with the
baseline measured in the same run (speed-up = baseline / ours for times, ours / baseline for
rates), plus peers where they are installed: ``rank_bm25`` and ``bm25s`` with its default
settings against our search path, Gymnasium's ``CartPole-v1`` step rate as the floor of env
overhead. Optional parts (no Chromium, no torch, no rank_bm25) are skipped with one line.
Writes ``bench.md`` and ``bench.json`` (machine, load average before and after, versions,
command, medians, min-max, ratios) and, with ``--benchmarks-md``, replaces the generated
section of BENCHMARKS.md (between its markers). ``scripts/bench_index.py`` (a 1M-passage
index build, minutes and GBs) stays a run of its own.

    python -m mem1_envs bench --quick                          # smoke run: about 40 s of CPU
    python -m mem1_envs bench --benchmarks-md BENCHMARKS.md    # the full run, the generated section
    python scripts/bench.py --only rewards search+env          # some of them
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without install


def _script(name: str) -> Any:
    """``scripts/<name>.py`` as a module (the benchmarks are files, not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


_script("bench_report")  # the report (sections, speed-ups, markdown), importable by name below
from bench_report import (  # noqa: E402, F401 - BEGIN, END, speedup: callers use them as bench.*
    BEGIN,
    END,
    Figure,
    Section,
    _commit,
    _section_dict,
    _versions,
    markdown,
    replace_section,
    speedup,
)


class Skipped(Exception):
    """An optional part cannot run here (missing browser, torch, peer library)."""


SKIPPED_PARTS: list[str] = []  # optional parts of a benchmark that could not run, for the report


def _skip_part(reason: str) -> None:
    SKIPPED_PARTS.append(reason)
    print(f"  skipped: {reason}", file=sys.stderr)


def _have(*modules: str) -> str | None:
    """None when every module imports, else a reason naming the first missing one."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    return None


@contextlib.contextmanager
def _quiet() -> Any:
    """The bench scripts print their own tables; the report is this command's."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _per_second(count: int, seconds: Sequence[float]) -> list[float]:
    return [count / s for s in seconds]


# -- the benchmarks: each returns its figures; ``tick`` advances its progress bar -------------


def bench_rewards(quick: bool, tick: Callable[[], None]) -> list[Figure]:
    """EM/F1: ``batch_em_f1`` (numba) vs plain-Python loops; the shop's item reward kernel vs its twin."""
    rewards = _script("bench_rewards")
    pairs = 2_000 if quick else 100_000
    with _quiet():
        r = rewards.measure(pairs, 3 if quick else 5)
    tick()
    if not r["identical"]:
        raise RuntimeError("batch_em_f1 and the Python loops disagree")
    ms = {name: [t * 1e3 for t in times] for name, times in r["times"].items()}
    figures = [
        Figure(f"EM/F1, Python loop, reference code ({pairs:,} pairs)", "ms", ms["python"]),
        Figure(f"EM/F1, Python loop, exact_match + f1_score ({pairs:,} pairs)", "ms", ms["scalar"]),
        Figure(
            f"EM/F1, batch_em_f1 numba, from strings ({pairs:,} pairs)",
            "ms",
            ms["numba"],
            baseline=f"EM/F1, Python loop, reference code ({pairs:,} pairs)",
        ),
        Figure(
            f"EM/F1, batch_em_f1 numba vs exact_match + f1_score loop ({pairs:,} pairs)",
            "ms",
            ms["numba"],
            baseline=f"EM/F1, Python loop, exact_match + f1_score ({pairs:,} pairs)",
        ),
    ]
    shop_bench = _script("bench_shop")
    from mem1_envs.shop.catalog import generate_catalog
    from mem1_envs.shop.engine import ShopEngine

    triples = 2_000 if quick else 100_000
    with _quiet():
        shop = ShopEngine.build(generate_catalog(2_000, seed=0))
        k = shop_bench.bench_kernel(shop, triples)
    tick()
    python_name = f"shop item reward, Python twin ({triples:,} triples)"
    figures += [
        Figure(python_name, "ms", [t * 1e3 for t in k["python_all"]]),
        Figure(
            f"shop item reward, numba ({triples:,} triples)",
            "ms",
            [t * 1e3 for t in k["numba_all"]],
            baseline=python_name,
        ),
    ]
    return figures


def bench_masks(quick: bool, tick: Callable[[], None]) -> list[Figure]:
    """Dense additive attention mask of a packed batch: numba kernel vs vectorised torch."""
    reason = _have("torch")
    if reason:
        raise Skipped(reason)
    import torch

    trajectory = _script("bench_trajectory")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as bench_trajectory.py: one thread on both sides
    try:
        args = trajectory.Args(
            quick=quick, repeats=5 if quick else 15, episodes=4 if quick else 16, turns=3 if quick else 8
        )
        with _quiet():
            r = trajectory.bench_dense(args)
    finally:
        torch.set_num_threads(threads)
    tick()
    shape = f"[{r['rows']}, 1, {r['size']}, {r['size']}], {r['packed_tokens']:,} tokens"
    torch_name = f"dense mask, vectorised torch {shape}"
    return [
        Figure(torch_name, "ms", [t * 1e3 for t in r["times"]["torch"]]),
        Figure(f"dense mask, numba kernel {shape}", "ms", [t * 1e3 for t in r["times"]["numba"]], torch_name),
    ]


def bench_search_and_env(quick: bool, tick: Callable[[], None]) -> list[Figure]:
    """BM25 queries/s (ours, bm25s defaults, rank_bm25) and env steps/s: MultiQA, shop, wrappers,
    against Gymnasium's CartPole-v1."""
    env_bench = _script("bench_env")
    world = "small" if quick else "default"
    episodes = {1: 10, 4: 4, 16: 2} if quick else {1: 200, 4: 50, 16: 20}
    with _quiet():
        r = env_bench.measure(world, episodes, 3)
    tick()
    n = r["queries"]
    ours = f"BM25 top-3, our search, one query per call ({r['passages']:,} passages)"
    figures = [
        Figure(ours, "queries/s", _per_second(n, r["search_single_s"]), higher_is_better=True),
        Figure(
            f"BM25 top-3, our search, {n:,} queries in one call",
            "queries/s",
            _per_second(n, r["search_batched_s"]),
            baseline=ours,
            higher_is_better=True,
        ),
    ]
    figures += _search_peers(world, 200 if quick else 1000, 100 if quick else 300, ours, tick)

    floor = "CartPole-v1 (Gymnasium), random actions"
    figures.append(
        Figure(floor, "steps/s", _cartpole(20_000 if quick else 200_000, 3), higher_is_better=True)
    )
    tick()
    for e in r["env"]:
        figures.append(
            Figure(
                f"MEM1-MultiQA-v0 scripted, N={e['objectives']}, {e['memory']} ({world} world)",
                "steps/s",
                [e["steps"] / e["seconds"]],
                baseline=floor,
                higher_is_better=True,
                note=f"{e['episodes']} episodes, {e['steps']} steps",
            )
        )
    shop_bench = _script("bench_shop")
    from mem1_envs.shop.catalog import generate_catalog
    from mem1_envs.shop.engine import ShopEngine

    products = 2_000 if quick else 10_000
    with _quiet():
        shop = ShopEngine.build(generate_catalog(products, seed=0))
        for items in (1, 3):
            s = shop_bench.bench_env(shop, 10 if quick else 100, 3, items)
            figures.append(
                Figure(
                    f"MEM1-WebShop-v0 text, scripted, {items} item{'s' if items > 1 else ''} ({products:,} products)",
                    "steps/s",
                    s["steps_per_s_all"],
                    baseline=floor,
                    higher_is_better=True,
                )
            )
    tick()
    wrappers = _script("bench_wrappers")
    with _quiet():
        per_step = wrappers.measure(3 if quick else 7, 10 if quick else 200, 2)
    tick()
    text = "wrappers: MultiQA text env alone, N=2"
    for name, values in per_step.items():
        figures.append(
            Figure(
                text if name == "text env" else f"wrappers: {name}, N=2",
                "us/step",
                values,
                baseline=None if name == "text env" else text,
            )
        )
    return figures


def _search_peers(
    world: str, queries: int, slow_queries: int, ours: str, tick: Callable[[], None]
) -> list[Figure]:
    """bm25s with its default settings and rank_bm25 on the world's passages, one query per call."""
    from mem1_envs.qa.world import WORLD_SIZES, generate_world

    generated = generate_world(WORLD_SIZES[world], seed=0)
    texts = [p["contents"] for p in generated.passages]
    asked = [q.text for q in generated.questions[:queries]]
    figures = []
    import bm25s
    import numpy as np

    with _quiet():
        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize(texts, show_progress=False), show_progress=False)
        tokenized = [bm25s.tokenize([q], show_progress=False) for q in asked]
        retriever.retrieve(tokenized[0], k=3, show_progress=False)  # warm-up
        times = []
        for _ in range(3):
            start = time.perf_counter()
            for q in tokenized:
                retriever.retrieve(q, k=3, show_progress=False)
            times.append(time.perf_counter() - start)
    figures.append(
        Figure(
            "BM25 top-3, bm25s default settings, one query per call",
            "queries/s",
            _per_second(len(asked), times),
            baseline=ours,
            higher_is_better=True,
            note="tokenising each query included, as in our search",
        )
    )
    tick()
    reason = _have("rank_bm25")
    if reason:
        _skip_part(f"rank_bm25 peer ({reason}; extra 'bench')")
        return figures
    from rank_bm25 import BM25Okapi

    okapi = BM25Okapi([t.lower().split() for t in texts])
    times = []
    for _ in range(3):
        start = time.perf_counter()
        for q in asked[:slow_queries]:
            scores = okapi.get_scores(q.lower().split())
            np.argpartition(scores, -3)[-3:]
        times.append(time.perf_counter() - start)
    figures.append(
        Figure(
            "BM25 top-3, rank_bm25 BM25Okapi, one query per call",
            "queries/s",
            _per_second(min(slow_queries, len(asked)), times),
            baseline=ours,
            higher_is_better=True,
            note=f"{min(slow_queries, len(asked))} queries; it scores every passage in Python",
        )
    )
    return figures


def _cartpole(steps: int, repeats: int) -> list[float]:
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    env.action_space.seed(0)
    rates = []
    for _ in range(repeats):
        env.reset(seed=0)
        start = time.perf_counter()
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
        rates.append(steps / (time.perf_counter() - start))
    env.close()
    return rates


def bench_browser(quick: bool, tick: Callable[[], None]) -> list[Figure]:
    """MEM1-WebShop-Browser-v0 step latency (a search or click that loads a page) vs the text env."""
    reason = _have("selenium", "uvicorn", "starlette")
    if reason:
        raise Skipped(reason)
    from mem1_envs.shop.browser import BrowserConfig

    config = BrowserConfig()
    missing = [path for path in (config.chromium_binary, config.chromedriver) if not shutil.which(path)]
    if missing:
        raise Skipped(f"no Chromium here ({', '.join(missing)} not found)")
    browser = _script("bench_browser")
    from mem1_envs.shop.engine import load_shop

    products = 2_000 if quick else 10_000
    with _quiet():
        r = browser.run_mode("script", load_shop(products, 0), products, 3 if quick else 20)
    tick()
    text = "shop text env step, same actions"
    return [
        Figure(text, "ms", [t * 1e3 for t in r["text_steps"]]),
        Figure(
            "browser env step (script input), a page load",
            "ms",
            [t * 1e3 for t in r["browser_steps"]],
            baseline=text,
            note=f"{len(r['browser_steps'])} steps, {r['mismatches']} text/browser mismatches",
        ),
    ]


def bench_service(quick: bool, tick: Callable[[], None]) -> list[Figure]:
    """The /retrieve service under concurrent loopback clients vs the engine in-process."""
    reason = _have("uvicorn", "starlette")
    if reason:
        raise Skipped(reason)
    service = _script("bench_service")
    world, clients, requests = ("small", 4, 200) if quick else ("default", 8, 3000)
    with _quiet():
        r = service.measure(world, clients, requests, 20.0 if quick else 60.0, 1)
    tick()
    if r["failures"]:
        raise RuntimeError(f"{len(r['failures'])} failed requests, first: {r['failures'][0]}")
    in_process = f"engine in-process, one query per call ({world} world)"
    done = len(r["latencies_ms"])
    return [
        Figure(in_process, "queries/s", [r["in_process_qps"]], higher_is_better=True),
        Figure(
            f"/retrieve service, {clients} clients x 1 query per request",
            "queries/s",
            [done / r["wall_s"]],
            baseline=in_process,
            higher_is_better=True,
            note=f"{done} requests",
        ),
        Figure(f"/retrieve request latency, {clients} clients", "ms", r["latencies_ms"]),
    ]


def bench_trainer(quick: bool, tick: Callable[[], None]) -> list[Figure]:
    """Masked-PPO trainer tokens/s on CPU (tiny model, bf16 autocast): training vs forward only."""
    reason = _have("torch", "transformers")
    if reason:
        raise Skipped(reason)
    gpu_check = _script("gpu_check")
    with _quiet():
        r = gpu_check.main(["--cpu", "--ppo-steps", "1", "--timed-updates", "2" if quick else "5"])
    tick()
    forward = "trainer forward only (scoring pass), tiny model, CPU"
    return [
        Figure(forward, "tokens/s", [r["forward_tokens_per_s_per_gpu"]], higher_is_better=True),
        Figure(
            "trainer update (score + forward/backward + step), tiny model, CPU",
            "tokens/s",
            [r["train_tokens_per_s_per_gpu"]],
            baseline=forward,
            higher_is_better=True,
        ),
    ]


# name -> (function, progress steps)
BENCHMARKS: dict[str, tuple[Callable[[bool, Callable[[], None]], list[Figure]], int]] = {
    "rewards": (bench_rewards, 2),
    "masks": (bench_masks, 1),
    "search+env": (bench_search_and_env, 5),
    "browser": (bench_browser, 1),
    "service": (bench_service, 1),
    "trainer": (bench_trainer, 1),
}


def run(names: Sequence[str], quick: bool, progress: bool = True) -> list[Section]:
    sections = []
    for name in names:
        function, steps = BENCHMARKS[name]
        section = Section(name)
        bar = tqdm(total=steps, desc=f"bench {name}", unit="part", disable=not progress, leave=True)
        start = time.perf_counter()
        try:
            section.figures = function(quick, bar.update)
        except Skipped as reason:
            section.skipped = str(reason)
        except Exception as error:  # a broken benchmark is reported, the others still run
            section.failed = f"{type(error).__name__}: {error}"
        section.seconds = time.perf_counter() - start
        bar.close()
        if section.skipped:
            print(f"  skipped: {name} ({section.skipped})", file=sys.stderr)
        if section.failed:
            print(f"  FAILED: {name} ({section.failed})", file=sys.stderr)
        sections.append(section)
    return sections


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mem1_envs bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats: under 2 minutes")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=None, help="run only these")
    parser.add_argument("--out", default="runs/bench", help="folder for bench.md and bench.json")
    parser.add_argument("--benchmarks-md", default=None, help="also write the generated section of this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    names = args.only or list(BENCHMARKS)
    load_before = [round(x, 2) for x in os.getloadavg()]
    start = time.perf_counter()
    sections = run(names, args.quick, progress=not args.no_progress)
    report = {
        "command": " ".join(["python -m mem1_envs bench", *argv]),
        "commit": _commit(),
        "seconds": time.perf_counter() - start,
        "machine": {
            "cpu": _script("memory_scaling").machine()["cpu"],
            "cores": os.cpu_count(),
            "load_before": load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": _versions(),
        "quick": args.quick,
        "sections": [_section_dict(s) for s in sections],
        "skipped_parts": list(SKIPPED_PARTS),
    }
    text = markdown(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.md").write_text(text + "\n", encoding="utf-8")
    (out / "bench.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    if args.benchmarks_md:
        replace_section(Path(args.benchmarks_md), text)
    print(text)
    print(
        f"\nwrote {out / 'bench.md'} and {out / 'bench.json'}"
        + (f"; updated {args.benchmarks_md}" if args.benchmarks_md else "")
    )
    return 1 if any(s.failed for s in sections) else 0


if __name__ == "__main__":
    raise SystemExit(main())
