"""A complete env on the contract (mem1_envs.base_env), run through every tool the suite has."""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from typing import Any

import pytest
from gymnasium import spaces

from mem1_envs import protocol as proto
from mem1_envs.base_env import BoundedMemoryEnv
from mem1_envs.memory import POLICIES, Turn, check_memory, make_token_counter
from mem1_envs.registry import find_part, register_parts
from mem1_envs.trajectory import pack_exact
from mem1_envs.validation import check_int
from wrappers.candidate_actions import CandidateActions
from wrappers.candidates_multiqa import Candidate

# -- the env: everything a new env needs (config, task, agent, candidates, registration) --

PROMPT = (
    "Guess my number, 0 to 99. Write <think>notes</think>, then <search>n</search> or <answer>n</answer>."
)


@dataclass(frozen=True)
class GuessConfig:
    max_turns: int = 8
    memory: Any = "mem1"
    window: int = 2
    max_context_tokens: int = 200
    token_counter: Any = None

    def __post_init__(self) -> None:
        check_int("max_turns", self.max_turns, minimum=1)
        check_memory(self.memory)
        check_int("window", self.window, minimum=1)
        check_int("max_context_tokens", self.max_context_tokens, minimum=1)
        make_token_counter(self.token_counter)


class GuessEnv(BoundedMemoryEnv):
    env_id = "Toy-Guess-v0"
    config_class = GuessConfig

    def __init__(self, render_mode: str | None = None, **kwargs: Any):
        self._configure(render_mode, kwargs)
        self.observation_space = spaces.Text(proto.MAX_OBSERVATION_CHARS, charset=proto.ASCII_CHARSET)
        self.action_space = spaces.Text(1000, charset=proto.ASCII_CHARSET)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self.secret, self.turns = int(self.np_random.integers(100)), []
        self.start_episode(PROMPT, "raise it")
        context, info = self.observe(self.prompt, self.turns, 0)
        return context.text, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        match = re.search(r"<(search|answer)>\s*(\d{1,3})\s*</\1>", action)
        state = re.search(r"<think>(.*?)</think>", action)
        kind, guess = (match.group(1), int(match.group(2))) if match else ("invalid", -1)
        hint = "higher" if guess < self.secret else "lower" if guess > self.secret else "equal"
        reply = f"<information>{hint if match else 'invalid'}</information>"
        action_block = match.group(0) if match else ""
        self.turns.append(Turn(f"<think>{state.group(1) if state else ''}</think>", action_block, reply))
        terminated = kind == "answer"
        truncated = not terminated and len(self.turns) >= self.config.max_turns
        context, info = self.observe(self.prompt, self.turns, self.count_tokens(action))
        return context.text, float(terminated and guess == self.secret), terminated, truncated, info


class Bisect:
    """The scripted agent: its bounds live in its own notes (all it sees of the past under mem1)."""

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observation: str, info: dict[str, Any]) -> str:
        notes = re.findall(r"<think>(\d+) (\d+) (\d+)</think>", observation) or [(0, 99, -1)]
        low, high, last = map(int, notes[-1])
        hint = (re.findall(r"<information>(\w+)</information>", observation) or ["none"])[-1]
        if hint == "equal":
            return f"<think>{low} {high} {last}</think><answer>{last}</answer>"
        low, high = (
            (last + 1, high) if hint == "higher" else (low, last - 1) if hint == "lower" else (low, high)
        )
        return f"<think>{low} {high} {(low + high) // 2}</think><search>{(low + high) // 2}</search>"


def candidates(env: GuessEnv, k: int) -> Any:  # the candidate generator: the agent's move first
    return lambda observation: [Candidate("act", Bisect().act(observation, {}), "bisect")] + [None] * (k - 1)


register_parts("Toy-Guess-v0", candidates=candidates, scripted_agent=lambda env: Bisect())
# -- the checks -------------------------------------------------------------------------------


