"""Benchmark the persistent BM25 index at scale: build time, size on disk, peak memory, queries/s.

Generates ``--passages`` Wikipedia-sized passages (about 100 words from a Zipf-distributed
vocabulary of invented words, like the DPR/Search-R1 100-word Wikipedia passages) into a plain
Search-R1 jsonl, builds the index with ``python -m mem1_envs build-index`` in a child process
(its peak RSS is the build's peak memory), then loads the index here and times top-3 queries
made of 2-5 words of random passages: one query per call (as one env turn does) and one
batched call. Prints every figure and a linear extrapolation to 21M passages.

    python scripts/bench_index.py                    # 1,000,000 passages (several minutes)
    python scripts/bench_index.py --passages 2000    # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

WIKI_PASSAGES = 21_015_324  # passages of the Wikipedia-2018 corpus used by Search-R1 and MEM1
SYLLABLES = [c + v for c in "bcdfghklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]


def make_vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES, size=int(rng.integers(1, 5)))))
    return sorted(words)


def generate_corpus(path: str, passages: int, queries: int, seed: int) -> list[str]:
    """Write the corpus; return ``queries`` queries drawn from random passages."""
    rng = np.random.default_rng(seed)
    vocabulary = make_vocabulary(min(100_000, 20 * passages), rng)  # smaller only for smoke runs
    weights = 1.0 / np.arange(1, len(vocabulary) + 1) ** 1.05  # Zipf-like word frequencies
    weights /= weights.sum()
    query_rows = set(rng.choice(passages, size=min(queries, passages), replace=False).tolist())
    found: list[str] = []
    block = 10_000
    with open(path, "w", encoding="utf-8") as handle:
        for first in range(0, passages, block):
            count = min(block, passages - first)
            lengths = rng.integers(80, 121, size=count)
            # Python lists, not numpy strings: joining numpy str_ scalars is 5x slower.
            words = [
                vocabulary[w]
                for w in rng.choice(len(vocabulary), size=int(lengths.sum()), p=weights).tolist()
            ]
            titles = rng.integers(0, len(vocabulary), size=(count, 2)).tolist()
            lines, start = [], 0
            for i, length in enumerate(lengths.tolist()):
                text = " ".join(words[start : start + length])
                start += length
                title = f"{vocabulary[titles[i][0]].title()} {vocabulary[titles[i][1]].title()}"
                lines.append(json.dumps({"id": str(first + i), "contents": f'"{title}"\n{text}'}) + "\n")
                if first + i in query_rows:
                    picks = rng.choice(text.split(), size=int(rng.integers(2, 6)), replace=False)
                    found.append(" ".join(picks))
            handle.writelines(lines)
    rng.shuffle(found)
    return found


def run_sampling_memory(command: list[str]) -> dict[str, int]:
    """Run ``command``; return the peaks of its VmRSS, RssAnon and RssFile in kB (/proc, sampled
    every 0.1 s). RssFile counts pages of memory-mapped files (the index being written), which
    the kernel can write back and drop under pressure; RssAnon is what the build really holds."""
    process = subprocess.Popen(command)
    peaks = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
    while process.poll() is None:
        try:
            with open(f"/proc/{process.pid}/status", encoding="ascii") as handle:
                for line in handle:
                    name, _, value = line.partition(":")
                    if name in peaks:
                        peaks[name] = max(peaks[name], int(value.split()[0]))
        except OSError:  # the process ended between poll() and open()
            pass
        time.sleep(0.1)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)
    return peaks


def folder_bytes(folder: str) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for root, _, files in os.walk(folder):
        part = os.path.relpath(root, folder).split(os.sep)[0]
        sizes[part] = sizes.get(part, 0) + sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=1_000_000, help="corpus size (default 1,000,000)")
    parser.add_argument("--queries", type=int, default=1000, help="timed queries (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="where corpus and index go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep corpus and index")
    args = parser.parse_args()
    if args.passages < 10 or args.queries < 1:
        parser.error(f"--passages must be >= 10 and --queries >= 1, got {args.passages} and {args.queries}")
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench-index-")
    os.makedirs(workdir, exist_ok=True)
    corpus, index = os.path.join(workdir, "corpus.jsonl"), os.path.join(workdir, "index")
    try:
        start = time.perf_counter()
        queries = generate_corpus(corpus, args.passages, args.queries, args.seed)
        print(f"generated {args.passages:,} passages in {time.perf_counter() - start:.1f} s", flush=True)
        corpus_mb = os.path.getsize(corpus) / 2**20

        start = time.perf_counter()
        command = [sys.executable, "-m", "mem1_envs", "build-index", "--corpus", corpus, "--out", index]
        peaks = run_sampling_memory([*command, "--overwrite", "--no-progress"])
        build_s = time.perf_counter() - start
        build_peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        anon_mb, file_mb = peaks["RssAnon"] / 1024, peaks["RssFile"] / 1024
        # The fixed part of that peak (interpreter, numpy, numba, bm25s) does not grow with N.
        probe = "import resource, bm25s, mem1_envs.qa.index; bm25s.BM25(backend='numba'); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
        probe_run = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
        base_mb = int(probe_run.stdout) / 1024

        from mem1_envs.qa.index import load_index

        start = time.perf_counter()
        engine = load_index(index, corpus=corpus)
        load_s = time.perf_counter() - start
        engine.search(queries[:5], k=3)  # numba compilation is not part of the throughput
        start = time.perf_counter()
        single_hits = [engine.search([q], k=3)[0] for q in queries]
        single_qps = len(queries) / (time.perf_counter() - start)
        start = time.perf_counter()
        batch_hits = engine.search(queries, k=3)
        batch_qps = len(queries) / (time.perf_counter() - start)
        same = [[h.doc_id for h in hits] for hits in single_hits] == [
            [h.doc_id for h in hits] for hits in batch_hits
        ]
        assert same, "single and batched queries disagree"
        answered = sum(bool(hits) for hits in batch_hits) / len(queries)
        sizes = folder_bytes(index)
        index_mb = sum(sizes.values()) / 2**20
        self_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        scale = WIKI_PASSAGES / args.passages
        parts = ", ".join(f"{k} {v / 2**20:,.0f} MiB" for k, v in sorted(sizes.items()) if k != ".")
        rss_21m = (base_mb + (build_peak_mb - base_mb) * scale) / 1024
        anon_21m = (base_mb + max(anon_mb - base_mb, 0) * scale) / 1024
        lines = [
            f"passages                 {args.passages:,} ({corpus_mb:,.0f} MiB of jsonl)",
            f"build time               {build_s:,.1f} s  ({args.passages / build_s:,.0f} passages/s)",
            f"build peak RSS           {build_peak_mb:,.0f} MiB (of which {base_mb:,.0f} MiB fixed: imports)",
            f"build peak RssAnon       {anon_mb:,.0f} MiB; peak RssFile {file_mb:,.0f} MiB (mapped files, reclaimable)",
            f"index size on disk       {index_mb:,.0f} MiB  ({parts})",
            f"load time (mmap)         {load_s:.2f} s",
            f"queries/s top-3, single  {single_qps:,.0f}  (one query per call, {len(queries)} queries)",
            f"queries/s top-3, batch   {batch_qps:,.0f}  (one call of {len(queries)} queries)",
            f"queries with a hit       {answered:.1%}",
            f"benchmark process peak   {self_peak_mb:,.0f} MiB (generation + load + queries)",
            f"extrapolated to {WIKI_PASSAGES:,} passages (linear in N, x{scale:.1f}):",
            f"  build time ~{build_s * scale / 3600:.1f} h; index on disk ~{index_mb * scale / 1024:.0f} GiB",
            f"  build peak RSS ~{rss_21m:.0f} GiB, of it anonymous ~{anon_21m:.0f} GiB (the rest: file pages)",
        ]
        print("\n".join(lines))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
