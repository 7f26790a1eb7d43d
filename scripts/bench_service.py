"""Load test of the ``/retrieve`` service: concurrent loopback clients, requests/s, p50/p99 latency.

Indexes the generated world's passages, starts ``python -m mem1_envs serve-retriever`` on a
free 127.0.0.1 port in a child process, then runs ``--clients`` client threads, each sending
one request at a time (``--batch`` queries, top-3, ``return_scores``) until ``--requests``
requests are done or ``--seconds`` pass, whichever comes first. Every answer is checked (one
result list per query); any failed request makes the script exit 1. For scale, the same queries
are also timed against the engine in-process, one query per call.

    python scripts/bench_service.py            # default world (~29,000 passages), 8 clients
    python scripts/bench_service.py --quick    # small world, 4 clients, 200 requests
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

import numpy as np


def measure(world_size: str, clients: int, requests: int, seconds: float, batch: int) -> dict[str, Any]:
    """Serve a BM25 index of the generated world in a child process and load it with ``clients``
    threads; returns request latencies (ms), counts, wall time, failures and the in-process
    engine's queries/s on the same questions (one query per call)."""
    from mem1_envs.qa.index import build_index, load_index
    from mem1_envs.qa.world import WORLD_SIZES, generate_world

    world = generate_world(WORLD_SIZES[world_size], seed=0)
    workdir = tempfile.mkdtemp(prefix="bench-service-")
    process = None
    try:
        corpus = os.path.join(workdir, "corpus.jsonl")
        with open(corpus, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(p) + "\n" for p in world.passages)
        build_index(corpus, os.path.join(workdir, "index"), show_progress=False)
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mem1_envs",
                "serve-retriever",
                "--index",
                os.path.join(workdir, "index"),
                "--port",
                "0",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = process.stdout.readline()
        if not line.startswith("serving at "):
            raise SystemExit(f"server did not start: {line!r}")
        url = line.split()[-1]
        questions = [q.text for q in world.questions]

        latencies: list[float] = []
        failures: list[str] = []
        lock = threading.Lock()
        counter = iter(range(requests))
        deadline = time.perf_counter() + seconds

        def client(seed: int) -> None:
            rng = np.random.default_rng(seed)
            while time.perf_counter() < deadline:
                with lock:
                    if next(counter, None) is None:
                        return
                queries = [questions[int(i)] for i in rng.integers(0, len(questions), batch)]
                body = json.dumps({"queries": queries, "topk": 3, "return_scores": True}).encode()
                request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
                started = time.perf_counter()
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        result = json.loads(response.read())["result"]
                    if len(result) != len(queries):
                        raise ValueError(f"{len(result)} result lists for {len(queries)} queries")
                except Exception as error:
                    with lock:
                        failures.append(f"{type(error).__name__}: {error}")
                    continue
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)

        threads = [threading.Thread(target=client, args=(seed,)) for seed in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started

        engine = load_index(os.path.join(workdir, "index"))
        engine.search(questions[:5], 3)  # JIT warm-up, not timed
        sample = questions[:1000]
        begin = time.perf_counter()
        for question in sample:
            engine.search([question], 3)
        local_qps = len(sample) / (time.perf_counter() - begin)

        return {
            "passages": len(world.passages),
            "latencies_ms": [x * 1000 for x in latencies],
            "failures": failures,
            "wall_s": wall,
            "in_process_qps": local_qps,
        }
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
            process.stdout.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="default", help="generated world size (default: default)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads (default 8)")
    parser.add_argument("--requests", type=int, default=5000, help="stop after this many requests")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop after this long")
    parser.add_argument("--batch", type=int, default=1, help="queries per request (default 1: one env step)")
    parser.add_argument("--quick", action="store_true", help="small world, 4 clients, 200 requests, 20 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.world, args.clients, args.requests, args.seconds = "small", 4, 200, 20.0
    for name in ("clients", "requests", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.seconds <= 0:
        parser.error(f"--seconds must be > 0, got {args.seconds}")

    r = measure(args.world, args.clients, args.requests, args.seconds, args.batch)
    done, wall, failures = len(r["latencies_ms"]), r["wall_s"], r["failures"]
    ms = np.array(r["latencies_ms"])
    print(f"passages             {r['passages']:,} (world {args.world!r})")
    print(f"clients              {args.clients} threads, {args.batch} queries per request, top-3")
    print(f"requests             {done:,} ok, {len(failures)} failed, in {wall:.1f} s")
    if done:
        print(f"requests/s           {done / wall:,.0f}  ({done * args.batch / wall:,.0f} queries/s)")
        print(f"latency p50 / p99    {np.percentile(ms, 50):.1f} ms / {np.percentile(ms, 99):.1f} ms")
    print(
        f"in-process engine    {r['in_process_qps']:,.0f} queries/s (one query per call, same machine, same run)"
    )
    if failures:
        print("failures (first 5):", *failures[:5], sep="\n  ")
        return 1
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
