"""The reference policy learns MultiQA from scratch, and the MEM1 effect in miniature (CPU).

    python scripts/reproduce_mem1.py --out runs/mem1-repro                  # all three phases
    python scripts/reproduce_mem1.py --out runs/quick --quick               # the test's short version
    python scripts/evaluate.py --agent hf --model runs/mem1-repro/ppo/policy --greedy --episodes 64

A from-scratch Qwen2-shaped model (``agents.tiny_model``, built offline, no download) with a
*word-level* tokenizer (every word of the small world is one token, byte fallback kept):

1. **SFT** (``agents.sft``): behaviour cloning of the scripted agent (its ``chained`` state,
   which names no question by number) on ``split="train"`` episodes at 1 objective, the exact
   packed masks, loss on generated tokens only. Held-out EM on ``split="test"`` questions,
   greedy and sampled (temperature 1).
2. **PPO** (``agents.ppo.PPOTrainer``) from that start on the environment's own reward
   (EM, invalid action = 0 and the episode ends); KL to the SFT policy, rollout-vs-train
   log-prob gap and entropy are logged every step; held-out EM before, during and after.
3. **Scaling**: SFT from the 1-objective checkpoint on episodes of ``scale_train_objectives``
   (2: MEM1's setting) under the ``mem1`` context and, separately, under ``full``; each
   evaluated at N = 1, 2, 4, 8 objectives in its own context: EM per objective and peak
   context tokens.

Writes under ``--out``: ``sft/`` and ``ppo/policy/`` (``save_pretrained`` folders that
``scripts/evaluate.py --agent hf --model`` loads), ``scale-mem1/``, ``scale-full/``, per-step
JSONL logs (``*.jsonl``; TensorBoard too when installed), ``results.json`` and PNG plots
(``plots/``, when matplotlib is installed). Nothing under ``--out`` is meant to be committed.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reproduce_plots import plot
from reproduce_recipe import QUICK, Recipe

EVAL_SEED = 10**9


def env_kwargs(
    recipe: Recipe,
    objectives: int,
    memory: str,
    split: str,
    world_seed: int = 0,
    phase: str | None = None,
) -> dict[str, Any]:
    """The environment of every phase: a small world, its default rules and rewards.

    ``phase`` ``"sft"`` or ``"ppo"``: only that phase's share of the training questions."""
    split_here = phase is not None and recipe.ppo_share and world_seed == 0
    ids = training_questions(recipe)[phase] if split_here else None
    return {
        "question_ids": ids,
        "question_kinds": recipe.question_kinds,
        "world": "small",
        "world_seed": world_seed,
        "num_objectives": objectives,
        "memory": memory,
        "split": split,
    }


def training_questions(recipe: Recipe) -> dict[str, tuple[str, ...]]:
    """World 0's training question ids (of the recipe's kinds), shuffled once and cut in two:
    ``"ppo"`` (a ``ppo_share`` of them) and ``"sft"`` (the rest)."""
    import gymnasium as gym
    import numpy as np

    import mem1_envs  # noqa: F401 - registers the env ids

    env = gym.make("MEM1-MultiQA-v0", world="small", split="train", question_kinds=recipe.question_kinds)
    ids = [
        env.unwrapped.questions[i].qid
        for i in np.random.default_rng(0).permutation(len(env.unwrapped.questions))
    ]
    env.close()
    cut = round(recipe.ppo_share * len(ids))
    return {"ppo": tuple(ids[:cut]), "sft": tuple(ids[cut:])}


def base_model(recipe: Recipe, seed: int) -> str:
    from agents.tiny_model import default_tiny_model

    return default_tiny_model(
        word_level=recipe.word_level,
        vocab_size=recipe.vocab_size,
        extra_world_seeds=tuple(range(1, recipe.worlds)),
        hidden_size=recipe.hidden_size,
        intermediate_size=3 * recipe.hidden_size,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        num_key_value_heads=recipe.heads,
        seed=seed,
    )


