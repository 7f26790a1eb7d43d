"""WebShop's reward, on strings (the env) and on ids in a numba batch kernel (training).

For a wanted item and a bought product with the options the agent selected::

    r = r_type * (N_att + N_opt + 1[price <= bound]) / (|attributes| + |options| + 1)

* an attribute matches when a product attribute is a fuzzy token-set match (> 85, rapidfuzz,
  lower-cased) or the attribute is a substring of the title, bullets or description;
* an option matches when a value the agent *selected* is a fuzzy token-set match (> 85);
* ``r_type`` compares the product's type with the wanted one, as WebShop does: 1, but 0.5 when
  neither the type ("query") nor two taxonomy levels ("category") match nor more than 20% of
  the wanted type's nouns are in the product's; 0.1 when under 10% of the nouns; 0 when none.
  The nouns are the words of the type name, precomputed (no NLP library at reward time).

Success is reward 1. A list goal scores the mean over its items, each item matched to a
distinct purchase greedily by best score, with the price term being 1[total spent <= budget].

``batch_item_reward`` scores many (goal, product, options) triples given as ids with a numba
kernel; ``batch_item_reward_python`` is its plain-Python twin (the test oracle). On a generated
catalog, text mentions exactly a product's own attributes, so the id rule equals the string rule
(tested).

>>> from mem1_envs.shop.catalog import generate_catalog
>>> from mem1_envs.shop.goals import ItemGoal
>>> c = generate_catalog(10, seed=0)
>>> kind = c.type_of(0)
>>> goal = ItemGoal(0, kind.index, kind.name, c.attributes(0)[:1], (), 1000.0)
>>> item_reward(c, goal, 0, {}).reward
1.0
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numba
import numpy as np
from rapidfuzz import fuzz, process, utils

from mem1_envs.shop.catalog import Catalog
from mem1_envs.shop.goals import Goal, ItemGoal
from mem1_envs.shop.vocab import ProductType

FUZZY_THRESHOLD = 85.0


def fuzzy_match(a: str, b: str) -> bool:
    return fuzz.token_set_ratio(a, b, processor=utils.default_process) > FUZZY_THRESHOLD


def type_factor(goal: ProductType, product: ProductType) -> float:
    """WebShop's r_type for a wanted type and a bought product's type."""
    query_match = goal.index == product.index
    category_match = len(set(goal.path) & set(product.path)) >= 2
    nouns = goal.nouns
    title_score = len(nouns & product.nouns) / len(nouns) if nouns else 0.0
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return r_type


@dataclass(frozen=True)
class ItemScore:
    """The reward's components for one wanted item."""

    reward: float
    r_type: float
    attributes_matched: int
    attributes_total: int
    options_matched: int
    options_total: int
    price_ok: bool

    def as_dict(self) -> dict:
        return asdict(self)


def item_reward(
    catalog: Catalog,
    goal: ItemGoal,
    product: int,
    selected: dict[str, str],
    price_ok: bool | None = None,
) -> ItemScore:
    """Score buying ``product`` with ``selected`` options ({kind: value}) for ``goal``.

    ``price_ok`` overrides the price term (list goals pass the budget check).
    """
    text = catalog.text(product)
    haystack = " ".join([text.title, *text.bullets, text.description]).lower()
    product_attributes = catalog.attributes(product)
    attributes_matched = sum(
        1
        for wanted in goal.attributes
        if wanted.lower() in haystack or any(fuzzy_match(p, wanted) for p in product_attributes)
    )
    chosen = list(selected.values())
    options_matched = sum(1 for _, wanted in goal.options if any(fuzzy_match(c, wanted) for c in chosen))
    if price_ok is None:
        price_ok = goal.price_upper is not None and catalog.price(product) <= goal.price_upper
    r_type = type_factor(catalog.types[goal.type_index], catalog.type_of(product))
    total = len(goal.attributes) + len(goal.options) + 1
    reward = r_type * (attributes_matched + options_matched + int(price_ok)) / total
    return ItemScore(
        reward,
        r_type,
        attributes_matched,
        len(goal.attributes),
        options_matched,
        len(goal.options),
        bool(price_ok),
    )


def goal_reward(
    catalog: Catalog, goal: Goal, purchases: list[tuple[int, dict[str, str]]]
) -> tuple[float, list[ItemScore | None]]:
    """Reward of a whole goal given the purchases [(product, selected options)], and per-item scores.

    Single goal: the first purchase's item reward. List goal: mean over items; each item takes a
    distinct purchase, pairs assigned greedily by best score; the price term is the budget check.
    """
    if not purchases:
        return 0.0, [None] * len(goal.items)
    if goal.budget is None:
        score = item_reward(catalog, goal.items[0], *purchases[0])
        return score.reward, [score]
    spent = sum(catalog.price(p) for p, _ in purchases)
    within = spent <= goal.budget + 1e-9
    table = [[item_reward(catalog, item, p, s, price_ok=within) for p, s in purchases] for item in goal.items]
    pairs = sorted(
        ((table[i][j].reward, -i, -j) for i in range(len(goal.items)) for j in range(len(purchases))),
        reverse=True,
    )
    scores: list[ItemScore | None] = [None] * len(goal.items)
    used: set[int] = set()
    for _, neg_i, neg_j in pairs:
        i, j = -neg_i, -neg_j
        if scores[i] is None and j not in used:
            scores[i] = table[i][j]
            used.add(j)
    total = sum(s.reward for s in scores if s is not None) / len(goal.items)
    return total, scores


