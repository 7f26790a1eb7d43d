"""Evaluate any agent on any registered env (MEM1-MultiQA-v0, MEM1-WebShop-v0, ...) with the paper's metrics.

    python scripts/evaluate.py --agent scripted --objectives 1 2 4 --episodes 32
    python scripts/evaluate.py --agent hf --model tiny --memory mem1 full         # zero-shot tiny model
    python scripts/evaluate.py --agent hf --model runs/ppo/policy --greedy          # a trained checkpoint
    python scripts/evaluate.py --agent hf --model /models/Qwen2.5-7B-RL-RAG-Q2-EM-Release --device cuda
    python scripts/evaluate.py --env MEM1-WebShop-v0 --agent scripted --episodes 16
    python scripts/evaluate.py --env MEM1-WebShop-v0 --env-arg n_items=2 --env-arg instruction=first
    python scripts/evaluate.py --agent openai --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-7B-Instruct

Metrics per (memory, objectives): EM and F1 summed over objectives (mean over episodes), the env
reward, peak context tokens (the env's counter; ``peak_model_tokens`` in the model's tokenizer
for HF agents, prompt + context + response), dependency, and wall time per trajectory. Writes
JSON (``--out``) and prints a markdown table (also written next to the JSON as ``.md``).
Episodes use held-out questions (``--split test``) and seeds from ``--seed-start``.

The env ids, the agent's reference (scripted) agent and the context policies come from the
registries (:func:`mem1_envs.registry.env_ids`, :mod:`mem1_envs.memory`); each option that names a
config field (``--world``, ``--split``, ``--n-products``, ``--max-turns``, ``--protocol``) goes to
the envs that have that field, and ``--env-arg KEY=VALUE`` sets any other field of the env's config
dataclass (checked before the first episode), so a new env needs no change here.

``--agent openai`` plays through any OpenAI-compatible server (``--api chat`` or
``completions``; key from ``$OPENAI_API_KEY``), sending the env's context as is; a request that
still fails after ``--retries`` ends its episode truncated, recorded with its one-line error
(printed to stderr, counted in the ``errors`` metric).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gymnasium as gym

import mem1_envs  # noqa: F401 - registers the env ids
from mem1_envs.memory import POLICIES
from mem1_envs.registry import env_fields, env_ids, env_kwargs, parse_env_args
from mem1_envs.validation import check_float, check_folder, check_int, cli_type

_FLAG_FIELDS = ("memory", "num_objectives", "world", "split", "n_products", "max_turns", "protocol")
"""Config fields this script sets with its own options (``--env-arg`` may not set them)."""
_positive = cli_type(check_int, int, minimum=1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="MEM1-MultiQA-v0", choices=env_ids())
    parser.add_argument(
        "--env-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other field of the env's config dataclass (repeatable), e.g. n_items=2",
    )
    parser.add_argument("--agent", default="scripted", choices=["scripted", "hf", "openai"])
    parser.add_argument(
        "--model",
        default="tiny",
        help="local HF model folder, or 'tiny' (the offline default); openai: the served model name",
    )
    parser.add_argument("--base-url", default=None, help="openai agent: API root, e.g. http://host:8000/v1")
    parser.add_argument(
        "--api", default="chat", choices=["chat", "completions"], help="openai agent endpoint"
    )
    parser.add_argument(
        "--request-timeout",
        type=cli_type(check_float, float, above=0),
        default=60.0,
        help="openai agent: seconds per request",
    )
    parser.add_argument(
        "--retries",
        type=cli_type(check_int, int, minimum=0),
        default=2,
        help="openai agent: retries of a failed request",
    )
    parser.add_argument(
        "--rate-limit",
        type=cli_type(check_float, float, above=0),
        default=None,
        help="openai agent: max requests per second",
    )
    parser.add_argument("--memory", nargs="+", default=["mem1"], choices=list(POLICIES))
    parser.add_argument(
        "--objectives", nargs="+", type=_positive, default=[1], help="objectives N (envs with num_objectives)"
    )
    parser.add_argument("--episodes", type=_positive, default=16)
    parser.add_argument("--seed-start", type=cli_type(check_int, int, minimum=0), default=10**9)
    parser.add_argument("--split", default="test", choices=["train", "test", "all"])
    parser.add_argument("--world", default="small", choices=["small", "default"])
    parser.add_argument("--max-turns", type=_positive, default=None)
    parser.add_argument("--protocol", default=None, help="tag set (default: the env's)")
    parser.add_argument(
        "--num-envs", type=_positive, default=16, help="HF agent: episodes generated together"
    )
    parser.add_argument("--max-new-tokens", type=_positive, default=256)
    parser.add_argument("--temperature", type=cli_type(check_float, float, above=0), default=1.0)
    parser.add_argument("--top-p", type=cli_type(check_float, float, above=0, maximum=1), default=1.0)
    parser.add_argument("--greedy", action="store_true", help="HF agent: greedy decoding")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument(
        "--n-products", type=_positive, default=2000, help="catalog size (envs with n_products)"
    )
    parser.add_argument("--out", default=None, help="JSON path (a .md table is written beside it)")
    return parser


def _env_kwargs(
    args: argparse.Namespace, memory: str, objectives: int, extra: dict[str, Any]
) -> dict[str, Any]:
    """The env's kwargs: this script's options that name one of its config fields, then ``extra``."""
    options = {
        "memory": memory,
        "num_objectives": objectives,
        "world": args.world,
        "split": args.split,
        "n_products": args.n_products,
        "max_turns": args.max_turns,
        "protocol": args.protocol,
    }
    return {**env_kwargs(args.env, options), **extra}


def _load_policy(args: argparse.Namespace, protocol: str) -> Any:
    from agents.llm_policy import GenerationConfig, LLMPolicy

    path = args.model
    if path == "tiny":
        from agents.tiny_model import default_tiny_model

        path = default_tiny_model()
    return LLMPolicy.from_pretrained(
        path,
        device=args.device,
        dtype=args.dtype,
        protocol=protocol,
        generation=GenerationConfig(
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            do_sample=not args.greedy,
        ),
    )


def _run_scripted(
    args: argparse.Namespace, kwargs: dict[str, Any], seeds: list[int]
) -> list[dict[str, float]]:
    from agents.play import play_episode
    from mem1_envs.registry import find_part

    env = gym.make(args.env, **kwargs)
    agent = find_part(env, "scripted_agent")(env.unwrapped)  # the env's reference agent
    rows = []
    for seed in seeds:
        stats = play_episode(env, agent, seed)
        rows.append(_row(stats))
    env.close()
    return rows


def _row(stats: Any) -> dict[str, float]:
    """One episode's row of the report, from :class:`agents.play.EpisodeStats`."""
    names = ("reward", "em", "f1", "peak_context_tokens", "dependency", "seconds", "turns")
    return {name: getattr(stats, name) for name in names}