def evaluate(
    model: Any,
    tokenizer: Any,
    objectives: int,
    memory: str,
    episodes: int,
    *,
    greedy: bool,
    seed: int,
    recipe: Recipe,
    max_new_tokens: int | None = None,
) -> dict[str, float]:
    """Held-out EM per objective, reward and peak context of one setting: ``episodes`` per world
    (at 1 objective, 0 = every question once) on the ``split="test"`` questions of worlds
    ``0 .. recipe.eval_worlds - 1``; ``max_new_tokens`` per turn (default the recipe's)."""
    import gymnasium as gym
    import numpy as np

    import mem1_envs  # noqa: F401 - registers the env ids
    from agents.llm_policy import GenerationConfig, LLMPolicy
    from agents.rollout import collect

    policy = LLMPolicy(
        model,
        tokenizer,
        generation=GenerationConfig(
            max_new_tokens=max_new_tokens or recipe.max_new_tokens, do_sample=not greedy
        ),
    )
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    done = []
    for world in range(recipe.eval_worlds):
        kwargs = env_kwargs(recipe, objectives, memory, "test", world)
        envs = [gym.make("MEM1-MultiQA-v0", **kwargs) for _ in range(16)]
        options = None
        if objectives == 1:  # the test questions in order, none drawn twice by chance
            questions = envs[0].unwrapped.questions[: episodes or None]
            options = [{"question_ids": [question.qid]} for question in questions]
        seeds = list(range(EVAL_SEED, EVAL_SEED + (len(options) if options else episodes)))
        done += collect(envs, policy, seeds, options=options, generation_seed=seed + world)
        for env in envs:
            env.close()
    model.train(was_training)
    return {
        "em_per_objective": float(np.mean([e.em for e in done])) / objectives,
        "reward": float(np.mean([e.reward for e in done])),
        "f1_per_objective": float(np.mean([e.f1 for e in done])) / objectives,
        "peak_context_tokens": float(np.mean([e.info["peak_context_tokens"] for e in done])),
        "peak_context_tokens_max": float(np.max([e.info["peak_context_tokens"] for e in done])),
        "peak_model_tokens": float(np.mean([e.peak_model_tokens for e in done])),
        "turns": float(np.mean([e.turns for e in done])),
        "episodes": float(len(done)),
        "seconds": time.perf_counter() - start,
    }


def scripted_agent(state: str) -> Any:
    """``env -> agent``: the scripted MultiQA agent writing its state in format ``state``."""
    from agents.scripted import MultiQAScriptedAgent

    return functools.partial(MultiQAScriptedAgent.for_env, state=state)


def heldout_nll(
    model: Any, tokenizer: Any, objectives: int, memory: str, episodes: int, recipe: Recipe
) -> float:
    """Teacher-forced NLL per generated token of the scripted agent's held-out episodes.

    A continuous measure of what SFT learnt on ``split="test"`` questions (the same exact packed
    forward as training), informative where EM is still 0.
    """
    import torch

    from agents.llm_policy import LLMPolicy
    from agents.ppo.model import ActorCritic
    from agents.sft import scripted_records
    from mem1_envs.trajectory_torch import collate

    policy = LLMPolicy(model, tokenizer)
    seeds = range(EVAL_SEED, EVAL_SEED + episodes)
    records, _ = scripted_records(
        policy,
        env_kwargs(recipe, objectives, memory, "test"),
        seeds,
        agent_for=scripted_agent(recipe.scripted_state),
    )
    scorer = ActorCritic(model, critic="none")
    total, count = 0.0, 0.0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(records), 8):
            batch = collate([r.pack() for r in records[start : start + 8]])
            total -= float((scorer(batch)["logprobs"] * batch["loss_mask"]).sum())
            count += float(batch["loss_mask"].sum())
    model.train(was_training)
    return total / max(count, 1.0)


