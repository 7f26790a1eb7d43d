"""Memory scaling: the same agent under every context policy as the task grows (MEM1's Table 1).

For N objectives on ``MEM1-MultiQA-v0`` (1, 2, 4, 8, 16, 32) and k items on the shop's
shopping list (``MEM1-WebShop-v0``, ``n_items`` 1, 2, 4, 8) it plays the same seeds with the
same agent under each context policy of :data:`mem1_envs.memory.POLICIES` (or the policies
given), and reports per configuration: EM and F1 (sums over objectives and per objective; the
shop: reward and success), turns, peak context tokens (with and without the prompt), mean
context tokens per turn, dependency (``info["dependency"]``: context x response tokens summed
over turns, the env's own count, the same for every policy), wall time per episode and, for
LLM agents, generation time and generated tokens. Every figure is a mean over episodes with
its standard error; peaks also with their min-max over seeds. Writes ``scaling.md``,
``scaling.json`` and, with matplotlib (extra ``plot``), ``scaling_<task>.png``.

    python scripts/memory_scaling.py                                   # scripted agents, all sizes
    python scripts/memory_scaling.py --out docs/scaling                # the committed table and plots
    python scripts/memory_scaling.py --model tiny --model runs/ppo/policy --episodes 8   # LLM agents
    python -m mem1_envs scaling --quick                                # the same code, a smoke run

Adding a task (e.g. the web-research env once it exists) is one :class:`Task` entry in
:data:`TASKS`: its env id, the keyword that sets its number of objectives, the sizes, fixed env
keyword arguments, its scripted agent and its LLM protocol.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

import gymnasium as gym
from tqdm import tqdm

import mem1_envs  # registers the env ids
from agents.play import EpisodeStats, play_episode
from agents.scripted import MultiQAScriptedAgent, WebShopScriptedAgent
from mem1_envs.memory import POLICIES, ContextPolicy, make_policy  # noqa: F401 - make_policy: doctests


@dataclass(frozen=True)
class Task:
    """One scaling axis: an env whose task grows with one keyword argument.

    Attributes:
        name: short name used on the command line and in the outputs.
        env_id: the registered env id.
        size_arg: the ``gym.make`` keyword that sets the number of objectives.
        sizes: the default sizes to sweep.
        env_kwargs: fixed keyword arguments of every configuration.
        scripted: makes the task's scripted agent.
        protocol: the tag set an LLM policy must stop on.
    """

    name: str
    env_id: str
    size_arg: str
    sizes: tuple[int, ...]
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    scripted: Callable[[], Any] = MultiQAScriptedAgent
    protocol: str = "mem1"


# The web-research env joins here as one more entry once it exists.
TASKS: dict[str, Task] = {
    "multiqa": Task(
        "multiqa",
        "MEM1-MultiQA-v0",
        "num_objectives",
        (1, 2, 4, 8, 16, 32),
        {"world": "default", "split": "test"},
        MultiQAScriptedAgent,
        "mem1",
    ),
    "shop": Task("shop", "MEM1-WebShop-v0", "n_items", (1, 2, 4, 8), {}, WebShopScriptedAgent, "webshop"),
}

PolicySpec = str | ContextPolicy


def policy_label(policy: PolicySpec) -> str:
    """A policy's name in tables: its name, plus the settings that differ from the env defaults.

    >>> policy_label("full"), policy_label(make_policy("window", window=5))
    ('full', 'window(window=5)')
    """
    if isinstance(policy, str):
        return policy
    settings = []
    if policy.name == "window":
        settings.append(f"window={policy.window}")
    if policy.name == "mem1" and policy.max_tokens is not None:
        settings.append(f"max_tokens={policy.max_tokens}")
    return f"{policy.name}({', '.join(settings)})" if settings else policy.name


def policy_kwargs(policy: PolicySpec) -> dict[str, Any]:
    """The env keyword arguments that install ``policy`` (a name of ``POLICIES`` or a ContextPolicy).

    >>> policy_kwargs(make_policy("window", window=2))["window"]
    2
    """
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {tuple(POLICIES)} or a ContextPolicy, got {policy!r}")
        return {"memory": policy}
    if not isinstance(policy, ContextPolicy):
        raise TypeError(f"policy must be a name of {tuple(POLICIES)} or a ContextPolicy, got {policy!r}")
    kwargs: dict[str, Any] = {"memory": policy.name, "window": policy.window, "token_counter": policy.counter}
    # The envs take the budget as max_context_tokens; the policy's None (unbounded) is a budget
    # no context reaches.
    kwargs["max_context_tokens"] = policy.max_tokens if policy.max_tokens is not None else 2**31 - 1
    return kwargs


# -- agents ---------------------------------------------------------------------------------


@dataclass
class AgentSpec:
    """An agent to sweep: its label and a factory per task (LLM agents share one loaded model)."""

    label: str
    make: Callable[[Task], Any]


def scripted_agent() -> AgentSpec:
    """Each task's own scripted agent (agents.scripted)."""
    return AgentSpec("scripted", lambda task: task.scripted())


