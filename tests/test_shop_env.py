"""MEM1-WebShop-v0: Gymnasium conventions, bounded context, paging, invalid actions."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import mem1_envs  # noqa: F401  (registers the ids)
from agents.scripted_shop import WebShopScriptedAgent
from mem1_envs.memory import count_tokens
from mem1_envs.shop.episode import split_screens
from mem1_envs.shop.text_env import WebShopTextEnv

SMALL = {"n_products": 3000}


def act(action: str, memory: str = "m") -> str:
    return f"<summary>{memory}</summary><answer>{action}</answer>"


def play(env, agent, seed):
    observation, info = env.reset(seed=seed)
    agent.reset(seed)
    trace = [observation]
    done = False
    while not done:
        observation, reward, terminated, truncated, info = env.step(agent.act(observation, info))
        trace.append((observation, reward, terminated, truncated, info))
        done = terminated or truncated
    return trace


def test_env_checker_passes():
    for kwargs in ({}, {"n_items": 3}, {"instruction": "first", "memory": "full"}):
        check_env(gym.make("MEM1-WebShop-v0", **SMALL, **kwargs).unwrapped, skip_render_check=True)


def test_same_seed_same_episode():
    agent = WebShopScriptedAgent()
    a = play(gym.make("MEM1-WebShop-v0", **SMALL), agent, 11)
    b = play(gym.make("MEM1-WebShop-v0", **SMALL), agent, 11)
    assert a == b
    c = play(gym.make("MEM1-WebShop-v0", **SMALL), agent, 12)
    assert a[0] != c[0]


def test_pickled_env_continues_identically():
    env = WebShopTextEnv(**SMALL)
    agent = WebShopScriptedAgent()
    observation, info = env.reset(seed=3)
    observation, *_ = env.step(agent.act(observation, info))
    clone = pickle.loads(pickle.dumps(env))
    assert len(pickle.dumps(env)) < 200_000  # the catalog is reloaded, not pickled
    action = act("click[next page]")
    assert env.step(action) == clone.step(action)


def _make_small():

    return gym.make("MEM1-WebShop-v0", **SMALL)


@pytest.mark.parametrize("vector", ["sync", "async"])
def test_vector_envs(vector):
    if vector == "sync":
        envs = gym.vector.SyncVectorEnv([_make_small, _make_small])
    else:  # Text observations cannot live in shared memory
        envs = gym.vector.AsyncVectorEnv([_make_small] * 2, context="spawn", shared_memory=False)
    try:
        observations, infos = envs.reset(seed=[1, 2])
        assert all("Instruction: " in o for o in observations)
        observations, rewards, terminated, truncated, infos = envs.step(
            (act("search[potato chips]"), act("click[nowhere]"))
        )
        assert list(infos["invalid_action"]) == [None, "unknown_button"]
        assert rewards.tolist() == [0.0, -0.1]
    finally:
        envs.close()


def test_scripted_agent_reaches_high_reward_on_the_default_catalog():
    env = gym.make("MEM1-WebShop-v0")
    agent = WebShopScriptedAgent()
    rewards, successes = [], []
    for seed in range(60):
        trace = play(env, agent, seed)
        *_, (observation, reward, terminated, truncated, info) = trace
        rewards.append(reward)
        successes.append(info["success"])
        assert info["invalid_actions"] == 0
        assert info["success"] == (reward == 1.0)
    assert np.mean(rewards) >= 0.8
    assert np.mean(successes) >= 0.6


@pytest.mark.parametrize("kwargs", [{"n_items": 3}, {"instruction": "first"}, {"memory": "window"}])
def test_scripted_agent_in_other_modes(kwargs):
    env = gym.make("MEM1-WebShop-v0", **SMALL, **kwargs)
    agent = WebShopScriptedAgent()
    rewards = [play(env, agent, seed)[-1][1] for seed in range(15)]
    assert np.mean(rewards) >= 0.8


def test_instruction_first_hides_the_goal_after_the_first_turn():
    env = gym.make("MEM1-WebShop-v0", **SMALL, instruction="first")
    observation, info = env.reset(seed=0)
    goal = env.unwrapped.goal.instruction
    assert goal in observation
    observation, *_ = env.step(act("search[tea]", memory="nothing kept"))
    assert goal not in observation
    always = gym.make("MEM1-WebShop-v0", **SMALL)
    always.reset(seed=0)
    observation, *_ = always.step(act("search[tea]"))
    assert goal in observation


def test_mem1_context_holds_only_the_last_turn():
    env = gym.make("MEM1-WebShop-v0", **SMALL)
    env.reset(seed=0)
    env.step(act("search[green tea]", memory="FIRST-MEMORY"))
    observation, *_ = env.step(act("click[back to search]", memory="SECOND-MEMORY"))
    assert "SECOND-MEMORY" in observation and "FIRST-MEMORY" not in observation
    assert "search[green tea]" not in observation and "click[back to search]" in observation
    assert observation.count("<state>") == 1 + observation.count("and </state>")  # prompt names the tag


def test_long_pages_are_paged_not_cut():
    env = gym.make("MEM1-WebShop-v0", **SMALL, screen_tokens=120)
    env.reset(seed=0)
    episode = env.unwrapped.episode
    observation, *_ = env.step(act("search[potato chips]"))
    assert "(Screen 1 of" in observation
    screens = len(episode.screens)
    seen = []
    for k in range(screens):
        seen.append(episode.screens[episode.screen])
        if k + 1 < screens:
            observation, reward, terminated, truncated, info = env.step(act("click[next page]"))
            assert info["screen"] == k + 2 and info["invalid_action"] is None
    full = env.unwrapped.shop and episode.display(episode.page, None)
    body = full.rsplit("\n", 1)[0]
    assert "\n".join(seen) == body  # every line shown once, in order, nothing dropped
    observation, reward, terminated, truncated, info = env.step(act("click[next page]"))
    assert info["invalid_action"] == "no_such_screen"
    observation, reward, terminated, truncated, info = env.step(act("click[page 1]"))
    assert info["screen"] == 1


def test_split_screens_splits_a_line_longer_than_a_screen():
    line = " ".join(f"w{i}" for i in range(500))
    screens, footer = split_screens(f"head\n{line}\nAvailable actions: click[x]", 60, count_tokens)
    assert footer == "Available actions: click[x]"
    assert all(count_tokens(s) <= 60 for s in screens)
    assert " ".join(" ".join(screens).split()) == " ".join(f"head {line}".split())


def test_each_observation_is_bounded():
    env = gym.make("MEM1-WebShop-v0", **SMALL, max_context_tokens=900)
    env.reset(seed=5)
    agent = WebShopScriptedAgent()
    observation, info = env.reset(seed=5)
    agent.reset(5)
    huge = act("search[tea]", memory="memory " * 5000)
    for response in [huge, agent.act(observation, info)] * 3:
        observation, reward, terminated, truncated, info = env.step(response)
        assert info["context_tokens"] <= 900
        if terminated or truncated:
            break


def test_single_goal_reward_and_components():
    env = gym.make("MEM1-WebShop-v0", **SMALL)
    env.reset(seed=2)
    goal = env.unwrapped.goal
    item = goal.items[0]
    code = env.unwrapped.shop.catalog.code(item.target)
    env.step(act(f"search[{item.query}]"))
    env.step(act(f"click[{code}]"))
    for _, value in item.options:
        observation, reward, terminated, truncated, info = env.step(act(f"click[{value}]"))
        assert reward == 0.0 and not terminated
    observation, reward, terminated, truncated, info = env.step(act("click[buy now]"))
    assert terminated and not truncated and reward == 1.0 and info["success"]
    components = info["reward_components"]
    assert components["r_type"] == 1.0 and components["price_ok"]
    assert components["attributes_matched"] == components["attributes_total"] == len(item.attributes)
    assert info["purchases"] == [code]


def test_truncation_without_purchase_scores_zero():
    env = gym.make("MEM1-WebShop-v0", **SMALL, max_turns=2)
    env.reset(seed=0)
    env.step(act("search[tea]"))
    observation, reward, terminated, truncated, info = env.step(act("click[back to search]"))
    assert truncated and not terminated and reward == 0.0 and info["success"] is False


@pytest.mark.parametrize(
    ("response", "error"),
    [
        ("no tags", "no_action"),
        ("<summary>x</summary><answer>search[tea</answer>", "malformed"),
        ("<summary>x</summary><answer>click[teleport]</answer>", "unknown_button"),
        ("<summary>x</summary><answer>search[" + "q" * 10_000 + "]</answer>", "too_long"),
        (12345, "not_a_string"),
    ],
)
def test_invalid_actions_penalize_or_terminate(response, error):
    env = gym.make("MEM1-WebShop-v0", **SMALL)
    env.reset(seed=0)
    env.step(act("search[tea]"))
    before = env.unwrapped.episode.page
    observation, reward, terminated, truncated, info = env.step(response)
    assert info["invalid_action"] == error and reward == -0.1 and not terminated
    assert env.unwrapped.episode.page == before and "Invalid action" in observation
    strict = gym.make("MEM1-WebShop-v0", **SMALL, invalid_action="terminate")
    strict.reset(seed=0)
    strict.step(act("search[tea]"))
    observation, reward, terminated, truncated, info = strict.step(response)
    assert terminated and reward == 0.0 and info["invalid_action"] == error


def test_search_without_a_search_box():
    env = gym.make("MEM1-WebShop-v0", **SMALL)
    env.reset(seed=0)
    env.step(act("search[tea]"))
    *_, info = env.step(act("search[coffee]"))
    assert info["invalid_action"] == "no_search_box"


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=400), st.text(max_size=100))
def test_fuzzed_responses_never_crash_and_stay_in_the_space(body, memory):
    env = FUZZ_ENV
    env.reset(seed=0)
    for response in (body, act(body, memory), f"<summary>{memory}</summary><answer>click[{body}]</answer>"):
        observation, reward, terminated, truncated, info = env.step(response)
        assert env.observation_space.contains(observation)
        if terminated or truncated:
            env.reset(seed=0)


FUZZ_ENV = WebShopTextEnv(**SMALL)


def test_unicode_is_replaced_in_observations():
    env = WebShopTextEnv(**SMALL)
    env.reset(seed=0)
    observation, *_ = env.step(act("search[caf\u00e9 \u2603]", memory="m\u00e9moire"))
    assert env.observation_space.contains(observation) and "caf? ?" in observation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_items": 0}, "n_items must be >= 1, got 0"),
        ({"max_turns": 0}, "max_turns must be >= 1, got 0"),
        ({"screen_tokens": 10}, "screen_tokens must be >= 50, got 10"),
        ({"instruction": "never"}, "instruction must be one of"),
        ({"invalid_action": "ignore"}, "invalid_action must be one of"),
        ({"protocol": "nope"}, "protocol must be one of"),
        ({"memory": "infinite"}, "memory must be one of"),
        ({"invalid_penalty": -1}, "invalid_penalty must be >= 0, got -1"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        WebShopTextEnv(**SMALL, **kwargs)


def test_unknown_argument_and_step_before_reset():
    with pytest.raises(TypeError, match="unknown MEM1-WebShop-v0 arguments"):
        WebShopTextEnv(colour="red")
    with pytest.raises(RuntimeError, match="reset"):
        WebShopTextEnv(**SMALL).step(act("search[x]"))
    with pytest.raises(ValueError, match="max_context_tokens=20 cannot hold the prompt"):
        WebShopTextEnv(**SMALL, max_context_tokens=20).reset(seed=0)


def test_a_giant_invalid_action_is_echoed_only_in_part():
    env = gym.make("MEM1-WebShop-v0", **SMALL, memory="full")
    env.reset(seed=0)
    observation, reward, terminated, truncated, info = env.step(act("click[" + "z" * 50_000 + "]"))
    assert info["invalid_action"] == "too_long" and len(observation) < 5_000


def test_last_turn_invalid_keeps_its_penalty():
    env = gym.make("MEM1-WebShop-v0", **SMALL, max_turns=1)
    env.reset(seed=0)
    observation, reward, terminated, truncated, info = env.step(act("click[nothing]"))
    assert truncated and reward == -0.1


def test_a_failing_display_leaves_the_episode_consistent_and_can_truncate():
    env = WebShopTextEnv(**SMALL)
    env.reset(seed=0)
    episode = env.unwrapped.episode
    env.step(act("search[tea]"))
    before = (episode.page, list(episode.screens))

    def broken(state, action):
        raise OSError("display died")

    episode.display = broken
    with pytest.raises(OSError):
        env.step(act("click[back to search]"))
    assert (episode.page, episode.screens) == before
    observation, reward, terminated, truncated, info = episode.truncate("x", {"truncated_reason": "display"})
    assert truncated and not terminated and reward == 0.0
    assert info["truncated_reason"] == "display" and info["page"] == "results"


def test_ansi_render_is_the_last_observation():
    env = WebShopTextEnv(render_mode="ansi", **SMALL)
    observation, _ = env.reset(seed=0)
    assert env.render() == observation
    observation, *_ = env.step(act("search[tea]"))
    assert env.render() == observation
    assert WebShopTextEnv(**SMALL).render() is None
    with pytest.raises(ValueError, match=r"render_mode must be one of \(None, 'ansi'\), got 'human'"):
        WebShopTextEnv(render_mode="human", **SMALL)