def both_decodings(
    model: Any, tokenizer: Any, objectives: int, memory: str, episodes: int, seed: int, recipe: Recipe
) -> dict:
    return {
        name: evaluate(
            model,
            tokenizer,
            objectives,
            memory,
            episodes,
            greedy=name == "greedy",
            seed=seed,
            recipe=recipe,
        )
        for name in ("greedy", "sampled")
    }


def sft_phase(
    recipe: Recipe,
    out: str,
    name: str,
    objectives: tuple[int, ...],
    memory: str,
    episodes: int,
    seed: int,
    progress: bool,
    init: str | None = None,
    minutes: float | None = None,
    lr: float | None = None,
) -> tuple[Any, dict]:
    """Behaviour cloning into ``out/name`` (a ``save_pretrained`` folder); per-step JSONL beside it.

    ``objectives``: the scripted episodes are spread evenly over these counts (and over the
    recipe's worlds); the held-out measures during training use the first count.
    ``init``: a checkpoint to start from (a curriculum step) instead of the random base model.
    """
    import torch

    from agents.llm_policy import LLMPolicy
    from agents.ppo.metrics import MetricsLogger
    from agents.sft import scripted_records, sft_train

    start = time.perf_counter()
    torch.manual_seed(seed)
    policy = LLMPolicy.from_pretrained(init or base_model(recipe, seed))
    # Training seeds never overlap the evaluation seeds; questions come from the train split,
    # spread evenly over the recipe's worlds and objective counts (sft_train shuffles them).
    records, rewards = [], []
    settings = [(world, n) for world in range(recipe.worlds) for n in objectives]
    for index, (world, n) in enumerate(settings):
        first = seed * 10**6 + index * episodes
        world_records, world_rewards = scripted_records(
            policy,
            env_kwargs(recipe, n, memory, "train", world, phase="sft"),
            range(first, first + len(range(index, episodes, len(settings)))),
            agent_for=scripted_agent(recipe.scripted_state),
        )
        records += world_records
        rewards += world_rewards
    records = rename_share(records, recipe, policy.tokenizer, seed)
    collect_seconds = time.perf_counter() - start
    nll_start = heldout_nll(
        policy.model, policy.tokenizer, objectives[0], memory, recipe.sft_eval_episodes, recipe
    )
    folder = os.path.join(out, name)
    logger = MetricsLogger(os.path.join(out, f"{name}-log"))
    clock = time.perf_counter()

    def on_step(step: int, metrics: dict[str, float]) -> bool:
        metrics = {**metrics, "seconds": time.perf_counter() - clock}
        if recipe.sft_eval_every and step % recipe.sft_eval_every == 0:
            point = evaluate(
                policy.model,
                policy.tokenizer,
                objectives[0],
                memory,
                recipe.sft_eval_episodes,
                greedy=True,
                seed=seed,
                recipe=recipe,
            )
            metrics["heldout_em_greedy"] = point["em_per_objective"]
            print(
                f"  {name} step {step}: loss {metrics['loss']:.3f}, held-out EM (greedy, {recipe.sft_eval_episodes} episodes) {point['em_per_objective']:.3f}",
                flush=True,
            )
        logger.log(step, metrics)
        return metrics["seconds"] > 60 * (recipe.sft_minutes if minutes is None else minutes)

    losses = sft_train(
        policy.model,
        records,
        lr=recipe.sft_lr if lr is None else lr,
        batch_episodes=recipe.sft_batch,
        seed=seed,
        warmup_steps=recipe.sft_warmup,
        progress=progress,
        on_step=on_step,
    )
    logger.close()
    policy.model.save_pretrained(folder)
    policy.tokenizer.save_pretrained(folder)
    packed_tokens = sum(len(r.pack()) for r in records[:200]) / min(len(records), 200)
    summary = {
        "heldout_nll_start": nll_start,
        "heldout_nll": heldout_nll(
            policy.model, policy.tokenizer, objectives[0], memory, recipe.sft_eval_episodes, recipe
        ),
        "episodes": episodes,
        "episodes_trained": min(episodes, len(losses) * recipe.sft_batch),
        "scripted_reward": sum(rewards) / len(rewards),
        "steps": len(losses),
        "first_loss": losses[0],
        "final_loss": float(sum(losses[-10:]) / len(losses[-10:])),
        "packed_tokens_per_episode": packed_tokens,
        "collect_seconds": collect_seconds,
        "train_seconds": time.perf_counter() - clock,
        "folder": folder,
    }
    return policy, summary


