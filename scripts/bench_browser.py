"""Benchmark: ``MEM1-WebShop-Browser-v0`` step and reset latency, with the text env side by side.

The scripted shopper plays ``--episodes`` goals; every action goes to the browser env and, in
lockstep, to the text env (the check that both give the same observation, reward and info is
counted and printed). Each input mode (``native``: WebDriver clicks and key events; ``script``:
the page's own ``click()``/``requestSubmit()``) gets its own env and Chromium, measured in the
same run. Reported per mode:

- browser steps: steps that drove the browser (a search or a click that loads a page); steps
  that only scroll a long page or are refused by the page model never reach the browser and
  are reported apart;
- resets after the first (the first one starts Chromium and the server: reported apart);
- the text env's time for the same steps, and the scripted shopper's mean reward.

    python scripts/bench_browser.py                 # 30 episodes, 10,000 products, both modes
    python scripts/bench_browser.py --quick         # a smoke run: 3 episodes, 2,000 products
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from agents.scripted_shop import WebShopScriptedAgent
from mem1_envs.shop.browser_env import INPUT_MODES, WebShopBrowserEnv
from mem1_envs.shop.engine import load_shop
from mem1_envs.shop.text_env import WebShopTextEnv


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _pss_kib(pid: int) -> int:
    """Proportional set size of one process (shared pages split between their users), in KiB."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def count_calls(owner: Any, name: str) -> list[int]:
    """Wrap the method ``owner.<name>`` so that each call adds one to the returned counter's ``[0]``."""
    calls = [0]
    inner = getattr(owner, name)

    def counted(state: Any, action: Any) -> str:
        calls[0] += 1
        return inner(state, action)

    setattr(owner, name, counted)
    return calls


def new_record() -> dict[str, Any]:
    """What :func:`reset_both`, :func:`step_both` and :func:`finish` fill in for one mode."""
    out: dict[str, Any] = {"browser_steps": [], "other_steps": [], "text_steps": [], "resets": []}
    out.update(first_reset=0.0, mismatches=0, rewards=[], restarts=0)
    return out


def reset_both(browser: Any, text: Any, seed: int, out: dict[str, Any]) -> tuple[Any, dict]:
    """Reset both envs on ``seed``: time the browser's (seed 0 apart: it starts Chromium), count a
    mismatch; return the text env's reset."""
    start = time.perf_counter()
    browser_out = browser.reset(seed=seed)
    elapsed = time.perf_counter() - start
    if seed == 0:
        out["first_reset"] = elapsed
    else:
        out["resets"].append(elapsed)
    observation, info = text.reset(seed=seed)
    out["mismatches"] += browser_out != (observation, info)
    return observation, info


def step_both(browser: Any, text: Any, action: str, displays: list[int], out: dict[str, Any]) -> tuple:
    """Step both envs: time each (a browser step that reached the browser, by ``displays``, apart
    from one that did not), count a mismatch; return the text env's step."""
    before = displays[0]
    start = time.perf_counter()
    browser_step = browser.step(action)
    elapsed = time.perf_counter() - start
    (out["browser_steps"] if displays[0] > before else out["other_steps"]).append(elapsed)
    start = time.perf_counter()
    text_step = text.step(action)
    out["text_steps"].append(time.perf_counter() - start)
    out["mismatches"] += browser_step != text_step
    return text_step


def finish(browser: Any, out: dict[str, Any]) -> None:
    """Record the browser's restarts, processes and their memory (PSS)."""
    out["restarts"] = browser.browser_restarts
    pids = browser.owned_pids()
    out["processes"], out["pss_mib"] = len(pids), sum(_pss_kib(pid) for pid in pids) / 1024


