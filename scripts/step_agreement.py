"""Which step of the scripted agent a checkpoint fails: its turns on the scripted agent's own path.

    python scripts/step_agreement.py runs/mem1-repro/scale-mem1 --objectives 2 4 8 --episodes 16

Held-out EM says *that* a policy trained by ``scripts/reproduce_mem1.py`` fails at N objectives,
not *where*. Here the scripted agent (``chained`` state) plays each held-out episode under the
``mem1`` context, and at every one of its turns the checkpoint (greedy) writes its own action for
the same observation; one wrong turn then costs that turn only. Turns are sorted by what the
scripted state's ``now=`` (the question being worked on) does there:

- ``first``: the first turn, which copies the first question from the prompt into ``now=``;
- ``move``: ``now=`` becomes the next question (copied from the prompt after the previous one);
- ``stay``: ``now=`` is kept (the second search of a comparison copies it from the last state);
- ``answer``: the final turn, which writes every answer.

Per kind: turns, how many the checkpoint writes exactly, how many have the scripted ``now=``,
and how many instead have a *training* question in ``now=`` (recalled, not copied).

>>> kind_of("<think>done=1939 | now=Who directed X?</think>", previous="In what year was Y born?")
'move'
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reproduce_mem1 import EVAL_SEED, env_kwargs, scripted_agent
from reproduce_recipe import Recipe

KINDS = ("first", "move", "stay", "answer")


def now_of(action: str) -> str | None:
    """The ``now=`` value of an action's state, read as the scripted agent reads its own state
    (its last ``<think>`` block), or None when the state has none."""
    from agents.scripted import MultiQAScriptedAgent

    return MultiQAScriptedAgent(state="chained")._read_state(action).get("now")


def kind_of(action: str, previous: str | None) -> str:
    """The kind of a scripted turn, given the ``now=`` of the scripted turn before (None: first)."""
    now = now_of(action)
    if now is None:
        return "answer"
    return "first" if previous is None else "move" if now != previous else "stay"


def training_question_texts(recipe: Recipe) -> set[str]:
    """Every training question of the recipe's worlds (the text a policy may have memorised)."""
    import gymnasium as gym

    questions: set[str] = set()
    for world in range(recipe.worlds):
        env = gym.make("MEM1-MultiQA-v0", **env_kwargs(recipe, 1, "mem1", "train", world))
        questions |= {question.text for question in env.unwrapped.questions}
        env.close()
    return questions


def step_agreement(
    act: Callable[[str, str], str],
    objectives: int,
    episodes: int,
    recipe: Recipe,
    trained: Iterable[str] = (),
) -> dict[str, dict[str, int]]:
    """Per kind of turn: ``turns``, ``exact``, ``now_right``, ``now_trained`` (module docstring).

    ``act(prompt, observation)`` is the checkpoint's action for one observation.
    """
    import gymnasium as gym

    import mem1_envs  # noqa: F401 - registers the env ids

    trained = set(trained)
    env = gym.make("MEM1-MultiQA-v0", **env_kwargs(recipe, objectives, "mem1", "test", 0))
    agent = scripted_agent("chained")(env)
    counts: dict[str, collections.Counter] = {kind: collections.Counter() for kind in KINDS}
    for episode in range(episodes):
        observation, info = env.reset(seed=EVAL_SEED + episode)
        prompt, previous, finished = info["prompt"], None, False
        while not finished:
            scripted = agent.act(observation, info)
            mine = act(prompt, observation)
            kind = kind_of(scripted, previous)
            count = counts[kind]
            count["turns"] += 1
            count["exact"] += mine.strip() == scripted.strip()
            target, written = now_of(scripted), now_of(mine)
            count["now_right"] += target is not None and written == target
            count["now_trained"] += written != target and written in trained
            previous = target or previous
            observation, _, terminated, truncated, info = env.step(scripted)
            finished = terminated or truncated
    env.close()
    return {kind: dict(count) for kind, count in counts.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="a save_pretrained folder (sft/, scale-mem1/, ...)")
    parser.add_argument("--objectives", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--episodes", type=int, default=16, help="held-out episodes per N")
    parser.add_argument("--max-new-tokens", type=int, default=Recipe().scale_max_new_tokens)
    args = parser.parse_args(argv)
    if min(args.objectives) < 1 or args.episodes < 1:
        parser.error(f"--objectives and --episodes must be >= 1, got {args.objectives} and {args.episodes}")
    if not os.path.isdir(args.model):
        parser.error(f"model folder not found: {args.model!r}")
    from agents.llm_policy import GenerationConfig, LLMPolicy

    policy = LLMPolicy.from_pretrained(
        args.model, generation=GenerationConfig(max_new_tokens=args.max_new_tokens, do_sample=False)
    )

    def act(prompt: str, observation: str) -> str:
        return policy.generate([policy.encode(prompt, observation)])[0].text

    recipe = Recipe()
    trained = training_question_texts(recipe)
    table = {}
    for n in args.objectives:
        table[n] = step_agreement(act, n, args.episodes, recipe, trained)
        cells = (
            f"{kind} {c.get('now_right', 0)}/{c.get('turns', 0)} now right ({c.get('exact', 0)} exact, "
            f"{c.get('now_trained', 0)} a training question)"
            for kind, c in table[n].items()
            if c
        )
        print(f"N={n}: " + "; ".join(cells), flush=True)
    print(json.dumps(table))
    return table


if __name__ == "__main__":
    main()
