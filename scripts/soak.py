"""Soak test: one process plays thousands of episodes; its memory must stay flat, nothing may leak.

One process plays MultiQA episodes (default world, 2 objectives, scripted agent), text-shop
and browser-shop episodes (10,000 products, scripted shopper). First a warm-up: ``--warmup-*``
episodes of each kind, which also fill the envs' bounded caches (the shop keeps up to 4,096
laid-out pages, 1,024 queries' results, 65,536 titles...: about 30 MiB on 10,000 products,
full after some 5,000 episodes); then ``--qa``/``--shop``/``--browser`` episodes in
``--rounds`` rounds that each play a share of every kind, so the three envs stay alive
together. Measured and printed:

- resident memory (VmRSS of this process, after ``gc.collect()``) once the envs are made, after
  the warm-up and after every round; the growth from warm-up to the end, in percent; the open
  file descriptors; the PSS of the browser env's Chromium processes;
- after every env is closed: this process's leftover child processes (found through
  ``/proc``'s parent links, so other users' processes are never counted or touched), live
  threads other than the main one (the shop's uvicorn server runs in a thread), and the
  entries left in the temp dir. The run gets a temp dir of its own (``TMPDIR``, which
  chromedriver and Chromium inherit), so entries made by other programs are never counted;
  it is removed at the end.

Exit status 1 when RSS grows by ``--max-growth`` percent or more, or anything is left over.

    python scripts/soak.py            # 10,000 MultiQA, 2,000 text-shop, 300 browser-shop episodes
    python scripts/soak.py --quick    # 1,000 / 200 / 10 after a short warm-up, 2,000 products
    python scripts/soak.py --browser 0 --json   # no Chromium; the last line is the result as JSON
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))


def rss_kib() -> int:
    """Resident set size of this process in KiB (``VmRSS``)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def pss_kib(pids: set[int]) -> int:
    """Proportional set size of ``pids`` together (shared pages split among their users), KiB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                total += next((int(line.split()[1]) for line in handle if line.startswith("Pss:")), 0)
        except OSError:
            pass
    return total


def leftover_processes() -> list[str]:
    """``pid:name`` of every live descendant of this process (zombies excluded)."""
    from mem1_envs.shop.browser import descendants

    found = []
    for pid in sorted(descendants(os.getpid())):
        try:
            with open(f"/proc/{pid}/comm") as handle:
                found.append(f"{pid}:{handle.read().strip()}")
        except OSError:
            pass  # exited meanwhile
    return found


def split_counts(total: int, rounds: int) -> list[int]:
    """``total`` episodes over ``rounds`` rounds, as evenly as possible.

    >>> split_counts(10, 4)
    [3, 3, 2, 2]
    """
    return [total // rounds + (i < total % rounds) for i in range(rounds)]


class Player:
    """One env and its scripted agent; plays episodes with consecutive seeds from ``first_seed``."""

    def __init__(self, name: str, env: Any, agent: Any, first_seed: int = 0) -> None:
        self.name, self.env, self.agent = name, env, agent
        self.next_seed = first_seed
        self.episodes = self.steps = 0
        self.reward = 0.0
        self.failures: dict[str, int] = {}

    def play(self, count: int) -> None:
        for _ in range(count):
            seed, self.next_seed = self.next_seed, self.next_seed + 1
            observation, info = self.env.reset(seed=seed)
            self.agent.reset(seed=seed)
            done = False
            while not done:
                observation, reward, terminated, truncated, info = self.env.step(
                    self.agent.act(observation, info)
                )
                self.reward += float(reward)
                self.steps += 1
                done = terminated or truncated
            reason = info.get("truncated_reason") or info.get("search_error")
            if reason:  # a browser or search failure: counted by kind
                key = reason.split(":")[0]
                self.failures[key] = self.failures.get(key, 0) + 1
            self.episodes += 1


KINDS = ("multiqa", "text-shop", "browser-shop")


def make_players(args: argparse.Namespace) -> list[Player]:
    import gymnasium as gym

    import mem1_envs  # noqa: F401  (registers the ids)
    from agents.scripted import MultiQAScriptedAgent
    from agents.scripted_shop import WebShopScriptedAgent

    players = []
    if args.qa:
        env = gym.make("MEM1-MultiQA-v0", num_objectives=2)
        players.append(Player("multiqa", env, MultiQAScriptedAgent()))
    if args.shop:
        env = gym.make("MEM1-WebShop-v0", n_products=args.n_products)
        players.append(Player("text-shop", env, WebShopScriptedAgent()))
    if args.browser:
        # Its own goals (seeds), not the text shop's: its pages are not all cached already.
        env = gym.make("MEM1-WebShop-Browser-v0", n_products=args.n_products)
        players.append(Player("browser-shop", env, WebShopScriptedAgent(), first_seed=1_000_000))
    return players


def sample(players: list[Player], label: str, start: float) -> dict[str, Any]:
    """RSS, open fds and Chromium PSS now (after a full collection), printed as one line."""
    gc.collect()
    point: dict[str, Any] = {"at": label, "rss_kib": rss_kib(), "fds": open_fds()}
    browser = next((p.env.unwrapped for p in players if p.name == "browser-shop"), None)
    if browser is not None:
        point["chromium_pss_kib"] = pss_kib(browser.owned_pids())
    point["seconds"] = round(time.perf_counter() - start, 1)
    line = f"{label:<12} rss {point['rss_kib'] / 1024:8.1f} MiB  fds {point['fds']:>4}"
    if browser is not None:
        line += f"  chromium pss {point['chromium_pss_kib'] / 1024:7.1f} MiB"
    print(f"{line}  {point['seconds']:7.1f} s", flush=True)
    return point


def run(args: argparse.Namespace) -> dict[str, Any]:
    measured = dict(zip(KINDS, (args.qa, args.shop, args.browser), strict=True))
    warmup = dict(zip(KINDS, (args.warmup_qa, args.warmup_shop, args.warmup_browser), strict=True))
    start = time.perf_counter()
    players = make_players(args)
    points = []
    try:
        for player in players:
            player.play(1)  # first episode: imports, JIT, browser start
        points.append(sample(players, "made", start))
        for player in players:
            player.play(warmup[player.name])
        points.append(sample(players, "warm", start))
        for index in range(args.rounds):
            for player in players:
                player.play(split_counts(measured[player.name], args.rounds)[index])
            points.append(sample(players, f"round {index + 1}/{args.rounds}", start))
    finally:
        for player in players:
            player.env.close()
    gc.collect()
    # tqdm's monitor is one process-wide daemon thread of that library, not something we start.
    threads = [
        t.name for t in threading.enumerate() if t is not threading.main_thread() and t.name != "tqdm_monitor"
    ]
    warm, end = points[1], points[-1]
    return {
        "episodes": {p.name: p.episodes for p in players},
        "warmup_episodes": {p.name: warmup[p.name] for p in players},
        "steps": {p.name: p.steps for p in players},
        "mean_reward": {p.name: round(p.reward / max(1, p.episodes), 4) for p in players},
        "failures": {p.name: p.failures for p in players},
        "browser_restarts": sum(getattr(p.env.unwrapped, "browser_restarts", 0) for p in players),
        "rss_made_kib": points[0]["rss_kib"],
        "rss_warm_kib": warm["rss_kib"],
        "rss_end_kib": end["rss_kib"],
        "rss_growth_pct": round(100 * (end["rss_kib"] - warm["rss_kib"]) / warm["rss_kib"], 2),
        "fds_warm": warm["fds"],
        "fds_end": end["fds"],
        "points": points,
        "leftover_threads": threads,
        "seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--qa", type=int, default=10_000, help="measured MultiQA episodes (default 10,000)")
    add("--shop", type=int, default=2_000, help="measured text-shop episodes (default 2,000)")
    add("--browser", type=int, default=300, help="measured browser-shop episodes (default 300; 0: none)")
    add("--warmup-qa", type=int, default=1_000, help="MultiQA warm-up episodes (default 1,000)")
    add("--warmup-shop", type=int, default=5_000, help="text-shop warm-up episodes (default 5,000)")
    add("--warmup-browser", type=int, default=20, help="browser-shop warm-up episodes (default 20)")
    add("--rounds", type=int, default=10, help="rounds of the measured episodes (default 10)")
    add("--n-products", type=int, default=10_000, help="shop catalog size (default 10,000)")
    add("--max-growth", type=float, default=5.0, help="RSS growth limit in %% (default 5)")
    add("--quick", action="store_true", help="2,000 products; warm-up 200/1,000/3, then 1,000/200/10")
    add("--json", action="store_true", help="print the result as JSON on the last line")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_products = 2_000
        args.warmup_qa, args.warmup_shop, args.warmup_browser = 200, 1_000, 3
        args.qa, args.shop, args.browser = 1_000, 200, 10
    counts = ("qa", "shop", "browser", "warmup_qa", "warmup_shop", "warmup_browser")
    for name in counts:
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    for name in ("rounds", "n_products"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.qa + args.shop + args.browser:
        parser.error("nothing to play: --qa, --shop and --browser are all 0")

    # A temp dir of our own, set before anything asks for one: what is left in it is ours.
    scratch = tempfile.mkdtemp(prefix="mem1-envs-soak-")
    os.environ["TMPDIR"] = tempfile.tempdir = scratch
    try:
        result = run(args)
        result["leftover_processes"] = leftover_processes()
        result["leftover_temp_entries"] = sorted(os.listdir(scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    mib = 1024
    print(f"episodes             {result['episodes']} in {result['seconds']} s (warm-up included)")
    print(f"warm-up episodes     {result['warmup_episodes']}; steps in all {result['steps']}")
    print(f"mean reward          {result['mean_reward']}")
    print(f"browser restarts     {result['browser_restarts']}, failed episodes {result['failures']}")
    print(
        f"rss made/warm/end    {result['rss_made_kib'] / mib:.1f} / {result['rss_warm_kib'] / mib:.1f} / "
        f"{result['rss_end_kib'] / mib:.1f} MiB ({result['rss_growth_pct']:+.2f}% from warm, "
        f"limit {args.max_growth}%)"
    )
    print(f"open fds warm / end  {result['fds_warm']} / {result['fds_end']}")
    print(f"leftover processes   {len(result['leftover_processes'])} {result['leftover_processes']}")
    print(f"leftover threads     {len(result['leftover_threads'])} {result['leftover_threads']}")
    print(f"leftover temp        {len(result['leftover_temp_entries'])} {result['leftover_temp_entries']}")
    ok = (
        result["rss_growth_pct"] < args.max_growth
        and not result["leftover_processes"]
        and not result["leftover_threads"]
        and not result["leftover_temp_entries"]
    )
    print("PASS" if ok else "FAIL")
    if args.json:
        print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