# -- ids and the batch kernel ------------------------------------------------------------------
@dataclass(frozen=True)
class RewardTables:
    """Precomputed match tables of a catalog's vocabularies (for the batch kernel).

    Attributes:
        attribute_match: bool [A, A], fuzzy match between attribute phrases.
        value_match: bool [V, V], fuzzy match between option values.
        type_factor: float [T, T], r_type of (wanted type, product type).
    """

    attribute_match: np.ndarray
    value_match: np.ndarray
    type_factor: np.ndarray

    @classmethod
    def build(cls, catalog: Catalog) -> RewardTables:
        def table(names: tuple[str, ...]) -> np.ndarray:
            scores = process.cdist(names, names, scorer=fuzz.token_set_ratio, processor=utils.default_process)
            return np.asarray(scores) > FUZZY_THRESHOLD

        types = catalog.types
        factor = np.array([[type_factor(g, p) for p in types] for g in types], dtype=np.float64)
        return cls(table(catalog.attribute_names), table(catalog.option_value_names), factor)


def _score_one(b, goal_type, goal_attrs, goal_values, price_upper, prod_type, prod_attrs, chosen, prod_price,
               attribute_match, value_match, type_table):  # fmt: skip
    total = 1.0
    matched = 0.0
    for g in goal_attrs[b]:
        if g < 0:
            continue
        total += 1.0
        for p in prod_attrs[b]:
            if p >= 0 and attribute_match[g, p]:
                matched += 1.0
                break
    for g in goal_values[b]:
        if g < 0:
            continue
        total += 1.0
        for c in chosen[b]:
            if c >= 0 and value_match[g, c]:
                matched += 1.0
                break
    if prod_price[b] <= price_upper[b]:
        matched += 1.0
    return type_table[goal_type[b], prod_type[b]] * matched / total


_score_one_jit = numba.njit(cache=bool(os.environ.get("NUMBA_CACHE_DIR")))(_score_one)


def _batch_loop(goal_type, goal_attrs, goal_values, price_upper, prod_type, prod_attrs, chosen, prod_price,
                attribute_match, value_match, type_table):  # fmt: skip
    out = np.empty(goal_type.shape[0], dtype=np.float64)
    for b in numba.prange(goal_type.shape[0]):
        out[b] = _score_one_jit(b, goal_type, goal_attrs, goal_values, price_upper, prod_type, prod_attrs,
                                chosen, prod_price, attribute_match, value_match, type_table)  # fmt: skip
    return out


_CACHE = bool(os.environ.get("NUMBA_CACHE_DIR"))
_batch_kernel = numba.njit(parallel=True, cache=_CACHE)(_batch_loop)
# Small batches skip the thread pool: waking threads costs more than scoring a few thousand
# triples, and a forked worker (AsyncVectorEnv) never touches numba's threading layer.
_batch_kernel_serial = numba.njit(cache=_CACHE)(_batch_loop)
PARALLEL_MIN_TRIPLES = 4096


def _arrays(tables: RewardTables, **arrays: np.ndarray) -> list[np.ndarray]:
    names = (
        "goal_type",
        "goal_attrs",
        "goal_values",
        "price_upper",
        "prod_type",
        "prod_attrs",
        "chosen",
        "prod_price",
    )
    dtypes = (np.int64, np.int64, np.int64, np.int64, np.int64, np.int64, np.int64, np.int64)
    out = [np.ascontiguousarray(arrays[n], dtype=d) for n, d in zip(names, dtypes, strict=True)]
    size = out[0].shape[0]
    for name, array in zip(names, out, strict=True):
        if array.shape[0] != size:
            raise ValueError(f"{name} has {array.shape[0]} rows, expected {size}")
    return [*out, tables.attribute_match, tables.value_match, tables.type_factor]


def batch_item_reward(tables: RewardTables, **arrays: np.ndarray) -> np.ndarray:
    """Rewards of B triples (numba; parallel from 4096 triples). Keyword arrays, all with B rows, -1 padded:

    goal_type [B], goal_attrs [B, A], goal_values [B, O] (option value ids), price_upper [B]
    (cents), prod_type [B], prod_attrs [B, P], chosen [B, C] (selected value ids), prod_price [B]
    (cents).
    """
    args = _arrays(tables, **arrays)
    kernel = _batch_kernel if args[0].shape[0] >= PARALLEL_MIN_TRIPLES else _batch_kernel_serial
    return kernel(*args)


def batch_item_reward_python(tables: RewardTables, **arrays: np.ndarray) -> np.ndarray:
    """The plain-Python twin of :func:`batch_item_reward` (the test oracle)."""
    args = _arrays(tables, **arrays)
    return np.array([_score_one(b, *args) for b in range(args[0].shape[0])], dtype=np.float64)


def encode_item(
    catalog: Catalog, goal: ItemGoal, product: int, selected: dict[str, str], max_len: int = 6
) -> dict[str, np.ndarray]:
    """One triple as the kernel's id rows (a helper for building batches; strings -> ids)."""
    attr_id = {a: i for i, a in enumerate(catalog.attribute_names)}
    value_id = {v: i for i, v in enumerate(catalog.option_value_names)}

    def row(ids: list[int]) -> np.ndarray:
        out = np.full(max_len, -1, dtype=np.int64)
        out[: len(ids)] = ids[:max_len]
        return out

    upper = -1 if goal.price_upper is None else round(goal.price_upper * 100)
    return {
        "goal_type": np.array(goal.type_index),
        "goal_attrs": row([attr_id[a] for a in goal.attributes]),
        "goal_values": row([value_id[v] for _, v in goal.options]),
        "price_upper": np.array(upper),
        "prod_type": np.array(int(catalog.type_id[product])),
        "prod_attrs": row([int(a) for a in catalog.attrs[product] if a >= 0]),
        "chosen": row([value_id[v] for v in selected.values() if v in value_id]),
        "prod_price": np.array(int(catalog.price_cents[product])),
    }
