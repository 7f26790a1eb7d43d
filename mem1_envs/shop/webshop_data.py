"""Load the real WebShop data files (when the user has them) into the same engine.

WebShop (princeton-nlp/WebShop) ships ``items_shuffle*.json`` (a list of products: ``asin``,
``name``, ``query``, ``product_category`` "A › B › C", ``pricing`` "$8.99" or "$5.99 - $9.99",
``small_description`` (bullets), ``full_description``, ``customization_options`` {kind: [{"value":
...}]}, ``average_rating``), ``items_ins_v2*.json`` ({asin: {"attributes": [...], "instruction",
"instruction_attributes", "instruction_options"}}) and ``items_human_ins.json`` ({asin: [{"instruction",
"instruction_attributes", "instruction_options"}, ...]}). Nothing is downloaded here: pass the
paths of files you have.

Mapping onto the engine: the product type is (first category level, last category level,
query), its nouns the query's words (WebShop takes title nouns with spaCy; we need no NLP
library); the shown and checked price is the lower end of the pricing range (WebShop draws a
hidden random price inside it); option values are lower-cased with "/" written " | " as WebShop
does. Goals come from the human instructions when given, else from the synthetic ones, with a
price bound drawn as WebShop does (two of the next four multiples of 10 above the price, the
larger one).

>>> import json, os, tempfile
>>> folder = tempfile.mkdtemp()
>>> items = [{"asin": "B01", "name": "Gluten Free Crackers", "query": "crackers",
...           "product_category": "Grocery › Snacks › Crackers", "pricing": "$4.99",
...           "small_description": ["Gluten free"], "full_description": "Crunchy.",
...           "customization_options": {"Size": [{"value": "6 Pack"}]}}]
>>> ins = {"B01": {"attributes": ["gluten free"], "instruction": "i want gluten free crackers",
...        "instruction_attributes": ["gluten free"], "instruction_options": ["6 pack"]}}
>>> for name, data in (("items.json", items), ("ins.json", ins)):
...     with open(os.path.join(folder, name), "w") as f: json.dump(data, f)
>>> data = load_webshop(os.path.join(folder, "items.json"), os.path.join(folder, "ins.json"))
>>> data.shop.catalog.options(0), data.goals[0].instruction.startswith("i want gluten free crackers, and price")
((('size', ('6 pack',)),), True)
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import numpy as np

from mem1_envs.shop.catalog import Catalog, ProductText
from mem1_envs.shop.engine import ShopEngine
from mem1_envs.shop.goals import Goal, ItemGoal
from mem1_envs.shop.vocab import ProductType

_NUMBER = re.compile(r"[\d.]+")


@dataclass(frozen=True)
class WebShopData:
    """A loaded catalog's engine and the goals of its instruction files."""

    shop: ShopEngine
    goals: list[Goal]


def _read(path: str) -> object:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _prices(pricing: object) -> list[float]:
    if isinstance(pricing, list):
        values = [float(p) for p in pricing if isinstance(p, (int, float))]
    elif isinstance(pricing, str):
        values = []
        for part in pricing.split("$")[1:]:
            match = _NUMBER.search(part.replace(",", ""))
            if match and match.group(0).strip("."):
                try:
                    values.append(float(match.group(0)))
                except ValueError:
                    continue
    else:
        values = []
    return values or [100.0]


