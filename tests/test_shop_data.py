"""Loading real WebShop files (a tiny hand-written sample in WebShop's formats)."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import mem1_envs  # noqa: F401
from mem1_envs.shop.reward import goal_reward
from mem1_envs.shop.webshop_data import load_webshop

ITEMS = [
    {
        "asin": "B0000001",
        "name": "Gluten Free Crackers by Nutty",
        "query": "crackers",
        "category": "grocery",
        "product_category": "Grocery & Gourmet Food \u203a Snacks \u203a Crackers",
        "pricing": "$4.99 - $7.99",
        "small_description": ["Gluten free and crunchy", "Made with rice flour"],
        "full_description": "Delicious crackers. Caf\u00e9 style.",
        "customization_options": {"Size": [{"value": "6 Pack"}, {"value": "12/Pack"}], "Flavor": None},
        "average_rating": 4.4,
    },
    {
        "asin": "B0000002",
        "name": "Running Shoes for Men",
        "query": "running shoes",
        "product_category": "Clothing, Shoes & Jewelry \u203a Men \u203a Shoes",
        "pricing": "$59.00",
        "small_description": "Lightweight sole",
        "full_description": "",
        "customization_options": {"Color": [{"value": "Black", "image": None}, {"value": "Blue"}]},
    },
    {"asin": "B0000002", "name": "duplicate", "pricing": "", "customization_options": None},
    {"asin": "nan", "name": "no asin"},
    {"asin": "B0000003", "name": "No price", "query": "mug", "pricing": None, "customization_options": None},
]
ATTRIBUTES = {
    "B0000001": {
        "attributes": ["gluten free", "rice flour"],
        "instruction": "i want gluten free crackers",
        "instruction_attributes": ["gluten free"],
        "instruction_options": ["6 pack"],
    },
    "B0000002": {"attributes": ["lightweight"], "instruction": "", "instruction_attributes": []},
}
HUMAN = {
    "B0000002": [
        {
            "instruction": "I need lightweight running shoes in black.",
            "instruction_attributes": ["lightweight"],
            "instruction_options": ["black"],
        }
    ]
}


@pytest.fixture
def files(tmp_path):
    paths = {}
    for name, data in (("items", ITEMS), ("ins", ATTRIBUTES), ("human", HUMAN)):
        paths[name] = str(tmp_path / f"{name}.json")
        with open(paths[name], "w", encoding="utf-8") as handle:
            json.dump(data, handle)
    return paths


def test_products_options_prices_and_goals_are_mapped(files):
    data = load_webshop(files["items"], files["ins"], files["human"])
    catalog = data.shop.catalog
    assert [catalog.code(i) for i in range(len(catalog))] == ["B0000001", "B0000002", "B0000003"]
    assert catalog.price(0) == 4.99 and catalog.price(1) == 59.0 and catalog.price(2) == 100.0
    assert catalog.options(0) == (("size", ("6 pack", "12 | pack")),)
    assert catalog.attributes(0) == ("gluten free", "rice flour")
    assert catalog.type_of(1).path == ("Clothing, Shoes & Jewelry", "Shoes", "running shoes")
    assert catalog.text(1).bullets == ("Lightweight sole",)
    assert catalog.index_of("b0000002") == 1 and catalog.index_of("B9") is None
    assert len(data.goals) == 2
    crackers = data.goals[0]
    assert crackers.instruction.startswith("i want gluten free crackers, and price lower than")
    assert crackers.items[0].price_upper in (10.0, 20.0, 30.0, 40.0, 50.0)
    shoes = data.goals[1]
    assert shoes.instruction.startswith("I need lightweight running shoes in black, and price lower than")
    perfect = goal_reward(catalog, shoes, [(1, {"color": "black"})])
    assert perfect[0] == 1.0
    assert data.shop.search("crackers")[0] == 0


def test_the_env_plays_loaded_data(files):
    data = load_webshop(files["items"], files["ins"], files["human"])
    env = gym.make("MEM1-WebShop-v0", shop=data.shop, goals=data.goals, n_products=len(data.shop.catalog))
    observation, info = env.reset(seed=0)
    assert "Instruction: " in observation and "caf" not in observation
    env.step("<summary>m</summary><answer>search[crackers]</answer>")
    observation, *_ = env.step("<summary>m</summary><answer>click[b0000001]</answer>")
    assert "[button] 12 | pack [button_]" in observation and "Price: $4.99" in observation
    observation, *_ = env.step("<summary>m</summary><answer>click[description]</answer>")
    assert "Caf? style." in observation  # unicode replaced per protocol.to_charset


def test_bad_files_are_named(tmp_path):
    path = tmp_path / "items.json"
    path.write_text('{"not": "a list"}')
    with pytest.raises(ValueError, match="must hold a JSON list of products"):
        load_webshop(str(path))
    path.write_text("[]")
    with pytest.raises(ValueError, match="no usable product"):
        load_webshop(str(path))


def test_scripted_agent_buys_something_fitting_on_free_text_goals(files):
    from agents.scripted_shop import WebShopScriptedAgent

    data = load_webshop(files["items"], files["ins"], files["human"])
    env = gym.make("MEM1-WebShop-v0", shop=data.shop, goals=data.goals, n_products=len(data.shop.catalog))
    agent = WebShopScriptedAgent()
    for seed in range(4):
        observation, info = env.reset(seed=seed)
        agent.reset(seed)
        done = False
        while not done:
            observation, reward, terminated, truncated, info = env.step(agent.act(observation, info))
            done = terminated or truncated
        assert terminated and info["invalid_actions"] == 0 and reward > 0
