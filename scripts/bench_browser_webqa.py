"""Benchmark: ``MEM1-WebQA-Browser-v0`` step and reset latency, beside the shop browser's, same run.

The scripted researcher plays ``--episodes`` episodes on the small generated world, in each
input mode (``script``: the link's ``click()``; ``native``: mouse events at its box); every action
goes to the browser env and, in lockstep, to the text env (identical observation, reward and
info is checked and the mismatches printed). Reported:

- browser steps: steps that drove the browser (a search, click, back or scroll the page model
  accepted); answers and refused actions never reach the browser and are reported apart;
- resets after the first (the first starts Chromium and the server: reported apart);
- the text env's median step on the same actions, and the researcher's mean reward;
- then the shop browser's figures (``scripts/bench_browser.py``, ``script`` input mode) measured
  in the same process, so that both rows share the machine's load.

    python scripts/bench_browser_webqa.py              # 30 WebQA episodes per mode, 10 shop episodes
    python scripts/bench_browser_webqa.py --quick      # a smoke run: 3 + 2 episodes
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir))
sys.path.insert(0, HERE)

from bench_browser import _ms, count_calls, play_both, run_mode  # noqa: E402  (the shop's benchmark, reused)

from agents.scripted_webqa import WebQAScriptedAgent  # noqa: E402
from mem1_envs.webqa.browser_env import INPUT_MODES, WebQABrowserEnv  # noqa: E402
from mem1_envs.webqa.env import WebQATextEnv  # noqa: E402


def run_webqa(episodes: int, num_objectives: int, mode: str = "script") -> dict[str, Any]:
    """Play ``episodes`` scripted episodes in the WebQA browser env (``input_mode=mode``) and the text env."""
    kwargs = {"world": "small", "num_objectives": num_objectives}
    browser, text = WebQABrowserEnv(input_mode=mode, **kwargs), WebQATextEnv(**kwargs)
    displays = count_calls(browser, "_display")  # the steps that reach the browser
    return play_both(
        browser,
        text,
        displays,
        episodes,
        lambda seed: WebQAScriptedAgent(),
        lambda rewards: sum(rewards, 0.0) / num_objectives,
    )


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=30, help="WebQA episodes")
    parser.add_argument("--num-objectives", type=int, default=2)
    parser.add_argument("--shop-episodes", type=int, default=10, help="shop episodes (0: skip the shop)")
    parser.add_argument("--n-products", type=int, default=10_000)
    parser.add_argument("--modes", default=",".join(INPUT_MODES), help="WebQA input modes, comma-separated")
    parser.add_argument("--quick", action="store_true", help="3 WebQA + 2 shop episodes, 2,000 products")
    args = parser.parse_args(argv)
    if args.quick:
        args.episodes, args.shop_episodes, args.n_products = 3, 2, 2000
    if args.episodes < 2 or args.shop_episodes == 1:
        parser.error("--episodes and --shop-episodes must be >= 2 (the first reset is reported apart)")
    if args.num_objectives < 1:
        parser.error(f"--num-objectives must be >= 1, got {args.num_objectives}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for mode in modes:
        if mode not in INPUT_MODES:
            parser.error(f"--modes: unknown mode {mode!r}; known: {INPUT_MODES}")
    print(f"machine: {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f}")
    results = {f"webqa-{mode}": run_webqa(args.episodes, args.num_objectives, mode) for mode in modes}
    if args.shop_episodes:
        from mem1_envs.shop.engine import load_shop

        shop = load_shop(args.n_products, 0)
        results["shop-script"] = run_mode("script", shop, args.n_products, args.shop_episodes)
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    print()
    print(
        f"{'env':<13}{'browser steps':>14}{'median ms':>11}{'p90 ms':>8}{'resets':>8}{'median ms':>11}"
        f"{'p90 ms':>8}{'1st reset s':>12}{'other steps':>12}{'median ms':>11}{'text ms':>9}{'ratio':>8}"
    )
    for name, r in results.items():
        text_median = 1000 * statistics.median(r["text_steps"])
        browser_median = _ms(r["browser_steps"], 0.5)
        print(
            f"{name:<13}{len(r['browser_steps']):>14}{browser_median:>11.1f}{_ms(r['browser_steps'], 0.9):>8.1f}"
            f"{len(r['resets']):>8}{_ms(r['resets'], 0.5):>11.1f}{_ms(r['resets'], 0.9):>8.1f}"
            f"{r['first_reset']:>12.2f}{len(r['other_steps']):>12}{_ms(r['other_steps'], 0.5):>11.2f}"
            f"{text_median:>9.3f}{browser_median / text_median:>8.0f}"
        )
    print()
    for name, r in results.items():
        what = "researcher EM per objective" if name.startswith("webqa") else "shopper reward"
        print(
            f"{name}: scripted {what} {statistics.mean(r['rewards']):.3f} over {len(r['rewards'])} episodes; "
            f"text/browser mismatches {r['mismatches']}; browser restarts {r['restarts']}; "
            f"browser memory {r['pss_mib']:.0f} MiB PSS in {r['processes']} processes"
        )
    print(
        "(browser steps: actions that load a page in Chromium; other steps: answers and refused "
        "actions (shop: also scrolls within a screen), which never reach the browser; text ms: the text env's median step on "
        "the same actions; ratio: browser median / text median; input modes: script = the element's "
        "click(), native = mouse events (WebQA) or WebDriver clicks and keys (shop))"
    )
    return results


if __name__ == "__main__":
    main()