def llm_agent(
    path: str, *, device: str = "cpu", dtype: str = "float32", max_new_tokens: int = 256
) -> AgentSpec:
    """A Hugging Face checkpoint or trained policy folder (``"tiny"``: the offline tiny model),
    greedy, through :class:`agents.llm_policy.LLMPolicy`. Loaded once, on first use."""
    loaded: dict[str, Any] = {}

    def make(task: Task) -> Any:
        from agents.llm_policy import GenerationConfig, LLMPolicy

        generation = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False)
        if "policy" not in loaded:
            folder = path
            if path == "tiny":
                from agents.tiny_model import default_tiny_model

                folder = default_tiny_model()
            loaded["policy"] = LLMPolicy.from_pretrained(folder, device=device, dtype=dtype)
        base = loaded["policy"]
        return LLMPolicy(base.model, base.tokenizer, protocol=task.protocol, generation=generation).as_agent()

    return AgentSpec(f"hf:{os.path.basename(os.path.normpath(path))}", make)


# -- one configuration ----------------------------------------------------------------------


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, se


def summarise(episodes: list[dict[str, float]], size: int) -> dict[str, Any]:
    """Mean, standard error, min and max over episodes of every per-episode figure."""
    out: dict[str, Any] = {}
    for key in episodes[0]:
        values = [float(e[key]) for e in episodes]
        mean, se = _mean_se(values)
        out[key] = {"mean": mean, "se": se, "min": min(values), "max": max(values)}
    for key in ("em", "f1"):
        out[f"{key}_per_objective"] = {k: v / size for k, v in out[key].items()}
    return out


def run_configuration(
    task: Task, size: int, policy: PolicySpec, agent: Any, seeds: Sequence[int]
) -> list[dict[str, float]]:
    """Play one episode per seed; per-episode figures (EM/F1 summed over objectives)."""
    env = gym.make(task.env_id, **{**task.env_kwargs, task.size_arg: size, **policy_kwargs(policy)})
    rows = []
    for seed in seeds:
        before = (getattr(agent, "generate_seconds", 0.0), getattr(agent, "generated_tokens", 0))
        stats: EpisodeStats = play_episode(env, agent, seed)
        row = {
            "em": stats.em,
            "f1": stats.f1,
            "reward": stats.reward,
            "success": float(stats.success),
            "turns": stats.turns,
            "truncated": float(stats.truncated),
            "prompt_tokens": stats.prompt_tokens,
            "peak_context_tokens": stats.peak_context_tokens,
            "peak_beyond_prompt": stats.peak_context_tokens - stats.prompt_tokens,
            "mean_context_tokens": stats.mean_context_tokens,
            "dependency": stats.dependency,
            "seconds": stats.seconds,
        }
        if hasattr(agent, "generate_seconds"):
            row["generate_seconds"] = agent.generate_seconds - before[0]
            row["generated_tokens"] = agent.generated_tokens - before[1]
        rows.append(row)
    env.close()
    return rows


