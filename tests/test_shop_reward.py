"""WebShop's reward: the string rule, the numba batch kernel and its Python twin agree."""

from __future__ import annotations

import numpy as np
import pytest

from mem1_envs.shop.catalog import generate_catalog
from mem1_envs.shop.goals import Goal, ItemGoal
from mem1_envs.shop.reward import (
    RewardTables,
    batch_item_reward,
    batch_item_reward_python,
    encode_item,
    fuzzy_match,
    goal_reward,
    item_reward,
    type_factor,
)
from mem1_envs.shop.vocab import TYPES, ProductType

CATALOG = generate_catalog(3000, seed=2)
TABLES = RewardTables.build(CATALOG)


def _random_goal(rng: np.random.Generator, target: int, bounded: bool = True) -> ItemGoal:
    attributes = CATALOG.attributes(target)
    if rng.random() < 0.3:  # attributes of another department: mostly unmatched
        attributes = CATALOG.attributes(int(rng.integers(len(CATALOG))))
    chosen = tuple(attributes[: int(rng.integers(1, min(3, len(attributes)) + 1))])
    options = tuple((k, values[int(rng.integers(len(values)))]) for k, values in CATALOG.options(target))
    kind = CATALOG.type_of(target)
    upper = float(rng.integers(1, 300)) if bounded else None
    return ItemGoal(target, kind.index, kind.name, chosen, options, upper)


def _random_triples(n: int, seed: int):
    rng = np.random.default_rng(seed)
    triples = []
    for _ in range(n):
        target = int(rng.integers(len(CATALOG)))
        goal = _random_goal(rng, target)
        # the bought product: the target, one of the same type, or anything
        roll = rng.random()
        if roll < 0.3:
            product = target
        elif roll < 0.6:
            same = np.flatnonzero(CATALOG.type_id == CATALOG.type_id[target])
            product = int(rng.choice(same))
        else:
            product = int(rng.integers(len(CATALOG)))
        selected = {}
        for kind, values in CATALOG.options(product):
            if rng.random() < 0.8:
                selected[kind] = values[int(rng.integers(len(values)))]
        triples.append((goal, product, selected))
    return triples


def _batch(triples):
    rows = [encode_item(CATALOG, g, p, s) for g, p, s in triples]
    return {key: np.stack([r[key] for r in rows]) for key in rows[0]}


def test_kernel_twin_and_string_rule_agree_exactly():
    triples = _random_triples(3000, seed=0)
    arrays = _batch(triples)
    fast = batch_item_reward(TABLES, **arrays)
    slow = batch_item_reward_python(TABLES, **arrays)
    strings = np.array([item_reward(CATALOG, g, p, s).reward for g, p, s in triples])
    assert np.array_equal(fast, slow)
    assert np.allclose(fast, strings, rtol=0, atol=1e-12)
    # the sample covers every branch: perfect, partial, zero, every type factor
    assert (fast == 1).any() and ((fast > 0) & (fast < 1)).any() and (fast == 0).any()
    factors = {type_factor(TYPES[g.type_index], CATALOG.type_of(p)) for g, p, _ in triples}
    assert factors == {0.0, 0.1, 0.5, 1.0} or factors >= {0.0, 1.0}


def test_perfect_item_scores_one_and_components_are_reported():
    target = 17
    kind = CATALOG.type_of(target)
    options = tuple((k, v[0]) for k, v in CATALOG.options(target))
    goal = ItemGoal(target, kind.index, kind.name, CATALOG.attributes(target)[:2], options, 10_000.0)
    score = item_reward(CATALOG, goal, target, dict(options))
    assert score.reward == 1.0 and score.r_type == 1.0 and score.price_ok
    assert (score.attributes_matched, score.options_matched) == (2, len(options))
    no_options = item_reward(CATALOG, goal, target, {})
    assert no_options.options_matched == 0
    assert no_options.reward == pytest.approx(3 / (3 + len(options)))
    too_cheap = ItemGoal(
        target, kind.index, kind.name, goal.attributes, options, CATALOG.price(target) - 0.01
    )
    assert not item_reward(CATALOG, too_cheap, target, dict(options)).price_ok