def _padded(rows: list[list[int]], width: int | None = None) -> np.ndarray:
    width = max(1, max((len(r) for r in rows), default=1)) if width is None else width
    out = np.full((len(rows), width), -1, dtype=np.int32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def load_webshop(
    items_path: str,
    attributes_path: str | None = None,
    human_path: str | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> WebShopData:
    """Load WebShop's files; ``limit`` keeps the first N products (the file is pre-shuffled)."""
    products = _read(items_path)
    if not isinstance(products, list):
        raise ValueError(f"{items_path} must hold a JSON list of products, got {type(products).__name__}")
    attributes = _read(attributes_path) if attributes_path else {}
    human = _read(human_path) if human_path else {}
    seen: set[str] = set()
    kept = []
    for product in products:
        asin = str(product.get("asin", ""))
        if not asin or asin == "nan" or len(asin) > 10 or asin in seen:
            continue
        seen.add(asin)
        kept.append(product)
        if limit is not None and len(kept) >= limit:
            break
    if not kept:
        raise ValueError(f"no usable product in {items_path}")

    type_keys: dict[tuple[str, str, str], int] = {}
    attr_vocab: dict[str, int] = {}
    kind_vocab: dict[str, int] = {}
    value_vocab: dict[str, int] = {}
    brand_vocab: dict[str, int] = {}
    type_rows, brand_rows, price_rows, rating_rows = [], [], [], []
    attr_rows: list[list[int]] = []
    kind_rows: list[list[int]] = []
    value_rows: list[list[list[int]]] = []
    texts, codes = [], []
    for product in kept:
        levels = [x.strip() for x in str(product.get("product_category") or "").split("›") if x.strip()]
        query = str(product.get("query") or "").lower().strip() or "product"
        key = (levels[0] if levels else "", levels[-1] if levels else "", query)
        type_rows.append(type_keys.setdefault(key, len(type_keys)))
        brand_rows.append(brand_vocab.setdefault(str(product.get("brand") or ""), len(brand_vocab)))
        price_rows.append(round(min(_prices(product.get("pricing"))) * 100))
        try:
            rating = float(product.get("average_rating") or 0.0)
        except (TypeError, ValueError):
            rating = 0.0
        rating_rows.append(round(min(max(rating, 0.0), 5.0) * 10))
        asin = str(product["asin"])
        wanted = attributes.get(asin, {}) if isinstance(attributes, dict) else {}
        attr_rows.append([attr_vocab.setdefault(a, len(attr_vocab)) for a in wanted.get("attributes", [])])
        kinds, values = [], []
        for kind, contents in (product.get("customization_options") or {}).items():
            if not contents:
                continue
            kinds.append(kind_vocab.setdefault(kind.lower(), len(kind_vocab)))
            values.append(
                [
                    value_vocab.setdefault(
                        str(c.get("value", "")).strip().replace("/", " | ").lower(), len(value_vocab)
                    )
                    for c in contents
                    if isinstance(c, dict)
                ]
            )
        kind_rows.append(kinds)
        value_rows.append(values)
        bullets = product.get("small_description") or []
        bullets = bullets if isinstance(bullets, list) else [bullets]
        texts.append(
            ProductText(
                str(product.get("name") or asin),
                tuple(str(b) for b in bullets if b),
                str(product.get("full_description") or ""),
            )
        )
        codes.append(asin)

    n_kinds = max(1, max(len(k) for k in kind_rows))
    n_values = max(1, max((len(v) for vs in value_rows for v in vs), default=1))
    option_values = np.full((len(kept), n_kinds, n_values), -1, dtype=np.int32)
    for i, vs in enumerate(value_rows):
        for slot, row in enumerate(vs):
            option_values[i, slot, : len(row)] = row
    types = tuple(ProductType(i, d, c, q) for (d, c, q), i in sorted(type_keys.items(), key=lambda kv: kv[1]))
    catalog = Catalog(
        seed=-1,
        type_id=np.array(type_rows, dtype=np.int32),
        brand=np.array(brand_rows, dtype=np.int32),
        price_cents=np.array(price_rows, dtype=np.int64),
        rating=np.array(rating_rows, dtype=np.uint8),
        attrs=_padded(attr_rows),
        option_kinds=_padded(kind_rows, n_kinds),
        option_values=option_values,
        types=types,
        attribute_names=tuple(attr_vocab),
        option_kind_names=tuple(kind_vocab),
        option_value_names=tuple(value_vocab),
        brand_names=tuple(brand_vocab),
        texts=texts,
        codes=codes,
    )
    shop = ShopEngine.build(catalog)
    return WebShopData(shop, _goals(catalog, attributes, human, seed))


def _goals(catalog: Catalog, attributes: object, human: object, seed: int) -> list[Goal]:
    rng = np.random.default_rng(seed)
    goals = []
    for index in range(len(catalog)):
        asin = catalog.code(index)
        if isinstance(human, dict) and human.get(asin):
            entries = human[asin] if isinstance(human[asin], list) else [human[asin]]
        elif (
            isinstance(attributes, dict)
            and isinstance(attributes.get(asin), dict)
            and attributes[asin].get("instruction")
        ):
            entries = [attributes[asin]]
        else:
            continue
        price = catalog.price(index)
        upper_choices = [10.0 * i for i in range(1, 100) if 10.0 * i > price][:4]
        for entry in entries:
            if not isinstance(entry, dict) or not entry.get("instruction"):
                continue
            if len(upper_choices) >= 2:
                upper = float(max(rng.choice(upper_choices, 2, replace=False)))
            else:
                upper = float(max(1_000_000.0, math.ceil(price)))
            kind = catalog.type_of(index)
            item = ItemGoal(
                index,
                kind.index,
                kind.name,
                tuple(entry.get("instruction_attributes") or ()),
                tuple(("option", str(v)) for v in entry.get("instruction_options") or ()),
                upper,
            )
            text = (
                f"{str(entry['instruction']).strip().rstrip('.')}, and price lower than {upper:.2f} dollars"
            )
            goals.append(Goal((item,), None, text))
    return goals