def play_both(
    browser: Any,
    text: Any,
    displays: list[int],
    episodes: int,
    new_agent: Callable[[int], Any],
    score: Callable[[list[float]], float],
) -> dict[str, Any]:
    """Play ``episodes`` episodes (seeds 0, 1, ...) of ``new_agent(seed)`` in both envs, the text
    env's observations driving the agent; ``score(step rewards)`` is an episode's reward. Closes
    ``browser``. ``displays`` counts the steps that reach the browser (:func:`count_calls`)."""
    out = new_record()
    try:
        for seed in range(episodes):
            agent = new_agent(seed)
            observation, info = reset_both(browser, text, seed, out)
            done, rewards = False, []
            while not done:
                action = agent.act(observation, info)
                observation, reward, terminated, truncated, info = step_both(
                    browser, text, action, displays, out
                )
                rewards.append(reward)
                done = terminated or truncated
            out["rewards"].append(score(rewards))
        finish(browser, out)
    finally:
        browser.close()
    return out


def _shop_agent(seed: int) -> WebShopScriptedAgent:
    agent = WebShopScriptedAgent()
    agent.reset(seed=seed)
    return agent


def run_mode(mode: str, shop: Any, n_products: int, episodes: int) -> dict[str, Any]:
    """Play ``episodes`` scripted episodes in the browser env (mode ``mode``) and the text env."""
    browser = WebShopBrowserEnv(shop=shop, n_products=n_products, input_mode=mode)
    text = WebShopTextEnv(shop=shop, n_products=n_products)
    displays = count_calls(browser.episode, "display")  # the steps that reach the browser
    return play_both(browser, text, displays, episodes, _shop_agent, lambda rewards: rewards[-1])


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--n-products", type=int, default=10_000)
    parser.add_argument("--modes", default=",".join(INPUT_MODES), help="comma-separated input modes")
    parser.add_argument("--quick", action="store_true", help="3 episodes on 2,000 products")
    args = parser.parse_args(argv)
    if args.quick:
        args.episodes, args.n_products = 3, 2000
    if args.episodes < 2:
        parser.error(f"--episodes must be >= 2 (the first reset is reported apart), got {args.episodes}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for mode in modes:
        if mode not in INPUT_MODES:
            parser.error(f"--modes: unknown mode {mode!r}; known: {INPUT_MODES}")
    start = time.perf_counter()
    shop = load_shop(args.n_products, 0)
    print(f"catalog of {args.n_products} products ready in {time.perf_counter() - start:.2f} s")
    print(f"machine: {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f}")
    results = {}
    for mode in modes:
        results[mode] = run_mode(mode, shop, args.n_products, args.episodes)
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    print()
    header = (
        f"{'mode':<8}{'browser steps':>14}{'median ms':>11}{'p90 ms':>8}{'resets':>8}{'median ms':>11}"
        f"{'p90 ms':>8}{'1st reset s':>12}{'other steps':>12}{'median ms':>11}{'text ms':>9}{'ratio':>8}"
    )
    print(header)
    for mode, r in results.items():
        text_median = 1000 * statistics.median(r["text_steps"])
        browser_median = _ms(r["browser_steps"], 0.5)
        print(
            f"{mode:<8}{len(r['browser_steps']):>14}{browser_median:>11.1f}{_ms(r['browser_steps'], 0.9):>8.1f}"
            f"{len(r['resets']):>8}{_ms(r['resets'], 0.5):>11.1f}{_ms(r['resets'], 0.9):>8.1f}"
            f"{r['first_reset']:>12.2f}{len(r['other_steps']):>12}{_ms(r['other_steps'], 0.5):>11.2f}"
            f"{text_median:>9.3f}{browser_median / text_median:>8.0f}"
        )
    print()
    for mode, r in results.items():
        mean = statistics.mean(r["rewards"])
        print(
            f"{mode}: scripted shopper mean reward {mean:.3f} over {len(r['rewards'])} episodes; "
            f"text/browser mismatches {r['mismatches']}; browser restarts {r['restarts']}; "
            f"browser memory {r['pss_mib']:.0f} MiB PSS in {r['processes']} processes"
        )
    print(
        "(browser steps: a search or click that loads a page; other steps: scrolling or refused "
        "actions, which never reach the browser; text ms: the text env's median step on the same "
        "actions; ratio: browser median / text median)"
    )
    return results


if __name__ == "__main__":
    main()