def _run_openai(
    args: argparse.Namespace, kwargs: dict[str, Any], seeds: list[int], protocol: str
) -> list[dict[str, float]]:
    from agents.openai_agent import OpenAIAgent, OpenAIAgentError
    from agents.play import play_episode

    agent = OpenAIAgent(
        args.base_url,
        args.model,
        api=args.api,
        protocol=protocol,
        max_tokens=args.max_new_tokens,
        temperature=0.0 if args.greedy else args.temperature,
        top_p=args.top_p,
        timeout=args.request_timeout,
        retries=args.retries,
        rate_limit=args.rate_limit,
    )
    env = gym.make(args.env, **kwargs)
    rows = []
    for seed in seeds:
        stats = play_episode(env, agent, seed, errors=(OpenAIAgentError,))
        if stats.error is not None:
            print(f"episode seed={seed} truncated: {stats.error}", file=sys.stderr)
        rows.append({**_row(stats), "errors": float(stats.error is not None)})
    env.close()
    return rows


def _run_hf(
    policy: Any, args: argparse.Namespace, kwargs: dict[str, Any], seeds: list[int]
) -> list[dict[str, float]]:
    from agents.rollout import collect

    envs = [gym.make(args.env, **kwargs) for _ in range(min(args.num_envs, len(seeds)))]
    start = time.perf_counter()
    episodes = collect(envs, policy, seeds, generation_seed=0)
    per_episode = (time.perf_counter() - start) / max(len(seeds), 1)  # batched: wall time / episodes
    for env in envs:
        env.close()
    return [
        {
            "reward": e.reward,
            "em": e.em,
            "f1": e.f1,
            "peak_context_tokens": e.info.get("peak_context_tokens", 0),
            "peak_model_tokens": e.peak_model_tokens,
            "dependency": e.info.get("dependency", 0),
            "seconds": per_episode,
            "turns": e.turns,
        }
        for e in episodes
    ]


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Means over episodes (EM/F1 are already sums over objectives per episode)."""
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| agent | env | memory | N | episodes | EM | F1 | reward | peak tokens | peak model tokens | dependency | s/trajectory |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r["metrics"]
        model_peak = f"{m['peak_model_tokens']:.0f}" if "peak_model_tokens" in m else "-"
        lines.append(
            f"| {r['agent']} | {r['env']} | {r['memory']} | {r['objectives']} | {r['episodes']} | {m['em']:.3f} | "
            f"{m['f1']:.3f} | {m['reward']:.3f} | {m['peak_context_tokens']:.0f} | {model_peak} | "
            f"{m['dependency']:.0f} | {m['seconds']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.agent == "hf" and args.model != "tiny":
        try:
            check_folder("--model", args.model)  # a local folder: nothing is fetched from a hub
        except ValueError as error:
            parser.error(str(error))
    try:
        extra = parse_env_args(args.env, args.env_arg, reserved=_FLAG_FIELDS)
    except (TypeError, ValueError) as error:
        parser.error(f"argument --env-arg: {error}")
    fields = env_fields(args.env)
    seeds = list(range(args.seed_start, args.seed_start + args.episodes))
    objectives = args.objectives if "num_objectives" in fields else [1]
    policy = None
    protocol = args.protocol or fields.get("protocol") or "mem1"
    if args.agent == "hf":
        policy = _load_policy(args, protocol)
    if args.agent == "openai" and (args.base_url is None or args.model == "tiny"):
        raise SystemExit("--agent openai needs --base-url URL and --model NAME (the served model)")
    results = []
    for memory in args.memory:
        for n in objectives:
            kwargs = _env_kwargs(args, memory, n, extra)
            if args.agent == "openai":
                rows, agent = _run_openai(args, kwargs, seeds, protocol), f"openai:{args.model}"
            elif policy is None:
                rows, agent = _run_scripted(args, kwargs, seeds), "scripted"
            else:
                rows = _run_hf(policy, args, kwargs, seeds)
                agent = f"hf:{os.path.basename(os.path.normpath(args.model))}"
            results.append(
                {
                    "agent": agent,
                    "env": args.env,
                    "memory": memory,
                    "objectives": n,
                    "episodes": len(rows),
                    "metrics": summarise(rows),
                    "env_kwargs": kwargs,
                }
            )
    table = markdown(results)
    print(table)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1)
        with open(os.path.splitext(args.out)[0] + ".md", "w", encoding="utf-8") as handle:
            handle.write(table + "\n")
    return results


if __name__ == "__main__":
    main()
