"""MEM1-WebShop-Browser-v0: parity with the text env, invalid actions, crashes, checker, vectors."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import mem1_envs  # noqa: F401  (registers the ids)
from agents.scripted_shop import WebShopScriptedAgent
from mem1_envs.shop.browser import BrowserConfig, process_running
from mem1_envs.shop.browser_env import INPUT_MODES, WebShopBrowserEnv
from mem1_envs.shop.engine import ShopEngine, load_shop
from mem1_envs.shop.pages import PageState
from mem1_envs.shop.text_env import WebShopTextEnv

pytestmark = pytest.mark.browser

N_PRODUCTS = 2000


@pytest.fixture(scope="module")
def shop() -> ShopEngine:
    return load_shop(N_PRODUCTS, 0)


@pytest.fixture(scope="module")
def browser_env(shop: ShopEngine) -> Any:
    env = WebShopBrowserEnv(shop=shop, n_products=N_PRODUCTS)
    yield env
    env.close()


@pytest.fixture(scope="module")
def native_env(shop: ShopEngine) -> Any:
    env = WebShopBrowserEnv(shop=shop, n_products=N_PRODUCTS, input_mode="native")
    yield env
    env.close()


@pytest.fixture(scope="module", params=INPUT_MODES)
def mode_env(
    request: Any, browser_env: WebShopBrowserEnv, native_env: WebShopBrowserEnv
) -> WebShopBrowserEnv:
    """The browser env in each input mode (script: the default; native: WebDriver clicks and keys)."""
    return {"script": browser_env, "native": native_env}[request.param]


def act(text: str) -> str:
    return f"<summary>memory</summary><answer>{text}</answer>"


# Actions that exercise every rule the two modes must agree on: aliases and case of labels,
# spaces in queries, scrolling, and every kind of invalid action.
EDGE_ACTIONS = [
    act("click[next page]"),
    act("search[  Gluten   FREE chips ]"),
    act("search[more]"),  # no search box here
    act("click[NEXT >]"),
    act("click[prev]"),  # alias of "< prev"
    act("click[no such button]"),
    act("click[page 2]"),
    act("click[page 99]"),  # no such screen
    "no tags at all",
    act("buy[it]"),  # malformed
    act("search[" + "x" * 300 + "]"),  # too long
    act("click[back to search]"),
    act("search[]"),  # empty query
    act("search[potato chips]"),
]


def _paired_run(text: WebShopTextEnv, browser: WebShopBrowserEnv, seed: int) -> dict[str, Any]:
    """Play one episode in both envs with the scripted agent (reading the text env's pages)."""
    agent = WebShopScriptedAgent()
    agent.reset(seed=seed)
    record: dict[str, Any] = {"mismatches": [], "steps": 0}
    text_out = text.reset(seed=seed)
    browser_out = browser.reset(seed=seed)
    if text_out != browser_out:
        record["mismatches"].append(("reset", text_out, browser_out))
    observation, info = text_out
    done = False
    while not done:
        action = agent.act(observation, info)
        text_step = text.step(action)
        browser_step = browser.step(action)
        record["steps"] += 1
        if text_step != browser_step:
            record["mismatches"].append((action, text_step, browser_step))
        observation, reward, terminated, truncated, info = text_step
        done = terminated or truncated
    record["reward"] = reward
    return record


@pytest.fixture(scope="module")
def paired(shop: ShopEngine, mode_env: WebShopBrowserEnv) -> list[dict[str, Any]]:
    text = WebShopTextEnv(shop=shop, n_products=N_PRODUCTS)
    return [_paired_run(text, mode_env, seed) for seed in range(8)]


def test_parity_with_text_mode_on_scripted_episodes(paired: list[dict[str, Any]]) -> None:
    for record in paired:
        assert record["mismatches"] == []
    assert sum(record["steps"] for record in paired) > 40


def test_scripted_agent_reward_in_browser_mode(paired: list[dict[str, Any]]) -> None:
    rewards = [record["reward"] for record in paired]
    assert np.mean(rewards) >= 0.8, rewards


def test_parity_with_text_mode_on_edge_actions(shop: ShopEngine, mode_env: WebShopBrowserEnv) -> None:
    text = WebShopTextEnv(shop=shop, n_products=N_PRODUCTS)
    browser_env = mode_env
    assert text.reset(seed=5) == browser_env.reset(seed=5)
    errors, pages = [], []
    for action in EDGE_ACTIONS:
        expected = text.step(action)
        assert browser_env.step(action) == expected, action
        errors.append(expected[4]["invalid_action"])
        pages.append(PageState.from_query(expected[4]["page_state"]))
        assert not expected[2] and not expected[3]
    assert errors == [
        *("no_such_screen", None, "no_search_box", None, None, "unknown_button", None, "no_such_screen"),
        *("no_action", "malformed", "too_long", None, "empty_query", None),
    ]
    assert pages[1].query == "Gluten FREE chips"  # spaces collapsed, as typed in the box
    assert [p.results_page for p in pages[2:5]] == [1, 2, 1]  # "NEXT >" and the "prev" alias
    assert browser_env.browser_restarts == 0


def test_invalid_inputs_never_crash(browser_env: WebShopBrowserEnv, shop: ShopEngine) -> None:
    text = WebShopTextEnv(shop=shop, n_products=N_PRODUCTS)
    text.reset(seed=3)
    browser_env.reset(seed=3)
    huge = act("search[" + "chips " * 200_000 + "]")
    bad_inputs: list[Any] = [
        huge,
        "x" * 2_000_000,
        None,
        12345,
        "",
        act("click[\u00e9t\u00e9 \U0001f600]"),
        act("search[caf\u00e9 \u2603]"),  # non-ASCII becomes '?': a valid search
        act("click[back to search]"),
        act("click[" + "]" * 500),
    ]
    for action in bad_inputs:
        expected = text.step(action)
        got = browser_env.step(action)
        assert got == expected, action if not isinstance(action, str) else action[:80]
        assert "truncated_reason" not in got[4]
    assert browser_env.browser_restarts == 0


def test_killed_browser_is_restarted_and_the_episode_truncated(shop: ShopEngine) -> None:
    env = WebShopBrowserEnv(shop=shop, n_products=N_PRODUCTS)
    try:
        env.reset(seed=0)
        env.step(act("search[potato chips]"))
        first = env.owned_pids()
        os.kill(env.browser.browser_pid(), signal.SIGKILL)
        observation, reward, terminated, truncated, info = env.step(act("click[back to search]"))
        assert truncated and not terminated and reward == 0.0
        assert info["truncated_reason"].startswith("browser_failure: ")
        assert info["browser_restarts"] == 1 and env.browser.starts == 2
        assert [pid for pid in first if process_running(pid)] == []
        # The fresh browser plays the next episode normally.
        observation, info = env.reset(seed=1)
        observation, reward, terminated, truncated, info = env.step(act("search[potato chips]"))
        assert info["page"] == "results" and not truncated and "truncated_reason" not in info
        # A dead chromedriver is a failure too.
        os.kill(env.browser.driver_pid, signal.SIGKILL)
        *_, truncated, info = env.step(act("click[back to search]"))
        assert truncated and info["browser_restarts"] == 2
        second = env.owned_pids()
    finally:
        env.close()
    assert [pid for pid in first | second if process_running(pid)] == []


def test_hung_browser_times_out_and_is_restarted(shop: ShopEngine) -> None:
    config = BrowserConfig(page_load_timeout_s=2.0, command_timeout_s=2.0)
    env = WebShopBrowserEnv(shop=shop, n_products=N_PRODUCTS, browser_config=config)
    try:
        env.reset(seed=0)
        env.step(act("search[potato chips]"))
        first = env.owned_pids()
        # With 2 s timeouts a loaded machine can already have restarted the browser once during
        # the reset or the search above: count the restarts of the frozen step only.
        restarts = env.browser_restarts
        os.kill(env.browser.browser_pid(), signal.SIGSTOP)  # alive but frozen: commands hang
        start = time.monotonic()
        *_, terminated, truncated, info = env.step(act("click[back to search]"))
        assert truncated and "timed out" in info["truncated_reason"].lower()
        assert time.monotonic() - start < 30 and info["browser_restarts"] == restarts + 1
        assert [pid for pid in first if process_running(pid)] == []  # the frozen one was killed
        assert env.reset(seed=1)[1]["page"] == "search"
    finally:
        env.close()


def test_gymnasium_env_checker(browser_env: WebShopBrowserEnv) -> None:
    check_env(browser_env, skip_render_check=True)


def test_registered_id_and_pickling(shop: ShopEngine) -> None:
    import pickle

    env = gym.make("MEM1-WebShop-Browser-v0", n_products=N_PRODUCTS)
    copy = None
    try:
        env.reset(seed=2)
        env.step(act("search[potato chips]"))
        copy = pickle.loads(pickle.dumps(env.unwrapped))
        original = env.step(act("click[< prev]"))
        copied = copy.step(act("click[< prev]"))  # the copy reloads its page in its own browser
        assert original == copied and original[4]["page"] == "search"
        assert not copy.owned_pids() & env.unwrapped.owned_pids()
    finally:
        env.close()
        if copy is not None:
            copy.close()


def _make_browser_env() -> gym.Env:
    # A spawned worker imports this module (and so mem1_envs, which registers the ids).
    return gym.make("MEM1-WebShop-Browser-v0", n_products=N_PRODUCTS)


def test_async_vector_env_one_browser_per_worker(shop: ShopEngine) -> None:
    envs = gym.vector.AsyncVectorEnv([_make_browser_env] * 2, context="spawn", shared_memory=False)
    try:
        observations, infos = envs.reset(seed=[10, 11])
        text = WebShopTextEnv(shop=shop, n_products=N_PRODUCTS)
        for i, seed in enumerate((10, 11)):
            assert observations[i] == text.reset(seed=seed)[0]
        actions = (act("search[potato chips]"), act("click[nothing]"))
        observations, rewards, terminated, truncated, infos = envs.step(actions)
        assert list(infos["page"]) == ["results", "search"]
        assert list(infos["invalid_action"]) == [None, "unknown_button"]
        pids = [set(p) for p in envs.call("owned_pids")]
        assert all(pids) and not pids[0] & pids[1]  # one browser per worker
    finally:
        envs.close()
    assert [pid for pid in pids[0] | pids[1] if process_running(pid)] == []
