"""What the RL wrappers cost per step: the text env alone vs CandidateActions vs + TokenizeObservation.

All three play the same greedy candidate line (search the next fact, then answer) on the same
seeds, interleaved round by round so machine load hits them alike; prints the median time per
env step of each over the rounds, and the ratios to the text env::

    python scripts/bench_wrappers.py            # 7 rounds of 200 episodes, 2 objectives, small world
    python scripts/bench_wrappers.py --quick    # 2 rounds of 20 episodes (smoke)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import gymnasium as gym

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mem1_envs  # noqa: F401  (registers the env ids)
from wrappers import CandidateActions, TokenizeObservation


def measure(rounds: int, episodes: int, num_objectives: int) -> dict[str, list[float]]:
    """Microseconds per env step of each stack, one value per round (rounds interleaved)."""
    kwargs = {"world": "small", "num_objectives": num_objectives}
    candidates = CandidateActions(gym.make("MEM1-MultiQA-v0", **kwargs), num_candidates=12)
    tokenized = TokenizeObservation(
        CandidateActions(gym.make("MEM1-MultiQA-v0", **kwargs), num_candidates=12), max_length=512
    )
    # The text env plays the candidates' texts; its own candidates come from a twin wrapper,
    # stepped in lockstep outside the timing (the line it plays is the same).
    twin = CandidateActions(gym.make("MEM1-MultiQA-v0", **kwargs), num_candidates=12)
    text = gym.make("MEM1-MultiQA-v0", **kwargs)

    def play_text() -> tuple[float, int]:
        seconds, steps = 0.0, 0
        for seed in range(episodes):
            twin.reset(seed=seed)
            start = time.perf_counter()
            text.reset(seed=seed)
            seconds += time.perf_counter() - start
            done = False
            while not done:
                slot = 1 if twin.candidates[1] is not None else 0
                response = twin.candidates[slot].text
                start = time.perf_counter()
                _, _, terminated, truncated, _ = text.step(response)
                seconds += time.perf_counter() - start
                twin.step(slot)
                steps += 1
                done = terminated or truncated
        return seconds, steps

    def play_wrapped(env: gym.Env, inner: CandidateActions) -> tuple[float, int]:
        steps, start = 0, time.perf_counter()
        for seed in range(episodes):
            env.reset(seed=seed)
            done = False
            while not done:
                _, _, terminated, truncated, _ = env.step(1 if inner.candidates[1] is not None else 0)
                steps += 1
                done = terminated or truncated
        return time.perf_counter() - start, steps

    inner = tokenized.env
    per_step: dict[str, list[float]] = {"text env": [], "+ CandidateActions": [], "+ TokenizeObservation": []}
    play_wrapped(tokenized, inner)  # warm-up: tokenizer built, kernels compiled
    for _ in range(rounds):
        for name, run in (
            ("text env", play_text),
            ("+ CandidateActions", lambda: play_wrapped(candidates, candidates)),
            ("+ TokenizeObservation", lambda: play_wrapped(tokenized, inner)),
        ):
            seconds, steps = run()
            per_step[name].append(seconds / steps * 1e6)
    return per_step


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds of 20 episodes")
    parser.add_argument("--num-objectives", type=int, default=2)
    args = parser.parse_args(argv)
    rounds, episodes = (2, 20) if args.quick else (7, 200)
    per_step = measure(rounds, episodes, args.num_objectives)
    base = statistics.median(per_step["text env"])
    result = {}
    print(f"{rounds} rounds x {episodes} episodes, {args.num_objectives} objectives, small world")
    for name, values in per_step.items():
        median = statistics.median(values)
        result[name] = median
        print(f"{name:24s} median {median:8.1f} us/step   ratio to text env {median / base:5.2f}")
    return result


if __name__ == "__main__":
    main()
