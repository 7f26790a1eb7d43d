"""Benchmark: ``batch_em_f1`` (numba) against the plain-Python loop over the reference definitions.

Both sides start from the same Python strings and return the same arrays (checked here, exactly).
The numba functions are compiled (or loaded from the cache) before timing; that one-off cost is
printed separately. Each side is timed ``--repeats`` times and the medians are compared.

    python scripts/bench_rewards.py              # 100,000 pairs, 5 repeats
    python scripts/bench_rewards.py --quick      # a smoke run: 2,000 pairs, 2 repeats
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import numba
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from mem1_envs import rewards

_FIRST = ["John", "Maria", "Ahmed", "Li", "Olga", "Pierre", "Kenji", "Ana", "Samuel", "Ingrid", "José", "Zoë"]
_LAST = [
    "Smith",
    "García",
    "Okafor",
    "Wang",
    "Petrova",
    "Dubois",
    "Tanaka",
    "Silva",
    "Brown",
    "Berg",
    "Müller",
]
_PLACES = ["New York City", "Paris", "São Paulo", "Lagos", "the Netherlands", "Kyoto", "Lake Geneva", "Oslo"]
_THINGS = [
    "The Lord of the Rings",
    "a Tale of Two Cities",
    "the Beatles",
    "Apple Inc.",
    "U.S. Navy",
    "an Apple",
]
_MONTHS = ["January", "March", "May", "July", "September", "December"]
_FILLER = ["the", "of", "in", "city", "band", "river", "former", "born", "about", "approximately"]


def _gold(rng: np.random.Generator) -> list[str]:
    """1-3 aliases of one answer, as QA data sets give them."""
    kind = rng.integers(6)
    if kind == 0:
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        return [f"{first} {last}", f"{last}", f"{first[0]}. {last}"][: rng.integers(1, 4)]
    if kind == 1:
        day, month, year = rng.integers(1, 29), rng.choice(_MONTHS), rng.integers(1800, 2025)
        return [f"{day} {month} {year}", f"{month} {day}, {year}", f"{year}"][: rng.integers(1, 4)]
    if kind == 2:
        value = int(rng.integers(1000, 9_000_000))
        return [f"{value:,}", str(value)][: rng.integers(1, 3)]
    if kind == 3:
        return [str(rng.choice(["yes", "no"]))]
    place = str(rng.choice(_PLACES if kind == 4 else _THINGS))
    return [place, place.lower().removeprefix("the ")][: rng.integers(1, 3)]


def _prediction(rng: np.random.Generator, golds: list[str], other: list[str]) -> str:
    """A model-like answer: right, right up to case/punctuation/articles, partial, verbose or wrong."""
    gold = golds[rng.integers(len(golds))]
    kind = rng.integers(6)
    if kind == 0:
        return gold
    if kind == 1:
        return f"The {gold.upper()}."
    if kind == 2:
        words = gold.split()
        return " ".join(words[: max(1, len(words) - 1)])
    if kind == 3:
        return f"{gold}, {' '.join(rng.choice(_FILLER, size=rng.integers(1, 6)))}"
    return other[rng.integers(len(other))]


def make_pairs(n: int, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    rng = np.random.default_rng(seed)
    golds_lists = [_gold(rng) for _ in range(n)]
    pool = [g[0] for g in golds_lists[: max(1, n // 10)]]
    preds = [_prediction(rng, golds, pool) for golds in golds_lists]
    return preds, golds_lists


def _median_times(
    fns: dict[str, object], repeats: int
) -> tuple[dict[str, float], dict[str, object], dict[str, list[float]]]:
    """Median seconds of each function, timed in interleaved rounds (A B C A B C ...) so that a
    change of load on a shared machine hits every side alike; also each function's last result
    and every time."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, results, times