def warm_up(task: Task) -> None:
    """Load the world or catalog and compile the numba kernels before anything is timed."""
    env = gym.make(task.env_id, **{**task.env_kwargs, task.size_arg: task.sizes[0]})
    play_episode(env, task.scripted(), seed=2**31 - 1)
    env.close()


def sweep(
    tasks: Sequence[Task],
    policies: Sequence[PolicySpec] = tuple(POLICIES),
    agents: Sequence[AgentSpec] | None = None,
    *,
    episodes: int = 20,
    seed: int = 0,
    sizes: dict[str, Sequence[int]] | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Every (task, size, agent, policy) configuration on the same seeds; one result row each.

    >>> task = Task("qa", "MEM1-MultiQA-v0", "num_objectives", (2,), {"world": "small"})
    >>> rows = sweep([task], ["mem1", "full"], episodes=2, progress=False)
    >>> [(r["policy"], r["size"], r["metrics"]["em_per_objective"]["mean"]) for r in rows]
    [('mem1', 2, 1.0), ('full', 2, 1.0)]
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    agents = list(agents) if agents is not None else [scripted_agent()]
    seeds = list(range(seed, seed + episodes))
    plan = [
        (task, size, spec, policy)
        for task in tasks
        for spec in agents
        for size in (sizes or {}).get(task.name, task.sizes)
        for policy in policies
    ]
    for policy in policies:
        policy_kwargs(policy)  # fail before anything runs
    for task in tasks:
        warm_up(task)
    bar = tqdm(total=len(plan) * episodes, desc="scaling", unit="ep", disable=not progress)
    results, made = [], {}
    for task, size, spec, policy in plan:
        key = (task.name, spec.label)
        if key not in made:
            made[key] = spec.make(task)
        bar.set_postfix_str(f"{task.name} {task.size_arg}={size} {policy_label(policy)}")
        rows = run_configuration(task, size, policy, made[key], seeds)
        bar.update(episodes)
        results.append(
            {
                "task": task.name,
                "env_id": task.env_id,
                "size_arg": task.size_arg,
                "size": size,
                "agent": spec.label,
                "policy": policy_label(policy),
                "episodes": len(rows),
                "seeds": [seeds[0], seeds[-1]],
                "metrics": summarise(rows, size),
            }
        )
    bar.close()
    return results


# -- reports --------------------------------------------------------------------------------


def growth(results: list[dict[str, Any]], task: str, agent: str, small: int, large: int) -> dict[str, Any]:
    """Per policy, the ratio of mean peak tokens beyond the prompt at ``large`` vs ``small``, and
    at ``large`` each policy's mean peak (prompt included) against ``mem1``'s."""
    peaks = {
        (r["policy"], r["size"]): r["metrics"]
        for r in results
        if r["task"] == task and r["agent"] == agent and r["size"] in (small, large)
    }
    out: dict[str, Any] = {}
    for policy in dict.fromkeys(p for p, _ in peaks):
        if small != large and (policy, small) in peaks and (policy, large) in peaks:
            out[f"{policy}: beyond-prompt peak x{large}/x{small}"] = (
                peaks[policy, large]["peak_beyond_prompt"]["mean"]
                / peaks[policy, small]["peak_beyond_prompt"]["mean"]
            )
        if policy != "mem1" and (policy, large) in peaks and ("mem1", large) in peaks:
            out[f"{policy}/mem1: peak at {large}"] = (
                peaks[policy, large]["peak_context_tokens"]["mean"]
                / peaks["mem1", large]["peak_context_tokens"]["mean"]
            )
    return out


def _pm(metric: dict[str, float], digits: int = 2) -> str:
    return f"{metric['mean']:.{digits}f} ± {metric['se']:.{digits}f}"


def markdown(results: list[dict[str, Any]]) -> str:
    """One table: a row per configuration, mean ± standard error over episodes."""
    headers = [
        "task", "N", "agent", "policy", "episodes", "EM/N", "F1/N", "reward", "success", "turns",
        "peak tokens (min-max)", "peak beyond prompt", "mean ctx tokens/turn", "dependency",
        "ms/episode", "gen s/episode", "gen tokens/episode",
    ]  # fmt: skip
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in results:
        m = r["metrics"]
        qa = r["size_arg"] == "num_objectives"
        peak = m["peak_context_tokens"]
        llm = "generate_seconds" in m
        cells = [
            r["task"],
            str(r["size"]),
            r["agent"],
            r["policy"],
            str(r["episodes"]),
            _pm(m["em_per_objective"]) if qa else "-",
            _pm(m["f1_per_objective"]) if qa else "-",
            _pm(m["reward"]),
            "-" if qa else _pm(m["success"]),
            _pm(m["turns"], 1),
            f"{peak['mean']:,.0f} ({peak['min']:,.0f}-{peak['max']:,.0f})",
            _pm(m["peak_beyond_prompt"], 0),
            _pm(m["mean_context_tokens"], 0),
            f"{m['dependency']['mean']:,.0f}",
            f"{m['seconds']['mean'] * 1e3:.1f} ± {m['seconds']['se'] * 1e3:.1f}",
            _pm(m["generate_seconds"]) if llm else "-",
            _pm(m["generated_tokens"], 0) if llm else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the figures were measured on (times depend on it; token counts do not)."""
    import numpy

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "gymnasium": gym.__version__,
        "mem1_envs": mem1_envs.__version__,
    }


def plot(results: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One PNG per task and agent: peak tokens, dependency, EM (or reward) per objective and time
    per episode against the task size, a line per policy. Needs matplotlib (extra ``plot``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for task, agent in dict.fromkeys((r["task"], r["agent"]) for r in results):
        rows = [r for r in results if r["task"] == task and r["agent"] == agent]
        qa = rows[0]["size_arg"] == "num_objectives"
        panels = [
            ("peak_context_tokens", "peak context tokens", 1.0, True),
            ("dependency", "dependency (context x response tokens)", 1.0, True),
            ("em_per_objective" if qa else "reward", "EM per objective" if qa else "reward", 1.0, False),
            ("seconds", "wall time per episode (ms)", 1e3, True),
        ]
        figure, axes = plt.subplots(1, 4, figsize=(14, 3.2), dpi=80)
        for axis, (key, title, scale, log) in zip(axes, panels, strict=True):
            for policy in dict.fromkeys(r["policy"] for r in rows):
                line = [r for r in rows if r["policy"] == policy]
                x = [r["size"] for r in line]
                y = [r["metrics"][key]["mean"] * scale for r in line]
                err = [r["metrics"][key]["se"] * scale for r in line]
                axis.errorbar(x, y, yerr=err, marker="o", markersize=3, capsize=2, label=policy)
            axis.set_xscale("log", base=2)
            if log:
                axis.set_yscale("log")
            else:
                axis.set_ylim(-0.05, 1.05)  # a fraction of the objectives
            axis.set_xticks(x, [str(v) for v in x])
            axis.set_title(title, fontsize=9)
            axis.set_xlabel("objectives N" if qa else "items k", fontsize=8)
            axis.tick_params(labelsize=7)
            axis.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        env_id = rows[0]["env_id"]
        figure.suptitle(f"{env_id}, {agent} agent, mean ± s.e. over {rows[0]['episodes']} seeds", fontsize=10)
        figure.tight_layout()
        suffix = "" if agent == "scripted" else "_" + "".join(c if c.isalnum() else "-" for c in agent)
        path = out_dir / f"scaling_{task}{suffix}.png"
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memory_scaling.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", nargs="+", choices=list(TASKS), default=list(TASKS), help="tasks to sweep")
    parser.add_argument("--objectives", type=int, nargs="+", default=None, help="MultiQA sizes N")
    parser.add_argument("--items", type=int, nargs="+", default=None, help="shop list sizes k")
    parser.add_argument(
        "--memory", nargs="+", choices=list(POLICIES), default=list(POLICIES), help="context policies"
    )
    parser.add_argument("--episodes", type=int, default=20, help="episodes (seeds) per configuration")
    parser.add_argument("--seed", type=int, default=0, help="first episode seed")
    parser.add_argument("--world", choices=("default", "small"), default="default", help="MultiQA world")
    parser.add_argument("--no-scripted", action="store_true", help="only the --model agents")
    parser.add_argument(
        "--model", action="append", default=[], help="HF checkpoint or trained policy folder, or 'tiny'"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--max-new-tokens", type=int, default=256, help="LLM agents: tokens per turn")
    parser.add_argument("--out", default="runs/scaling", help="folder for scaling.md, .json and the plots")
    parser.add_argument("--no-plot", action="store_true", help="no PNG plots")
    parser.add_argument("--benchmarks-md", default=None, help="also write the generated section of this file")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: small world, N in 1 2 4, k in 1 2, 2 episodes"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = build_parser().parse_args(argv)
    for name in ("episodes", "max_new_tokens"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    sizes: dict[str, Sequence[int]] = {}
    if args.quick:
        args.world, args.episodes = "small", min(args.episodes, 2)
        sizes = {"multiqa": (1, 2, 4), "shop": (1, 2)}
    for name, given in (("multiqa", args.objectives), ("shop", args.items)):
        if given is not None:
            if min(given) < 1:
                raise SystemExit(f"sizes must be >= 1, got {given}")
            sizes[name] = tuple(given)
    tasks = [
        replace(t, env_kwargs={**t.env_kwargs, "world": args.world}) if t.name == "multiqa" else t
        for t in (TASKS[name] for name in args.task)
    ]
    agents = [] if args.no_scripted else [scripted_agent()]
    agents += [
        llm_agent(m, device=args.device, dtype=args.dtype, max_new_tokens=args.max_new_tokens)
        for m in args.model
    ]
    if not agents:
        raise SystemExit("--no-scripted needs at least one --model")
    before = machine()
    start = time.perf_counter()
    results = sweep(tasks, args.memory, agents, episodes=args.episodes, seed=args.seed, sizes=sizes)
    report = {
        "command": " ".join(
            ["python", "scripts/memory_scaling.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "seconds": time.perf_counter() - start,
        "growth": {
            f"{task.name}/{spec.label}": growth(
                results, task.name, spec.label, *_growth_sizes(results, task.name)
            )
            for task in tasks
            for spec in agents
        },
        "results": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(results)
    lines = [table, ""]
    for name, ratios in report["growth"].items():
        lines.append(f"- {name}: " + "; ".join(f"{k} = {v:.2f}x" for k, v in ratios.items()))
    lines.append(
        f"- load average {' '.join(map(str, before['load_average']))} before, "
        f"{' '.join(map(str, report['load_average_after']))} after, on {before['cores']} CPUs ({before['cpu']})"
    )
    text = "\n".join(lines) + "\n"
    (out / "scaling.md").write_text(text, encoding="utf-8")
    (out / "scaling.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(text)
    if not args.no_plot:
        try:
            for path in plot(results, out):
                print(f"plot: {path}")
        except ImportError:
            print(
                "plots skipped: matplotlib is not installed (pip install -c constraints.txt 'mem1-envs[plot]')"
            )
    if args.benchmarks_md:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_report import replace_section  # one writer of BENCHMARKS.md's generated sections

        command = f"Command: `{report['command']}` ({report['seconds']:.0f} s)."
        replace_section(
            Path(args.benchmarks_md), command + "\n\n" + text.rstrip("\n"), "scaling", "Memory scaling"
        )
        print(f"updated {args.benchmarks_md}")
    print(f"wrote {out / 'scaling.md'} and {out / 'scaling.json'}")
    return results


def _growth_sizes(results: list[dict[str, Any]], task: str) -> tuple[int, int]:
    """The sizes the growth ratios compare: 2 and 16 (MEM1's), else 2 (or the smallest) and the largest."""
    sizes = sorted({r["size"] for r in results if r["task"] == task})
    if 2 in sizes and 16 in sizes:
        return 2, 16
    small = 2 if 2 in sizes and sizes[-1] > 2 else sizes[0]
    return small, sizes[-1]


if __name__ == "__main__":
    main()
