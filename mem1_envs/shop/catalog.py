"""The product catalog: columnar arrays of ids, with product text composed on demand.

A catalog of N products is a handful of numpy arrays (type, brand, price, attribute ids, option
value ids, rating), so a million products cost tens of megabytes and generate in seconds with
vectorised draws. The text of a product (title, bullet points, description) is composed from
the word tables of :mod:`mem1_envs.shop.vocab` by a generator seeded with (catalog seed, product
index), so it is the same on every call and every machine. A catalog loaded from real WebShop
files (:mod:`mem1_envs.shop.webshop_data`) carries its own texts instead.

Prices: every product has one price, shown on the results and item pages; it is the price the
reward checks. Across products of one type prices spread over the department's price range.

>>> catalog = generate_catalog(100, seed=0)
>>> len(catalog), catalog.type_of(0).path == catalog.types[int(catalog.type_id[0])].path
(100, True)
>>> catalog.title(3) == catalog.title(3)
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from mem1_envs.shop import vocab

MAX_ATTRS = 5  # attributes per product (at most)
MAX_KINDS = 2  # option kinds per product (at most)
MAX_VALUES = 6  # values per option kind (at most)


@dataclass(frozen=True)
class ProductText:
    """The text of one product."""

    title: str
    bullets: tuple[str, ...]
    description: str


@dataclass(eq=False)
class Catalog:
    """Products as parallel arrays (row i is product i) plus the vocabularies the ids index.

    Attributes:
        seed: the generator seed (-1 for loaded data).
        type_id: int16 [N], index into ``types``.
        brand: int16 [N], index into ``brand_names``.
        price_cents: int32 [N], the one price shown and checked.
        rating: uint8 [N], stars times ten (10..50).
        attrs: int16 [N, MAX_ATTRS], indices into ``attribute_names``, -1 padded.
        option_kinds: int16 [N, MAX_KINDS], indices into ``option_kind_names``, -1 padded.
        option_values: int16 [N, MAX_KINDS, MAX_VALUES], indices into ``option_value_names``, -1 padded.
        types: the product types (3-level taxonomy leaves).
        attribute_names, option_kind_names, option_value_names, brand_names: vocabularies.
        texts: stored texts (loaded data); None means texts are generated on demand.
        codes: product codes shown on buttons; None means ``P`` + 7 digits of the index.
    """

    seed: int
    type_id: np.ndarray
    brand: np.ndarray
    price_cents: np.ndarray
    rating: np.ndarray
    attrs: np.ndarray
    option_kinds: np.ndarray
    option_values: np.ndarray
    types: tuple[vocab.ProductType, ...]
    attribute_names: tuple[str, ...]
    option_kind_names: tuple[str, ...]
    option_value_names: tuple[str, ...]
    brand_names: tuple[str, ...]
    texts: list[ProductText] | None = None
    codes: list[str] | None = None
    _code_index: dict[str, int] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.type_id)

    def __post_init__(self) -> None:
        # Composed texts are memoised per catalog (pages re-render the same products often).
        self.text = lru_cache(maxsize=4096)(self._text)
        # Results pages show many titles and few full texts: titles are composed on their own.
        self.title = lru_cache(maxsize=65536)(self._title)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("text", None)
        state.pop("title", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    # -- identity -----------------------------------------------------------------------
    def code(self, index: int) -> str:
        """The product code shown on its button (``P0000042``)."""
        return self.codes[index] if self.codes is not None else f"P{index:07d}"

    def index_of(self, code: str) -> int | None:
        """The product index of a code (case-insensitive), or None."""
        code = code.strip().upper()
        if self.codes is not None:
            if self._code_index is None:
                self._code_index = {c.upper(): i for i, c in enumerate(self.codes)}
            return self._code_index.get(code)
        if len(code) == 8 and code[0] == "P" and code[1:].isdigit():
            index = int(code[1:])
            return index if index < len(self) else None
        return None

    # -- fields ---------------------------------------------------------------------------
    def type_of(self, index: int) -> vocab.ProductType:
        return self.types[int(self.type_id[index])]

    def price(self, index: int) -> float:
        return int(self.price_cents[index]) / 100.0

    def attributes(self, index: int) -> tuple[str, ...]:
        return tuple(self.attribute_names[a] for a in self.attrs[index] if a >= 0)

    def options(self, index: int) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """((kind, (value, ...)), ...) of one product."""
        out = []
        for slot, kind in enumerate(self.option_kinds[index]):
            if kind < 0:
                continue
            values = tuple(self.option_value_names[v] for v in self.option_values[index, slot] if v >= 0)
            out.append((self.option_kind_names[kind], values))
        return tuple(out)

    def _title(self, index: int) -> str:
        if self.texts is not None:
            return self.texts[index].title
        return compose_title(self, index)

    def _text(self, index: int) -> ProductText:
        if self.texts is not None:
            return self.texts[index]
        return compose_text(self, index)


def _mix(*values: int) -> int:
    """A 64-bit hash of integers (splitmix64 steps): cheap, deterministic per-product draws."""
    x = 0x9E3779B97F4A7C15
    for value in values:
        x = (x ^ (value & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x


def compose_title(catalog: Catalog, index: int) -> str:
    """Brand, a marketing adjective, 1-2 of the attributes, the type, the first option value."""
    draw = _mix(catalog.seed, index)
    kind = catalog.type_of(index)
    brand = catalog.brand_names[int(catalog.brand[index])]
    adjective = vocab.ADJECTIVES[draw % len(vocab.ADJECTIVES)]
    in_title = catalog.attributes(index)[: 1 + (draw >> 16) % 2]
    title = " ".join([brand, adjective, *in_title, kind.name]).title()
    first_kind = int(catalog.option_kinds[index, 0])
    first_value = int(catalog.option_values[index, 0, 0])
    if first_kind >= 0 and first_value >= 0:
        title += ", " + catalog.option_value_names[first_value].title()
    return title


def compose_text(catalog: Catalog, index: int) -> ProductText:
    """The generated text of product ``index`` (deterministic in (catalog seed, index))."""
    rng = np.random.default_rng([catalog.seed & 0x7FFFFFFF, index])
    kind = catalog.type_of(index)
    brand = catalog.brand_names[int(catalog.brand[index])]
    attributes = catalog.attributes(index)
    title = catalog.title(index)
    bullets = [
        f"{a.capitalize()}: " + _pick(rng, vocab.ATTRIBUTE_SENTENCES).format(attr=a) for a in attributes
    ]
    bullets += [vocab.BULLET_FILLER[i] for i in rng.choice(len(vocab.BULLET_FILLER), 2, replace=False)]
    order = rng.permutation(len(bullets))
    bullets = [bullets[i] for i in order]
    sentences = [f"Meet the {brand} {kind.name}, part of our {kind.category.lower()} range."]
    sentences += [_pick(rng, vocab.ATTRIBUTE_SENTENCES).format(attr=a) for a in attributes]
    sentences += [vocab.DESCRIPTION_FILLER[i] for i in rng.permutation(len(vocab.DESCRIPTION_FILLER))]
    weight, width, depth = rng.integers(2, 200), rng.integers(2, 60), rng.integers(2, 60)
    sentences.append(f"Item weight: {weight} ounces; package dimensions: {width} x {depth} x 3 inches.")
    sentences.append(
        f"Item model number: {brand[:3].upper()}-{index % 100000:05d}-{int(rng.integers(10, 99))}."
    )
    head, tail = sentences[:1], sentences[1:]
    tail = [tail[i] for i in rng.permutation(len(tail))]
    # Paragraphs of four sentences: each paragraph is one line of the description page.
    body = head + tail
    paragraphs = [" ".join(body[i : i + 4]) for i in range(0, len(body), 4)]
    return ProductText(title, tuple(bullets), "\n".join(paragraphs))


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _vocabularies() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    attributes = tuple(a for d in vocab.DEPARTMENTS for a in vocab.ATTRIBUTES[d])
    kinds = tuple(dict.fromkeys(k for d in vocab.DEPARTMENTS for k, _ in vocab.OPTIONS[d]))
    values = tuple(dict.fromkeys(v for d in vocab.DEPARTMENTS for _, vs in vocab.OPTIONS[d] for v in vs))
    return attributes, kinds, values


def generate_catalog(n_products: int, seed: int = 0) -> Catalog:
    """Draw ``n_products`` products with vectorised numpy draws (1M products in seconds).

    >>> c = generate_catalog(5, seed=1)
    >>> all(c.price(i) > 0 and c.attributes(i) for i in range(5))
    True
    """
    if n_products < 1:
        raise ValueError(f"n_products must be >= 1, got {n_products}")
    rng = np.random.default_rng(seed)
    attribute_names, kind_names, value_names = _vocabularies()
    types = vocab.TYPES
    departments = vocab.DEPARTMENTS
    type_department = np.array([departments.index(t.department) for t in types], dtype=np.int16)

    type_id = rng.integers(0, len(types), n_products).astype(np.int16)
    department = type_department[type_id]
    brand = rng.integers(0, len(vocab.BRANDS), n_products).astype(np.int16)
    rating = rng.integers(25, 51, n_products).astype(np.uint8)

    low = np.array([vocab.PRICE_RANGES[d][0] for d in departments])[department]
    high = np.array([vocab.PRICE_RANGES[d][1] for d in departments])[department]
    dollars = np.exp(rng.uniform(np.log(low), np.log(high)))
    price_cents = (np.floor(dollars).astype(np.int32) * 100 + 99).astype(np.int32)

    # Attributes: 2..5 distinct ones from the department's pool of 10.
    pool = len(vocab.ATTRIBUTES[departments[0]])
    attribute_offset = np.cumsum([0] + [len(vocab.ATTRIBUTES[d]) for d in departments])[:-1]
    order = np.argsort(rng.random((n_products, pool)), axis=1)[:, :MAX_ATTRS]
    count = rng.integers(2, MAX_ATTRS + 1, n_products)
    attrs = (order + attribute_offset[department][:, None]).astype(np.int16)
    attrs[np.arange(MAX_ATTRS)[None, :] >= count[:, None]] = -1

    # Options: every product has its department's first kind, 60% also the second; each kind
    # offers 2..6 of its values, shown in the pool's order.
    option_kinds = np.full((n_products, MAX_KINDS), -1, dtype=np.int16)
    option_values = np.full((n_products, MAX_KINDS, MAX_VALUES), -1, dtype=np.int16)
    has_second = rng.random(n_products) < 0.6
    for slot in range(MAX_KINDS):
        kind_table = np.array([kind_names.index(vocab.OPTIONS[d][slot][0]) for d in departments], np.int16)
        width = max(len(vocab.OPTIONS[d][slot][1]) for d in departments)
        value_table = np.full((len(departments), width), -1, dtype=np.int16)
        sizes = np.zeros(len(departments), dtype=np.int64)
        for d, name in enumerate(departments):
            values = vocab.OPTIONS[name][slot][1]
            value_table[d, : len(values)] = [value_names.index(v) for v in values]
            sizes[d] = len(values)
        active = np.ones(n_products, bool) if slot == 0 else has_second
        keys = rng.random((n_products, width))
        keys[np.arange(width)[None, :] >= sizes[department][:, None]] = np.inf
        n_values = np.minimum(rng.integers(2, MAX_VALUES + 1, n_products), sizes[department])
        chosen = np.argsort(keys, axis=1)[:, :MAX_VALUES]
        # A random subset of n_values values, then sorted so the pool's order is kept.
        chosen = np.where(np.arange(MAX_VALUES)[None, :] < n_values[:, None], chosen, width)
        chosen = np.sort(chosen, axis=1)
        values = value_table[department[:, None], np.minimum(chosen, width - 1)]
        values[chosen >= width] = -1
        values[~active] = -1
        option_values[:, slot] = values
        option_kinds[:, slot] = np.where(active, kind_table[department], -1)

    return Catalog(
        seed=seed,
        type_id=type_id,
        brand=brand,
        price_cents=price_cents,
        rating=rating,
        attrs=attrs,
        option_kinds=option_kinds,
        option_values=option_values,
        types=types,
        attribute_names=attribute_names,
        option_kind_names=kind_names,
        option_value_names=value_names,
        brand_names=vocab.BRANDS,
    )


ARRAY_FIELDS = ("type_id", "brand", "price_cents", "rating", "attrs", "option_kinds", "option_values")