def play(env: Any, agent: Any, seed: int) -> tuple[float, dict[str, Any]]:
    observation, info = env.reset(seed=seed)
    agent.reset(seed)
    done, total = False, 0.0
    while not done:
        observation, reward, terminated, truncated, info = env.step(agent.act(observation, info))
        total, done = total + reward, terminated or truncated
    return total, info


def test_toy_env_passes_gymnasiums_checker_and_pickles():
    from gymnasium.utils.env_checker import check_env

    check_env(GuessEnv(), skip_render_check=True)
    env = GuessEnv(render_mode="ansi")
    observation, info = env.reset(seed=3)
    assert info["prompt"] == PROMPT and observation == PROMPT == env.render()
    env.step("<think>0 99 49</think><search>49</search>")
    copy = pickle.loads(pickle.dumps(env))
    assert copy.step("<search>7</search>")[4] == env.step("<search>7</search>")[4]


def test_registered_scripted_agent_solves_it_under_every_policy():
    peaks = {}
    for memory in POLICIES:
        env = GuessEnv(memory=memory)
        agent = find_part(env, "scripted_agent")(env)
        results = [play(env, agent, seed) for seed in range(5)]
        assert [reward for reward, _ in results] == [1.0] * 5, memory
        assert all(info["dependency"] > 0 for _, info in results)
        peaks[memory] = max(info["peak_context_tokens"] for _, info in results)
    assert peaks["mem1"] < peaks["window"] < peaks["full"]


def test_evaluate_script_takes_the_registered_toy_without_an_edit(capsys):
    # The env id, its scripted agent and its config fields all come from the registries.
    import gymnasium as gym
    from script_import import load_script

    gym.register("Toy-Guess-v0", entry_point=GuessEnv)
    try:
        evaluate = load_script("evaluate")
        argv = [
            "--env",
            "Toy-Guess-v0",
            "--episodes",
            "3",
            "--memory",
            "mem1",
            "full",
            "--env-arg",
            "window=1",
        ]
        results = evaluate.main([*argv, "--max-turns", "9", "--world", "small"])  # world: not a toy field
        assert [r["env_kwargs"] for r in results] == [
            {"memory": memory, "max_turns": 9, "window": 1} for memory in ("mem1", "full")
        ]
        assert all(r["metrics"]["reward"] == 1.0 for r in results)  # the bisecting agent always wins
        with pytest.raises(SystemExit):
            evaluate.main(["--env", "Toy-Guess-v0", "--env-arg", "window=0"])
        assert "--env-arg: window must be >= 1, got 0" in capsys.readouterr().err
    finally:
        del gym.registry["Toy-Guess-v0"]


def test_candidate_wrapper_finds_the_registered_generator():
    env = CandidateActions(GuessEnv(), num_candidates=4)
    env.reset(seed=1)
    assert env.action_masks().tolist() == [True, False, False, False]
    done, reward = False, 0.0
    while not done:
        _, reward, terminated, truncated, info = env.step(0)
        done = terminated or truncated
    assert reward == 1.0 and info["candidate"] == "bisect"


@pytest.mark.train
def test_llm_rollout_collects_packable_records():
    pytest.importorskip("transformers")
    from agents.llm_policy import GenerationConfig, LLMPolicy
    from agents.rollout import collect
    from agents.tiny_model import default_tiny_model

    policy = LLMPolicy.from_pretrained(default_tiny_model(), generation=GenerationConfig(max_new_tokens=6))
    episodes = collect(
        [GuessEnv(max_turns=3), GuessEnv(max_turns=3)], policy, seeds=[0, 1], generation_seed=0
    )
    for episode in episodes:
        turns = [(t.context_ids, t.generated_ids) for t in episode.record.turns]
        packed = pack_exact(episode.record.prompt_ids, turns)
        assert int(packed.loss_mask.sum()) == sum(len(g) for _, g in turns) > 0
