"""The page model: the shop's pages as a pure, deterministic state machine.

A :class:`PageState` (frozen, a few fields) says which page is shown; :func:`transition` maps
(state, action) to the next state, an error, or a purchase; :func:`build_page` lays a state out
as lines of segments (text and buttons). Both renderers draw the same :class:`Page`, so the text
mode and the browser mode cannot diverge. Nothing here keeps hidden state: a web app can serve
the machine by putting ``PageState.to_query()`` in its URLs.

Pages and their buttons (labels are matched case-insensitively, spaces collapsed)::

    search    [search box]  -> search[query]
    results   Back to Search | < Prev | Next > | one button per product code (10 per page, 50 max)
    item      Back to Search | < Prev | option values per kind | Description | Features | Buy Now
    sub       Back to Search | < Prev   (Description: paragraphs; Features: bullet points)
    done      Back to Search            (order confirmation, after Buy Now)

``< Prev`` goes back one level (results page -> previous results page or search, item -> its
results page, sub page -> item with its selected options kept). Action errors (the state does
not change): ``malformed`` (not ``search[...]``/``click[...]``), ``too_long`` (argument over
200 characters), ``empty_query``, ``no_search_box`` (search where no search box is),
``unknown_button`` (no such button on this page).

>>> from mem1_envs.shop.engine import ShopEngine
>>> from mem1_envs.shop.catalog import generate_catalog
>>> shop = ShopEngine.build(generate_catalog(100, seed=0))
>>> t = transition(shop, PageState(), "search[potato chips]")
>>> t.state.kind, t.error
('results', None)
>>> transition(shop, t.state, "search[more]").error
'no_search_box'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode

from mem1_envs.shop.engine import MAX_RESULTS, ShopEngine

RESULTS_PER_PAGE = 10
MAX_ARGUMENT_CHARS = 200
SUB_PAGES = ("description", "features")

ACTION_ERRORS = ("malformed", "too_long", "empty_query", "no_search_box", "unknown_button")

_ACTION = re.compile(r"^\s*(search|click)\s*\[(.*)\]\s*$", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=65536)
def normalize_label(label: str) -> str:
    """How button labels and click arguments are compared: lower-case, spaces collapsed."""
    return _SPACES.sub(" ", label).strip().lower()


@dataclass(frozen=True)
class PageState:
    """Which page is shown.

    Attributes:
        kind: ``search``, ``results``, ``item``, ``sub`` or ``done``.
        query: the last search (results, item and sub pages remember it for ``< Prev``).
        results_page: 1-based results page.
        product: product index (item, sub, done).
        options: selected (kind, value) pairs, in the product's kind order.
        sub: ``description`` or ``features`` on a sub page.
    """

    kind: str = "search"
    query: str = ""
    results_page: int = 1
    product: int = -1
    options: tuple[tuple[str, str], ...] = ()
    sub: str = ""

    def to_query(self) -> str:
        """URL query string of this state (the web app's address for it).

        Options travel as repeated ``option_kind``/``option_value`` pairs, so any character in
        a value (WebShop's values hold ``|``, ``/``, ``=``) survives the round trip.
        """
        return _query_of(self)

    def _encode(self) -> str:
        fields: list[tuple[str, object]] = [
            ("kind", self.kind),
            ("query", self.query),
            ("page", self.results_page),
            ("product", self.product),
        ]
        for kind, value in self.options:
            fields += [("option_kind", kind), ("option_value", value)]
        fields.append(("sub", self.sub))
        return urlencode(fields)

    @classmethod
    def from_query(cls, text: str) -> PageState:
        """Inverse of :meth:`to_query` (unknown or bad fields fall back to the defaults).

        Use :func:`sanitize` before showing a state read from an address.
        """
        pairs = parse_qsl(text, keep_blank_values=True)
        fields = dict(pairs)
        kinds = [v for k, v in pairs if k == "option_kind"]
        values = [v for k, v in pairs if k == "option_value"]
        options = tuple(zip(kinds, values, strict=False))
        try:
            page, product = int(fields.get("page", 1)), int(fields.get("product", -1))
        except ValueError:
            page, product = 1, -1
        kind = fields.get("kind", "search")
        if kind not in ("search", "results", "item", "sub", "done"):
            kind = "search"
        return cls(kind, fields.get("query", ""), page, product, options, fields.get("sub", ""))


def sanitize(shop: ShopEngine, state: PageState) -> PageState:
    """``state`` if the shop can show it, else the search page (for states read from URLs).

    >>> from mem1_envs.shop.engine import ShopEngine
    >>> from mem1_envs.shop.catalog import generate_catalog
    >>> shop = ShopEngine.build(generate_catalog(10, seed=0))
    >>> sanitize(shop, PageState("item", "q", 1, 99))
    PageState(kind='search', query='', results_page=1, product=-1, options=(), sub='')
    """
    if state.kind == "search":
        return PageState()
    if state.kind == "results":
        pages = _n_pages(len(_results(shop, state.query)))
        return state if 1 <= state.results_page <= pages else PageState()
    if not 0 <= state.product < len(shop.catalog) or not 1 <= state.results_page <= 5:
        return PageState()
    offered = dict(shop.catalog.options(state.product))
    if any(value not in offered.get(kind, ()) for kind, value in state.options):
        return PageState()
    if state.kind == "sub" and state.sub not in SUB_PAGES:
        return PageState()
    return state


@lru_cache(maxsize=4096)
def _query_of(state: PageState) -> str:
    return state._encode()


@dataclass(frozen=True)
class Button:
    """A clickable: its label (shown) and the action it performs (``click[label]``)."""

    label: str
    clicked: bool = False

    @property
    def action(self) -> str:
        return f"click[{normalize_label(self.label)}]"

    @property
    def text(self) -> str:
        if self.clicked:
            return f"[clicked button] {self.label} [clicked button_]"
        return f"[button] {self.label} [button_]"


SEARCH_BOX = "[search box]"


@dataclass(frozen=True)
class Page:
    """A laid-out page: lines of segments (``str`` text or :class:`Button`), top to bottom.

    ``search_box`` says whether ``search[...]`` is available.
    """

    lines: tuple[tuple[str | Button, ...], ...]
    search_box: bool = False

    def buttons(self) -> list[Button]:
        return [s for line in self.lines for s in line if isinstance(s, Button)]

    def actions(self) -> list[str]:
        """The available actions, in page order (``search[<query>]`` first when there is a box)."""
        out = ["search[<query>]"] if self.search_box else []
        for button in self.buttons():
            if button.action not in out:
                out.append(button.action)
        return out


def _results(shop: ShopEngine, query: str) -> tuple[int, ...]:
    return shop.search(query, MAX_RESULTS)


def _n_pages(n_results: int) -> int:
    return max(1, -(-n_results // RESULTS_PER_PAGE))


def build_page(shop: ShopEngine, state: PageState) -> Page:
    """Lay out ``state`` as lines of text and buttons (memoised per shop: pages are pure)."""
    cache = shop.page_cache
    page = cache.get(state)
    if page is None:
        page = _layout(shop, state)
        cache[state] = page
        if len(cache) > PAGE_CACHE_SIZE:
            cache.popitem(last=False)
    return page


PAGE_CACHE_SIZE = 4096


def _layout(shop: ShopEngine, state: PageState) -> Page:
    catalog = shop.catalog
    back = Button("Back to Search")
    prev = Button("< Prev")
    if state.kind == "search":
        return Page(
            (("MEM1 Shop",), (SEARCH_BOX,), ("Type a query and search with search[your query].",)), True
        )
    if state.kind == "results":
        results = _results(shop, state.query)
        pages = _n_pages(len(results))
        lines: list[tuple[str | Button, ...]] = [(back,), (f'Search results for "{state.query}"',)]
        lines.append((f"Page {state.results_page} of {pages} (Total results: {len(results)})",))
        nav: list[str | Button] = [prev]
        if state.results_page < pages:
            nav.append(Button("Next >"))
        lines.append(tuple(nav))
        start = (state.results_page - 1) * RESULTS_PER_PAGE
        for index in results[start : start + RESULTS_PER_PAGE]:
            lines.append((Button(catalog.code(index)),))
            lines.append((catalog.title(index),))
            lines.append((f"${catalog.price(index):.2f}",))
        if not results:
            lines.append(("No products match your search. Go back and try other words.",))
        return Page(tuple(lines))
    index = state.product
    text = catalog.text(index)
    if state.kind == "item":
        lines = [(back,), (prev,)]
        chosen = dict(state.options)
        for kind, values in catalog.options(index):
            lines.append((f"{kind}:", *(Button(v, clicked=chosen.get(kind) == v) for v in values)))
        lines.append((text.title,))
        lines.append((f"Price: ${catalog.price(index):.2f}",))
        lines.append((f"Rating: {int(catalog.rating[index]) / 10:.1f} out of 5",))
        lines.append((Button("Description"), Button("Features"), Button("Buy Now")))
        return Page(tuple(lines))
    if state.kind == "sub":
        lines = [(back,), (prev,), (state.sub.capitalize() + ":",)]
        body = text.description.split("\n") if state.sub == "description" else text.bullets
        lines += [(line,) for line in body if line]
        return Page(tuple(lines))
    if state.kind == "done":
        chosen_text = ", ".join(f"{k}: {v}" for k, v in state.options) or "no options selected"
        lines = [
            ("Thank you for shopping with us! Your order:",),
            (text.title,),
            (f"Options: {chosen_text}",),
            (f"Price: ${catalog.price(index):.2f}",),
            (back,),
        ]
        return Page(tuple(lines))
    raise ValueError(f"unknown page kind {state.kind!r}")


@dataclass(frozen=True)
class Transition:
    """The outcome of one action: the next state, an error (state unchanged) or a purchase."""

    state: PageState
    error: str | None = None
    purchase: tuple[int, tuple[tuple[str, str], ...]] | None = None


def parse_action(action: str) -> tuple[str, str] | str:
    """``(verb, argument)`` of ``search[...]``/``click[...]``, or an error name."""
    if not isinstance(action, str):
        return "malformed"
    match = _ACTION.match(action[: MAX_ARGUMENT_CHARS * 4])
    if match is None:
        return "too_long" if len(action) > MAX_ARGUMENT_CHARS * 4 else "malformed"
    verb, argument = match.group(1).lower(), match.group(2)
    if len(argument) > MAX_ARGUMENT_CHARS:
        return "too_long"
    return verb, argument


def transition(shop: ShopEngine, state: PageState, action: str) -> Transition:
    """Apply one ``search[...]``/``click[...]`` action to ``state`` (pure; never raises)."""
    parsed = parse_action(action)
    if isinstance(parsed, str):
        return Transition(state, parsed)
    verb, argument = parsed
    if verb == "search":
        if state.kind != "search":
            return Transition(state, "no_search_box")
        query = _SPACES.sub(" ", argument).strip()
        if not query:
            return Transition(state, "empty_query")
        return Transition(PageState("results", query=query))
    label = normalize_label(argument)
    label = {"prev": "< prev", "next": "next >", "< prev page": "< prev"}.get(label, label)
    page = build_page(shop, state)
    if not any(b.action == f"click[{label}]" for b in page.buttons()):
        return Transition(state, "unknown_button")
    if label == "back to search":
        return Transition(PageState())
    if state.kind == "results":
        if label == "< prev":
            if state.results_page > 1:
                return Transition(replace(state, results_page=state.results_page - 1))
            return Transition(PageState())
        if label == "next >":
            return Transition(replace(state, results_page=state.results_page + 1))
        product = shop.catalog.index_of(label)
        return Transition(PageState("item", state.query, state.results_page, product))
    if state.kind == "item":
        if label == "< prev":
            return Transition(PageState("results", state.query, state.results_page))
        if label in SUB_PAGES:
            return Transition(replace(state, kind="sub", sub=label))
        if label == "buy now":
            purchase = (state.product, state.options)
            return Transition(replace(state, kind="done"), purchase=purchase)
        return Transition(replace(state, options=_select(shop, state, label)))
    if state.kind == "sub" and label == "< prev":
        return Transition(replace(state, kind="item", sub=""))
    return Transition(state, "unknown_button")  # unreachable: every button is handled above


def _select(shop: ShopEngine, state: PageState, label: str) -> tuple[tuple[str, str], ...]:
    """Select the option value ``label`` (the first kind offering it), replacing that kind's value."""
    kinds = shop.catalog.options(state.product)
    chosen = dict(state.options)
    for kind, values in kinds:
        for value in values:
            if normalize_label(value) == label:
                chosen[kind] = value
                return tuple((k, chosen[k]) for k, _ in kinds if k in chosen)
    return state.options
