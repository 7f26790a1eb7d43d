"""Load test of the ``/retrieve`` service: concurrent loopback clients, requests/s, p50/p99 latency.

Indexes the generated world's passages, starts ``python -m mem1_envs serve-retriever`` on a
free 127.0.0.1 port in a child process, then runs ``--clients`` client threads, each sending
one request at a time (``--batch`` queries, top-3, ``return_scores``) until ``--requests``
requests are done or ``--seconds`` pass, whichever comes first. Every answer is checked (one
result list per query); any failed request makes the script exit 1. For scale, the same queries
are also timed against the engine in-process, one query per call.

    python scripts/bench_service.py            # default world (~29,000 passages), 8 clients
    python scripts/bench_service.py --quick    # small world, 4 clients, 200 requests

Soak mode (``--duration SECONDS``): the clients run for that long at ``--rate`` requests per
second each (so the request count is bounded: clients x rate x duration), while the server's
resident memory, open file descriptors and threads are sampled every ``--sample-every``
seconds. Reported: requests ok/failed, latency, and the server's RSS after the warm-up (the
first tenth of the run, at least 10 s) and at the end. Exit 1 on any failed request or when
RSS grows by ``--max-growth`` percent or more.

    python scripts/bench_service.py --duration 600    # 8 clients x 25 requests/s for 10 minutes
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


def measure(
    world_size: str,
    clients: int,
    requests: int,
    seconds: float,
    batch: int,
    *,
    rate: float | None = None,
    sample_every: float = 10.0,
) -> dict[str, Any]:
    """Serve a BM25 index of the generated world in a child process and load it with ``clients``
    threads; returns request latencies (ms), counts, wall time, failures and the in-process
    engine's queries/s on the same questions (one query per call).

    With ``rate`` (soak mode) each client sends at most ``rate`` requests per second and the
    server's (seconds, RSS KiB, open fds, threads) are sampled every ``sample_every`` seconds
    into ``samples``."""
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
            sent = 0
            begin = time.perf_counter()
            while time.perf_counter() < deadline:
                with lock:
                    if next(counter, None) is None:
                        return
                if rate is not None:  # soak: paced, request n leaves at begin + n / rate
                    time.sleep(max(0.0, begin + sent / rate - time.perf_counter()))
                    sent += 1
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

        samples: list[tuple[float, int, int, int]] = []  # (seconds, server RSS KiB, fds, threads)
        stop_sampling = threading.Event()

        def sampler() -> None:
            while True:
                samples.append((time.perf_counter() - started, *process_stats(process.pid)))
                if stop_sampling.wait(sample_every):
                    return

        threads = [threading.Thread(target=client, args=(seed,)) for seed in range(clients)]
        started = time.perf_counter()
        watcher = threading.Thread(target=sampler, daemon=True)
        if rate is not None:
            watcher.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        if rate is not None:
            stop_sampling.set()
            watcher.join()
            samples.append((wall, *process_stats(process.pid)))

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
            "samples": samples,
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
    parser.add_argument("--duration", type=float, default=None, help="soak mode: run this many seconds")
    parser.add_argument(
        "--rate", type=float, default=25.0, help="soak mode: requests/s per client (default 25)"
    )
    parser.add_argument("--sample-every", type=float, default=10.0, help="soak mode: seconds between samples")
    parser.add_argument(
        "--max-growth", type=float, default=5.0, help="soak mode: RSS growth limit in %% (default 5)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.world, args.clients, args.requests, args.seconds = "small", 4, 200, 20.0
    for name in ("clients", "requests", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("seconds", "rate", "sample_every"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if args.duration is not None:
        if not args.duration > 0:
            parser.error(f"--duration must be > 0, got {args.duration}")
        args.seconds = args.duration
        args.requests = int(args.clients * args.rate * args.duration)  # the bound on requests

    soak = args.duration is not None
    r = measure(
        args.world,
        args.clients,
        args.requests,
        args.seconds,
        args.batch,
        rate=args.rate if soak else None,
        sample_every=args.sample_every,
    )
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
    grown = soak and report_soak(r["samples"], args, done, wall, ms)
    if failures:
        print("failures (first 5):", *failures[:5], sep="\n  ")
        return 1
    return 0 if done and not grown else 1


def process_stats(pid: int) -> tuple[int, int, int]:
    """(resident KiB, open file descriptors, threads) of process ``pid``, from /proc."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd")), threads


def report_soak(
    samples: list[tuple[float, int, int, int]],
    args: argparse.Namespace,
    done: int,
    wall: float,
    ms: np.ndarray,
) -> bool:
    """Print the soak's server samples and memory growth; True when RSS grew past the limit."""
    warm_at = max(10.0, args.duration / 10)
    warm = next((s for s in samples if s[0] >= warm_at), samples[-1])
    end = samples[-1]
    growth = 100 * (end[1] - warm[1]) / warm[1]
    print(
        f"soak                 {args.clients} clients x {args.rate:g} requests/s for {args.duration:g} s "
        f"(bound {args.requests:,} requests); {done:,} answered in {wall:.1f} s"
    )
    print(
        f"server RSS           {warm[1] / 1024:.1f} MiB at {warm[0]:.0f} s (warm) -> {end[1] / 1024:.1f} MiB "
        f"at {end[0]:.0f} s: {growth:+.2f}% (limit {args.max_growth}%); max {max(s[1] for s in samples) / 1024:.1f} MiB"
    )
    print(f"server fds / threads {warm[2]} / {warm[3]} (warm) -> {end[2]} / {end[3]} (end)")
    step = max(1, len(samples) // 10)
    print("samples (s, MiB):    " + ", ".join(f"{s[0]:.0f}:{s[1] / 1024:.1f}" for s in samples[::step]))
    if len(ms):
        print(
            f"latency p50 / p99 / max  {np.percentile(ms, 50):.1f} / {np.percentile(ms, 99):.1f} / {ms.max():.1f} ms"
        )
    return growth >= args.max_growth


if __name__ == "__main__":
    sys.exit(main())
