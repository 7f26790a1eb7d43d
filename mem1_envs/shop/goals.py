"""Shopping goals: WebShop-style instructions drawn from the catalog, each with a perfect item.

A single goal names a product type, 1-3 attributes, one value per option kind and a price
bound, all read off a *target* product, so the target scores reward 1. The target is also
checked to appear in the search results of the goal's own words (``ItemGoal.query``), so it is
reachable through the pages, not only present in the catalog.

A list goal (``n_items > 1``) asks for several products of distinct types under one total
budget (no per-item bound), bought in one episode.

Instruction grammar (agents may parse it; phrases never contain " and " or ","):
``Find me <type> that is <attr> [and <attr>...][, with <kind>: <value> [and <kind>: <value>]],
and price lower than <p> dollars`` and, for a list, ``Buy all of these, spending at most <b>
dollars in total: (1) <type> that is ...[, with ...]; (2) ...``.

>>> from mem1_envs.shop.engine import ShopEngine
>>> from mem1_envs.shop.catalog import generate_catalog
>>> import numpy as np
>>> shop = ShopEngine.build(generate_catalog(300, seed=0))
>>> goal = sample_goal(shop, np.random.default_rng(0))
>>> goal.instruction.startswith("Find me ") and goal.items[0].target in shop.search(goal.items[0].query)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mem1_envs.shop.engine import ShopEngine


@dataclass(frozen=True)
class ItemGoal:
    """One wanted product.

    Attributes:
        target: index of the product the goal was read from (a perfect item).
        type_index: the wanted product type.
        type_name: its name, as written in the instruction.
        attributes: wanted attribute phrases.
        options: wanted (kind, value) pairs.
        price_upper: price bound in dollars (None inside a list goal).
    """

    target: int
    type_index: int
    type_name: str
    attributes: tuple[str, ...]
    options: tuple[tuple[str, str], ...]
    price_upper: float | None

    @property
    def query(self) -> str:
        """The goal's own words: the search that is checked to find the target."""
        return " ".join([*self.attributes, self.type_name, *(v for _, v in self.options)])

    def phrase(self) -> str:
        text = f"{self.type_name} that is " + " and ".join(self.attributes)
        if self.options:
            text += ", with " + " and ".join(f"{k}: {v}" for k, v in self.options)
        return text


@dataclass(frozen=True)
class Goal:
    """A whole episode's goal: one item, or a list under a total budget.

    ``text`` overrides the generated instruction (goals loaded from WebShop's human instructions).
    """

    items: tuple[ItemGoal, ...]
    budget: float | None
    text: str | None = None

    @property
    def instruction(self) -> str:
        if self.text is not None:
            return self.text
        if self.budget is None:
            item = self.items[0]
            return f"Find me {item.phrase()}, and price lower than {item.price_upper:.2f} dollars"
        listed = "; ".join(f"({k}) {item.phrase()}" for k, item in enumerate(self.items, 1))
        return f"Buy all of these, spending at most {self.budget:.2f} dollars in total: {listed}"


def _item_goal(shop: ShopEngine, rng: np.random.Generator, target: int, bounded: bool) -> ItemGoal:
    catalog = shop.catalog
    attributes = catalog.attributes(target)
    n_attrs = int(rng.integers(1, min(3, len(attributes)) + 1))
    chosen = tuple(attributes[i] for i in sorted(rng.choice(len(attributes), n_attrs, replace=False)))
    options = tuple(
        (kind, values[int(rng.integers(len(values)))]) for kind, values in catalog.options(target)
    )
    upper = None
    if bounded:
        upper = float(math.ceil(catalog.price(target) * rng.uniform(1.05, 1.6)))
    kind = catalog.type_of(target)
    return ItemGoal(target, kind.index, kind.name, chosen, options, upper)


def sample_goal(shop: ShopEngine, rng: np.random.Generator, n_items: int = 1, max_tries: int = 100) -> Goal:
    """Draw a goal whose every item's target is found by a search for the item's own words."""
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    catalog = shop.catalog
    n_types = len({int(t) for t in np.unique(catalog.type_id)})
    if n_items > n_types:
        raise ValueError(f"n_items must be <= the number of product types ({n_types}), got {n_items}")
    items: list[ItemGoal] = []
    for _ in range(max_tries * n_items):
        if len(items) == n_items:
            break
        target = int(rng.integers(len(catalog)))
        if any(int(catalog.type_id[target]) == item.type_index for item in items):
            continue
        item = _item_goal(shop, rng, target, bounded=n_items == 1)
        if target in shop.search(item.query):
            items.append(item)
    if len(items) < n_items:
        raise RuntimeError(f"could not draw {n_items} reachable goal items in {max_tries * n_items} tries")
    budget = None
    if n_items > 1:
        total = sum(catalog.price(item.target) for item in items)
        budget = float(math.ceil(total * rng.uniform(1.1, 1.4)))
    return Goal(tuple(items), budget)