def ppo_env_kwargs(recipe: Recipe, group: int) -> dict[str, Any]:
    """The environment of PPO's rollout group ``group``: one world per group, the worlds in turn."""
    if recipe.ppo_questions == "unseen":  # worlds 1.., test split: questions no other phase sees
        return env_kwargs(recipe, 1, "mem1", "test", 1 + group % (recipe.worlds - 1))
    return env_kwargs(recipe, 1, "mem1", "train", group % recipe.worlds)


def ppo_phase(recipe: Recipe, out: str, sft_folder: str, seed: int, progress: bool) -> tuple[Any, dict]:
    """Masked PPO from the SFT checkpoint; held-out evaluations every ``ppo_eval_every`` steps."""
    from agents.ppo.config import preset
    from agents.ppo.trainer import PPOTrainer

    kwargs = env_kwargs(recipe, 1, "mem1", "train", phase="ppo")
    group = {"advantage": recipe.ppo_advantage, "group_size": recipe.ppo_group}
    if recipe.ppo_advantage in ("grpo", "gigpo"):  # KL in the loss: it must not enter group returns
        group.update(critic="none", kl_mode="k3_loss")
    config = preset(
        "tiny-cpu",
        **group,
        env_kwargs=tuple(kwargs.items()),
        num_envs=16,
        episodes_per_step=recipe.ppo_episodes,
        ppo_epochs=recipe.ppo_epochs,
        mini_batch_episodes=recipe.ppo_mini_batch,
        micro_batch_episodes=16,
        max_new_tokens=recipe.max_new_tokens,
        temperature=recipe.ppo_temperature,
        entropy_coef=recipe.ppo_entropy_coef,
        total_steps=recipe.ppo_steps,
        actor_lr=recipe.actor_lr,
        critic_lr=recipe.critic_lr,
        seed=seed,
        out_dir=os.path.join(out, "ppo"),
        save_every=10**6,
        device="cpu",
        progress=progress,
    )
    trainer = PPOTrainer(config, policy_path=sft_folder)
    if recipe.worlds > 1 and not recipe.ppo_share:
        # Rollouts from several worlds (the trainer plays the envs it holds), so that PPO, like
        # SFT, cannot profit from memorising one world's facts. Episode i of a wave plays on
        # env i and a group's rollouts are consecutive: one world per group.
        import gymnasium as gym

        for env in trainer.envs:
            env.close()
        trainer.envs = [
            gym.make(config.env_id, **ppo_env_kwargs(recipe, i // recipe.ppo_group))
            for i in range(config.num_envs)
        ]
    if recipe.ppo_rename_share:
        from agents.rename import RenamedNames, name_roles

        roles = name_roles(training_worlds(recipe))
        trainer.envs = [RenamedNames(env, roles, recipe.ppo_rename_share, seed) for env in trainer.envs]
    start = time.perf_counter()
    curve = []
    history = []

    def point() -> None:
        result = both_decodings(
            trainer.core.policy, trainer.tokenizer, 1, "mem1", recipe.eval_episodes, seed, recipe
        )
        curve.append(
            {"ppo_step": trainer.step, **{f"{k}_em": v["em_per_objective"] for k, v in result.items()}}
        )
        print(
            f"  ppo step {trainer.step}: held-out EM greedy {curve[-1]['greedy_em']:.3f} sampled {curve[-1]['sampled_em']:.3f}",
            flush=True,
        )

    point()
    while trainer.step < recipe.ppo_steps and time.perf_counter() - start < 60 * recipe.ppo_minutes:
        history += trainer.train(stop_after=1)
        out_of_time = time.perf_counter() - start >= 60 * recipe.ppo_minutes
        if trainer.step % recipe.ppo_eval_every == 0 or trainer.step == recipe.ppo_steps or out_of_time:
            point()
    folder = trainer.save_policy()
    trainer.close()
    summary = {
        "steps": trainer.step,
        "curve": curve,
        "seconds": time.perf_counter() - start,
        "folder": folder,
        "metrics_jsonl": os.path.join(out, "ppo", "metrics.jsonl"),
        "final_kl": history[-1]["kl"],
        "final_logprob_gap": history[-1]["logprob_gap"],
        "final_entropy": history[-1]["entropy"],
    }
    return trainer, summary


def training_worlds(recipe: Recipe) -> list[Any]:
    """The small worlds of the recipe's training questions (seeds ``0 .. worlds - 1``)."""
    from mem1_envs.qa.world import WORLD_SIZES, generate_world

    return [generate_world(WORLD_SIZES["small"], w) for w in range(recipe.worlds)]


def rename_share(records: list, recipe: Recipe, tokenizer: Any, seed: int) -> list:
    """``records`` with a ``sft_rename_share`` of them (drawn with ``seed``) renamed."""
    import numpy as np

    from agents.rename import name_roles, name_token_ids, rename_record

    if not recipe.sft_rename_share:
        return records
    groups = [name_token_ids(tokenizer, role) for role in name_roles(training_worlds(recipe))]
    rng = np.random.default_rng(seed)
    chosen = rng.random(len(records)) < recipe.sft_rename_share
    print(
        f"  renaming {int(chosen.sum())} of {len(records)} episodes over {sum(map(len, groups))} name tokens "
        f"in {len(groups)} roles",
        flush=True,
    )
    return [rename_record(r, groups, rng) if pick else r for r, pick in zip(records, chosen, strict=True)]


def scale_run(recipe: Recipe, out: str, memory: str, seed: int, threads: int, progress: bool) -> dict:
    """The scaling phase in one context: SFT from the 1-objective checkpoint (a curriculum: the
    task skill goes on at more objectives), then greedy held-out EM and peak context at every N."""
    import torch

    torch.set_num_threads(threads)
    policy, summary = sft_phase(
        dataclasses.replace(recipe, sft_rename_share=recipe.scale_rename_share),
        out,
        f"scale-{memory}",
        recipe.scale_train_objectives,
        memory,
        recipe.scale_sft_episodes,
        seed + 1,
        progress,
        init=os.path.join(out, "sft"),
        minutes=recipe.scale_minutes,
        lr=recipe.scale_lr,
    )
    table = {}
    for n in recipe.scale_objectives:
        table[str(n)] = evaluate(
            policy.model,
            policy.tokenizer,
            n,
            memory,
            recipe.scale_eval_episodes,
            greedy=True,
            seed=seed,
            recipe=recipe,
            max_new_tokens=recipe.scale_max_new_tokens,
        )
        print(
            f"  {memory} N={n}: EM/objective {table[str(n)]['em_per_objective']:.3f}, peak context {table[str(n)]['peak_context_tokens']:.0f} tokens",
            flush=True,
        )
    return {"train": summary, "table": table}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/mem1-repro")
    parser.add_argument(
        "--phases", nargs="+", default=["sft", "ppo", "scale"], choices=["sft", "ppo", "scale"]
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="the short version the tests run")
    # Every core by default: alone on 2 cores, 2 threads run SFT 1.55x faster than 1 (BENCHMARKS.md).
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads of SFT and PPO"
    )
    parser.add_argument("--progress", action="store_true", help="tqdm bars")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a Recipe field")
    parser.add_argument("--plot-only", action="store_true", help="redraw the plots from --out/results.json")
    args = parser.parse_args(argv)
    if args.threads < 1:
        raise SystemExit(f"--threads must be at least 1, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)
    changes: dict[str, Any] = dict(QUICK) if args.quick else {}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in Recipe.__dataclass_fields__:
            raise SystemExit(f"--set: unknown recipe field {key!r}")
        kind = type(getattr(Recipe(), key))
        if kind is bool and value.lower() not in ("true", "false"):
            raise SystemExit(f"--set: {key} must be true or false, got {value!r}")
        changes[key] = (
            tuple(v if isinstance(getattr(Recipe(), key)[0], str) else int(v) for v in value.split(","))
            if kind is tuple
            else value.lower() == "true"
            if kind is bool
            else kind(value)
        )
    try:
        recipe = Recipe(**changes)
    except ValueError as error:
        raise SystemExit(f"--set: {error}") from None
    os.makedirs(args.out, exist_ok=True)
    results_path = os.path.join(args.out, "results.json")
    if args.plot_only:
        with open(results_path, encoding="utf-8") as handle:
            print(plot(args.out, json.load(handle)))
        return {}
    results: dict[str, Any] = {"recipe": recipe.__dict__, "seed": args.seed, "threads": args.threads}
    if os.path.exists(results_path):
        with open(results_path, encoding="utf-8") as handle:
            results = {**json.load(handle), **results}
    results["load_average_start"] = os.getloadavg()

    def save() -> None:
        with open(results_path, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1, default=str)

    start = time.perf_counter()
    if "sft" in args.phases:
        print(f"[1/3] SFT at 1 objective, {recipe.sft_episodes} scripted episodes", flush=True)
        policy, summary = sft_phase(
            recipe, args.out, "sft", (1,), "mem1", recipe.sft_episodes, args.seed, args.progress
        )
        summary["eval"] = both_decodings(
            policy.model, policy.tokenizer, 1, "mem1", recipe.eval_episodes, args.seed, recipe
        )
        results["sft"] = summary
        save()
        print(
            f"  SFT {summary['train_seconds']:.0f} s, loss {summary['first_loss']:.2f} -> {summary['final_loss']:.3f}; "
            f"held-out EM greedy {summary['eval']['greedy']['em_per_objective']:.3f} sampled {summary['eval']['sampled']['em_per_objective']:.3f}",
            flush=True,
        )
    if "ppo" in args.phases:
        print(
            f"[2/3] PPO from the SFT start, {recipe.ppo_steps} steps of {recipe.ppo_episodes} episodes",
            flush=True,
        )
        _, summary = ppo_phase(recipe, args.out, os.path.join(args.out, "sft"), args.seed, args.progress)
        results["ppo"] = summary
        save()
    if "scale" in args.phases:
        print(
            f"[3/3] SFT at N = {recipe.scale_train_objectives} under mem1 and under full, side by side, "
            f"evaluated at N = {recipe.scale_objectives}",
            flush=True,
        )
        contexts = ("mem1", "full")
        # One process per context: the two runs are independent, and with 2 cores each gets one
        # for its whole wall-time budget. Spawned, so no torch state is forked.
        threads = max(1, args.threads // len(contexts))
        with ProcessPoolExecutor(len(contexts), mp_context=multiprocessing.get_context("spawn")) as pool:
            jobs = {
                memory: pool.submit(scale_run, recipe, args.out, memory, args.seed, threads, args.progress)
                for memory in contexts
            }
            runs = {memory: job.result() for memory, job in jobs.items()}
        results["scale_train"] = {memory: run["train"] for memory, run in runs.items()}
        results["scale"] = {memory: run["table"] for memory, run in runs.items()}
        save()
    results["seconds"] = time.perf_counter() - start
    results["load_average_end"] = os.getloadavg()
    results["plots"] = plot(args.out, results)
    save()
    return results


if __name__ == "__main__":
    main()