def measure(pairs: int, repeats: int, seed: int = 0) -> dict[str, Any]:
    """Median seconds of every side on ``pairs`` generated pairs (``medians`` and every repeat's
    ``times``: python, scalar, numba, prep, parallel, serial), whether all sides gave identical
    arrays, and the compile time."""
    preds, golds_lists = make_pairs(pairs, seed)
    start = time.perf_counter()
    rewards.batch_em_f1(preds[:8], golds_lists[:8])  # serial kernel
    rewards.batch_em_f1(preds[:8] * 1024, golds_lists[:8] * 1024)  # parallel kernel
    compile_s = time.perf_counter() - start

    def scalar_loop() -> tuple[np.ndarray, np.ndarray]:
        em = np.array([rewards.exact_match(p, g) for p, g in zip(preds, golds_lists, strict=True)])
        f1 = np.array([rewards.f1_score(p, g) for p, g in zip(preds, golds_lists, strict=True)])
        return em, f1

    tokens, offsets, pred_ids, gold_ids, gold_offsets = rewards._prepare(preds, golds_lists)
    sorted_tokens = rewards._sort_segments(tokens, offsets)
    out = (np.zeros(pairs), np.zeros(pairs))
    kernel_args = (tokens, sorted_tokens, offsets, pred_ids, gold_ids, gold_offsets, *out)
    medians, results, times = _median_times(
        {
            "python": lambda: rewards.batch_em_f1_python(preds, golds_lists),
            "scalar": scalar_loop,
            "numba": lambda: rewards.batch_em_f1(preds, golds_lists),
            "prep": lambda: rewards._prepare(preds, golds_lists),
            "parallel": lambda: rewards._score_parallel(*kernel_args),
            "serial": lambda: rewards._score_serial(*kernel_args),
        },
        repeats,
    )
    em_py, f1_py = results["python"]
    em_sc, f1_sc = results["scalar"]
    em_nb, f1_nb = results["numba"]
    identical = all(
        np.array_equal(a, b) for a, b in [(em_py, em_nb), (f1_py, f1_nb), (em_sc, em_nb), (f1_sc, f1_nb)]
    )
    return {
        "pairs": pairs,
        "repeats": repeats,
        "medians": medians,
        "times": times,
        "identical": identical,
        "compile_s": compile_s,
        "mean_em": float(em_nb.mean()),
        "mean_f1": float(f1_nb.mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100_000, help="prediction/gold pairs (default 100000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per side (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2000 pairs, 2 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.repeats = 2000, 2
    if args.pairs < 1 or args.repeats < 1:
        parser.error(f"--pairs and --repeats must be >= 1, got {args.pairs} and {args.repeats}")

    preds, golds_lists = make_pairs(args.pairs, args.seed)
    distinct = len(set(preds) | {g for golds in golds_lists for g in golds})
    aliases = sum(len(g) for g in golds_lists)
    print(f"pairs: {args.pairs:,}  gold aliases: {aliases:,}  distinct strings: {distinct:,}")
    print(
        f"numba {numba.__version__}, threads {numba.get_num_threads()}, "
        f"NUMBA_DISABLE_JIT={os.environ.get('NUMBA_DISABLE_JIT', '0')}"
    )
    print(f"load average before the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    result = measure(args.pairs, args.repeats, args.seed)
    if not result["identical"]:
        print("MISMATCH between batch_em_f1 and a Python loop", file=sys.stderr)
        return 1
    print(f"compile or cache load (excluded from the timings): {result['compile_s']:.2f} s")
    medians = result["medians"]
    t_python, t_scalar, t_numba = medians["python"], medians["scalar"], medians["numba"]
    t_prep, t_par, t_ser = medians["prep"], medians["parallel"], medians["serial"]

    def line(name: str, seconds: float) -> str:
        return f"{name:<44} median {seconds * 1e3:9.1f} ms  ({seconds / args.pairs * 1e6:6.2f} us/pair)"

    print(f"mean EM {result['mean_em']:.4f}  mean F1 {result['mean_f1']:.4f}  (identical on all sides)")
    print(line("python loop, reference SQuAD/HotpotQA code", t_python))
    print(line("python loop, exact_match + f1_score", t_scalar))
    print(line("batch_em_f1 (end to end, from strings)", t_numba))
    print(line("  of which Python preparation", t_prep))
    print(line("  numba scoring kernel, parallel (prange)", t_par))
    print(line("  numba scoring kernel, serial", t_ser))
    print(
        f"speed-up vs reference loop: {t_python / t_numba:.1f}x; vs exact_match + f1_score loop: "
        f"{t_scalar / t_numba:.1f}x  ({args.repeats} interleaved repeats, medians, one run)"
    )
    print(
        f"load average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