def test_type_factor_follows_webshop():
    chips = next(t for t in TYPES if t.name == "potato chips")
    trail = next(t for t in TYPES if t.name == "trail mix")
    mug = next(t for t in TYPES if t.name == "coffee mug")
    table = next(t for t in TYPES if t.name == "coffee table")
    assert type_factor(chips, chips) == 1.0
    assert type_factor(chips, trail) == 0.0  # same category but no noun in common
    assert type_factor(mug, table) == 1.0  # half the nouns shared (> 0.2)
    words = ProductType(99, "A", "B", "alpha beta gamma delta epsilon f g h i j k")
    other = ProductType(98, "C", "D", "alpha zeta")
    assert type_factor(words, other) == 0.1  # 1/11 of the nouns: under 0.1
    few = ProductType(97, "E", "F", "alpha beta gamma delta epsilon")
    assert type_factor(few, other) == 0.5  # 1/5 nouns, no query or category match


def test_fuzzy_match_threshold():
    assert fuzzy_match("Gluten Free", "gluten free")
    assert fuzzy_match("sea salt", "salt")  # token set: a subset matches
    assert not fuzzy_match("gluten free", "dairy free")
    assert not fuzzy_match("6 pack", "12 pack")


def test_list_goal_assigns_distinct_purchases_and_checks_the_budget():
    rng = np.random.default_rng(1)
    targets = [5, 900, 2500]
    items = []
    for t in targets:
        g = _random_goal(rng, t, bounded=False)
        items.append(ItemGoal(t, g.type_index, g.type_name, CATALOG.attributes(t)[:1], g.options, None))
    items = tuple(items)
    spent = sum(CATALOG.price(t) for t in targets)
    goal = Goal(items, budget=spent + 1)
    perfect = [(t, dict(i.options)) for t, i in zip(targets, items, strict=True)]
    assert goal_reward(CATALOG, goal, perfect[::-1])[0] == 1.0  # order of purchases does not matter
    over = Goal(items, budget=spent - 1)
    reward, scores = goal_reward(CATALOG, over, perfect)
    assert reward < 1 and not any(s.price_ok for s in scores)
    twice = goal_reward(CATALOG, goal, [perfect[0], perfect[0]])
    assert twice[1][1] is None or twice[1][2] is None  # one purchase counts for one item only
    assert goal_reward(CATALOG, goal, [])[0] == 0.0


def test_kernel_rejects_ragged_batches():
    arrays = _batch(_random_triples(4, seed=3))
    arrays["prod_price"] = arrays["prod_price"][:3]
    with pytest.raises(ValueError, match="prod_price has 3 rows, expected 4"):
        batch_item_reward(TABLES, **arrays)


def test_serial_and_parallel_kernels_agree_on_a_large_batch():
    from mem1_envs.shop import reward

    triples = _random_triples(200, seed=4) * 25  # 5,000 rows: the parallel path
    arrays = _batch(triples)
    assert len(triples) >= reward.PARALLEL_MIN_TRIPLES
    parallel = batch_item_reward(TABLES, **arrays)
    serial = reward._batch_kernel_serial(*reward._arrays(TABLES, **arrays))
    assert np.array_equal(parallel, serial)
    assert np.array_equal(parallel, batch_item_reward_python(TABLES, **arrays))


def test_the_qa_rewards_module_knows_nothing_of_the_shop():
    # The shop reward lives with the shop (mem1_envs.shop.reward); rewards.py is the QA reward only.
    import subprocess
    import sys

    from mem1_envs import rewards

    assert not hasattr(rewards, "goal_reward")
    code = "import sys, mem1_envs.rewards; print('mem1_envs.shop.reward' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )
