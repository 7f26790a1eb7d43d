"""Every argument of every env is checked at ``gym.make`` time, with one line naming it.

The field lists come from the config dataclasses: a new field fails
``test_every_field_has_a_bad_value_table`` until it has an entry in ``OUT_OF_RANGE``, and the
derived cases (wrong type by annotation, a bool for an int, an arbitrary object) then check it.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import mem1_envs  # noqa: F401 - registers the env ids
from mem1_envs.qa.env import MultiQAConfig
from mem1_envs.shop.browser import BrowserConfig
from mem1_envs.shop.text_env import WebShopConfig
from mem1_envs.webqa.env import WebQAConfig

QA, SHOP, BROWSER = "MEM1-MultiQA-v0", "MEM1-WebShop-v0", "MEM1-WebShop-Browser-v0"
WEBQA = "MEM1-WebQA-v0"

# A value of the right type but out of range, or not among the choices, for every field.
OUT_OF_RANGE: dict[type, dict[str, list[Any]]] = {
    MultiQAConfig: {
        "num_objectives": [0, -3],
        "max_turns": [0],
        "top_k": [0],
        "protocol": ["nope"],
        "memory": ["infinite"],
        "window": [0],
        "max_context_tokens": [0],
        "max_observation_tokens": [0],
        "token_counter": ["gpt2"],  # a name is not a tokenizer (str has an unrelated .encode)
        "reward_mode": ["max"],
        "invalid_action": ["ignore"],
        "invalid_penalty": [-0.1, math.inf],
        "world": ["huge"],
        "world_seed": [-1],
        "split": ["val"],
        "data": ["", {"bad name!": "x.jsonl"}],
        "corpus": [""],
        "index": [""],
        "search": ["", "ftp://127.0.0.1/retrieve"],
        "compose": ["sorted"],
        "on_bad_row": ["warn"],
        "on_search_error": ["retry"],
    },
    WebShopConfig: {
        "n_products": [0],
        "catalog_seed": [-1],
        "n_items": [0],
        "max_turns": [0],
        "instruction": ["never"],
        "protocol": ["nope"],
        "memory": ["infinite"],
        "window": [0],
        "max_context_tokens": [0],
        "screen_tokens": [49],
        "token_counter": ["gpt2"],
        "invalid_action": ["ignore"],
        "invalid_penalty": [-1.0, math.nan],
    },
    WebQAConfig: {
        "num_objectives": [0],
        "max_turns": [0],
        "protocol": ["mem1"],  # the MultiQA tags have no navigation actions
        "memory": ["infinite"],
        "window": [0],
        "max_context_tokens": [0],
        "max_observation_tokens": [0],
        "token_counter": ["gpt2"],
        "reward_mode": ["max"],
        "invalid_action": ["ignore"],
        "invalid_penalty": [-0.1, math.inf],
        "world": ["huge"],
        "world_seed": [-1],
        "split": ["val"],
        "corpus": [""],
        "data": ["", {"bad name!": "x.jsonl"}],
        "on_bad_row": ["warn"],
    },
    BrowserConfig: {
        "chromium_binary": [""],
        "chromedriver": [""],
        "headless": [np.int64(1)],
        "page_load_timeout_s": [0, -1.0, math.nan],
        "command_timeout_s": [0.0, math.inf],
        "window_size": [(0, 10), (10,), (1280, 1024, 3)],
        "extra_args": [("--ok", 3)],
    },
}

# Wrong types, by the field's annotation.
WRONG_TYPE: dict[Any, list[Any]] = {
    int: [True, 2.5, 2.0, "2", None],
    int | None: [False, 2.5, "2"],
    float: [True, "0.1", None, [0.1]],
    str: [3, None, b"mem1"],
    str | None: [3, b"x"],
    bool: [1, "yes", None],
    tuple[int, int]: ["1280x1024", 1280],
    tuple[str, ...]: ["--flag", None],
    Any: [object(), 3.5],
}

# Arguments of the env constructors that are not config fields.
ENV_ARGUMENTS: dict[str, dict[str, list[Any]]] = {
    # (a non-string render_mode never reaches the env: gym.make itself fails on it)
    QA: {"render_mode": ["human"], "source": [object(), "world"]},
    SHOP: {"render_mode": ["human"], "shop": [object(), "shop"], "goals": [[], ["goal"], "goal"]},
    BROWSER: {"input_mode": ["mouse", 3], "browser_config": [{"headless": True}, "config"]},
    WEBQA: {"render_mode": ["human"], "source": [object(), "world"]},
}

ENV_CONFIGS = {QA: MultiQAConfig, SHOP: WebShopConfig, BROWSER: WebShopConfig, WEBQA: WebQAConfig}


def _id(value: Any) -> str:
    return f"<{type(value).__name__}>" if " at 0x" in repr(value) else repr(value)  # stable test ids


def _cases() -> list[Any]:
    cases = []
    for env_id, config in ENV_CONFIGS.items():
        hints = typing.get_type_hints(config)
        for field in dataclasses.fields(config):
            values = [
                *OUT_OF_RANGE[config].get(field.name, []),
                *WRONG_TYPE.get(hints[field.name], []),
                object(),
            ]
            cases += [
                pytest.param(env_id, field.name, v, id=f"{env_id}-{field.name}-{_id(v)}") for v in values
            ]
        for name, values in ENV_ARGUMENTS[env_id].items():
            cases += [pytest.param(env_id, name, v, id=f"{env_id}-{name}-{_id(v)}") for v in values]
    return cases


def _browser_not_started(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("selenium")
    from mem1_envs.shop.browser_env import WebShopBrowserEnv

    def refuse(self: Any) -> None:
        raise AssertionError("the browser was started before the arguments were checked")

    monkeypatch.setattr(WebShopBrowserEnv, "_open", refuse)


def _assert_one_line_naming(error: BaseException, name: str) -> None:
    message = str(error)
    assert "\n" not in message, message
    # gym.make appends "... with kwargs ({...})" to a TypeError, which names every argument:
    # the message proper must start with the argument's name.
    assert message.startswith(name.split("[")[0]), message


def test_every_field_has_a_bad_value_table():
    for config, table in OUT_OF_RANGE.items():
        names = {field.name for field in dataclasses.fields(config)}
        assert set(table) == names, f"{config.__name__}: add bad values for {sorted(names - set(table))}"
        hints = typing.get_type_hints(config)
        unknown = {name: hint for name, hint in hints.items() if hint not in WRONG_TYPE}
        assert not unknown, f"add wrong-type values for these annotations to WRONG_TYPE: {unknown}"


@pytest.mark.filterwarnings("ignore:.*render_mode='human'")
@pytest.mark.parametrize(("env_id", "name", "value"), _cases())
def test_gym_make_rejects_a_bad_argument_with_one_line_naming_it(env_id, name, value, monkeypatch):
    if env_id == BROWSER:
        _browser_not_started(monkeypatch)
    with pytest.raises((TypeError, ValueError)) as caught:
        gym.make(env_id, **{name: value})
    _assert_one_line_naming(caught.value, name)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (field.name, value)
        for field in dataclasses.fields(BrowserConfig)
        for value in [
            *OUT_OF_RANGE[BrowserConfig][field.name],
            *WRONG_TYPE[typing.get_type_hints(BrowserConfig)[field.name]],
            object(),
        ]
    ],
)
def test_browser_config_rejects_a_bad_field_with_one_line_naming_it(name, value):
    with pytest.raises((TypeError, ValueError)) as caught:
        BrowserConfig(**{name: value})
    _assert_one_line_naming(caught.value, name)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_objectives": "x"}, "num_objectives must be an integer, got 'x' (str)"),
        ({"top_k": "3"}, "top_k must be an integer, got '3' (str)"),
        ({"max_turns": "6"}, "max_turns must be an integer or None, got '6' (str)"),
        ({"num_objectives": 2.5}, "num_objectives must be an integer, got 2.5 (float)"),
        ({"num_objectives": True}, "num_objectives must be an integer, got True (bool)"),
        ({"top_k": 2.0}, "top_k must be an integer, got 2.0 (float)"),
        ({"invalid_penalty": math.nan}, "invalid_penalty must be a finite number, got nan"),
    ],
)
def test_the_issue_examples_get_their_message(kwargs, message):
    with pytest.raises((TypeError, ValueError)) as caught:
        gym.make(QA, **kwargs)
    assert str(caught.value).startswith(message)


def test_numpy_integers_and_ints_for_floats_are_accepted():
    env = gym.make(QA, world="small", top_k=np.int64(2), num_objectives=np.int32(1), invalid_penalty=1)
    env.reset(seed=0)
    observation, *_ = env.step("<think></think><search>population</search>")
    assert observation.count("Doc ") == 2


def test_the_browser_env_checks_its_config_before_any_browser_starts(monkeypatch):
    _browser_not_started(monkeypatch)
    with pytest.raises(ValueError, match="screen_tokens must be >= 50, got 10"):
        gym.make(BROWSER, screen_tokens=10)
    with pytest.raises(TypeError, match=r"input_mode must be one of \('native', 'script'\), got 3 \(int\)"):
        gym.make(BROWSER, input_mode=3, screen_tokens=10)


@pytest.mark.parametrize("question_ids", [5, "abc", [["q"]], [None]])
def test_reset_options_are_checked_too(question_ids):
    env = gym.make(QA, world="small")
    with pytest.raises((TypeError, ValueError), match=r"^options\['question_ids'\] must"):
        env.reset(seed=0, options={"question_ids": question_ids})
