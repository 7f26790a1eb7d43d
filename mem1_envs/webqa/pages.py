"""The page model: the wiki's pages as a pure, deterministic state machine (as the shop's).

A :class:`PageState` (frozen) says which page is shown; :func:`transition` maps (state, action)
to the next state or an error; :func:`build_page` lays a state out as a :class:`Page`: a title
and lines of :class:`Segment` (plain text, or a link whose ``link`` is the target state's URL
query). The text renderer (:mod:`mem1_envs.webqa.render_text`) and the browser's HTML draw the
same page, so both modes show the same text. Nothing here keeps hidden state: a web app serves
``PageState.to_query()`` addresses, the back stack travelling in the address.

Pages::

    search    "Search"                 a line inviting a search
    results   'Search results for "q"'  a count line, then one line per article: [Title] snippet
    article   the article's title       a window of PARAGRAPHS_PER_SCREEN paragraphs, mentions of
                                        other articles as links; a position line when there are more

Actions (``(verb, argument)`` or the string ``verb[argument]``), allowed on every page:

* ``search[query]``: the results page of ``query`` (10 articles at most);
* ``click[label]``: follow the first link on the page whose label equals ``label`` (compared
  lower-case, spaces collapsed);
* ``back[]``: the previous page (the last ``MAX_BACK`` pages are remembered);
* ``scroll[down]`` / ``scroll[up]`` (empty means down): move an article's window by a screen.

Errors (the state does not change): ``malformed`` (not one of the forms above, or a
non-string), ``too_long`` (argument over 200 characters), ``empty_query``, ``unknown_link``
(no such link on this page), ``no_back`` (nothing to go back to), ``bad_scroll`` (argument not
``up``/``down``/empty), ``no_scroll`` (not an article, or already at that end).

>>> from mem1_envs.webqa.wiki import wiki_from_corpus
>>> wiki = wiki_from_corpus([{"id": "0", "contents": '"Oslo"\\nOslo is in Norway.'},
...                          {"id": "1", "contents": '"Norway"\\nNorway is a country.'}])
>>> t = transition(wiki, PageState(), "search[Oslo]")
>>> t.state.kind, build_page(wiki, t.state).lines[1][0]
('results', Segment(text='Oslo', link='kind=article&query=Oslo&title=Oslo&offset=0&back=kind%3Dresults%26query%3DOslo%26title%3D%26offset%3D0&back=kind%3Dsearch%26query%3D%26title%3D%26offset%3D0'))
>>> t = transition(wiki, transition(wiki, t.state, "click[oslo]").state, ("click", "Norway"))
>>> t.state.title, transition(wiki, t.state, "back[]").state.title, t.error
('Norway', 'Oslo', None)
>>> transition(wiki, t.state, "click[Sweden]").error
'unknown_link'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from urllib.parse import parse_qsl, quote_plus, urlencode

from mem1_envs.webqa.wiki import Wiki

RESULTS_PER_PAGE = 10
PARAGRAPHS_PER_SCREEN = 3
SNIPPET_CHARS = 160
MAX_BACK = 16
MAX_ARGUMENT_CHARS = 200
PAGE_CACHE_SIZE = 4096
KINDS = ("search", "results", "article")
VERBS = ("search", "click", "back", "scroll")
ACTION_ERRORS = ("malformed", "too_long", "empty_query", "unknown_link", "no_back", "bad_scroll", "no_scroll")

_ACTION = re.compile(r"^\s*(search|click|back|scroll)\s*\[(.*)\]\s*$", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"\s+")
_BRACKETS = str.maketrans({"[": "(", "]": ")"})


@lru_cache(maxsize=65536)
def normalize_label(label: str) -> str:
    """How link labels and click arguments are compared: lower-case, spaces collapsed."""
    return _SPACES.sub(" ", label).strip().lower()


def clean_text(text: str) -> str:
    """Segment text as the page model writes it: brackets made parentheses, whitespace runs one space."""
    return _SPACES.sub(" ", text.translate(_BRACKETS))


@dataclass(frozen=True)
class PageState:
    """Which page is shown.

    Attributes:
        kind: ``search``, ``results`` or ``article``.
        query: the search of a results page (an article keeps the search it came from).
        title: the article's title.
        offset: index of the first paragraph shown (a multiple of ``PARAGRAPHS_PER_SCREEN``).
        back: earlier pages, oldest first (each without its own ``back``), at most ``MAX_BACK``.
    """

    kind: str = "search"
    query: str = ""
    title: str = ""
    offset: int = 0
    back: tuple[PageState, ...] = ()

    def __hash__(self) -> int:
        # Memoised: states key the page cache and hold their back stack, so hashing recurses.
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((self.kind, self.query, self.title, self.offset, self.back))
            object.__setattr__(self, "_hash", cached)
        return cached

    def __getstate__(self) -> dict[str, object]:
        # String hashes differ between processes: a pickled state recomputes its hash.
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)

    def to_query(self) -> str:
        """URL query string of this state (the web app's address for it)."""
        return _query_of(self)

    @classmethod
    def from_query(cls, text: str) -> PageState:
        """Inverse of :meth:`to_query` (bad fields fall back to defaults; then use :func:`sanitize`)."""
        pairs = parse_qsl(text, keep_blank_values=True)
        recent_first = [_flat_from_query(v) for k, v in pairs if k == "back"][:MAX_BACK]
        return replace(_flat_from_query(text), back=tuple(reversed(recent_first)))

    def flat(self) -> PageState:
        """This state without its back stack."""
        return replace(self, back=()) if self.back else self

    def then(self, kind: str, query: str = "", title: str = "", offset: int = 0) -> PageState:
        """The state reached from this one by a new page (this one pushed on the back stack)."""
        return PageState(kind, query, title, offset, (*self.back, self.flat())[-MAX_BACK:])


def _flat_from_query(text: str) -> PageState:
    fields = dict(parse_qsl(text, keep_blank_values=True))
    kind = fields.get("kind", "search")
    try:
        offset = int(fields.get("offset", 0))
    except ValueError:
        offset = 0
    if kind not in KINDS:
        kind = "search"
    return PageState(kind, fields.get("query", ""), fields.get("title", ""), offset)


@lru_cache(maxsize=65536)
def _flat_query(kind: str, query: str, title: str, offset: int) -> tuple[str, str]:
    """A state's own fields URL-encoded, and that string quoted again (as a ``back`` value)."""
    own = urlencode([("kind", kind), ("query", query), ("title", title), ("offset", offset)])
    return own, quote_plus(own)


def _query_of(state: PageState) -> str:
    # urlencode of the fields, then one ``back`` entry per earlier page, most recent first (a
    # reader of the address sees where "back" goes without parsing it all). Built from memoised
    # pieces: every link of a page carries the whole back stack.
    own = _flat_query(state.kind, state.query, state.title, state.offset)[0]
    backs = "".join(
        "&back=" + _flat_query(b.kind, b.query, b.title, b.offset)[1] for b in reversed(state.back)
    )
    return own + backs


def sanitize(wiki: Wiki, state: PageState) -> PageState:
    """``state`` if the wiki can show it (back stack included), else the search page."""
    if not all(_showable(wiki, s) for s in (state, *state.back)):
        return PageState()
    return state


def _showable(wiki: Wiki, state: PageState) -> bool:
    if state.kind == "search":
        return not state.query and not state.title and state.offset == 0
    if state.kind == "results":
        return bool(state.query.strip()) and not state.title and state.offset == 0
    article = wiki.index.get(state.title)
    if article is None:
        return False
    n = len(wiki.paragraph_range(article))
    return 0 <= state.offset < max(n, 1) and state.offset % PARAGRAPHS_PER_SCREEN == 0


@dataclass(frozen=True)
class Segment:
    """A run of text on a line; ``link`` is the target page's ``PageState.to_query()`` (None: plain)."""

    text: str
    link: str | None = None


Line = tuple[Segment, ...]


@dataclass(frozen=True)
class Page:
    """A laid-out page: its title (the only heading) and lines of segments, top to bottom."""

    title: str
    lines: tuple[Line, ...]
    targets: tuple[tuple[str, PageState], ...] = ()
    """``(normalised label, target state)`` of every link, in page order (what ``click`` resolves)."""

    def links(self) -> list[str]:
        """The link labels as shown, in page order, without repeats (what ``click[...]`` accepts)."""
        seen: dict[str, str] = {}
        for line in self.lines:
            for segment in line:
                if segment.link is not None:
                    seen.setdefault(normalize_label(segment.text), segment.text)
        return list(seen.values())

    def target(self, label: str) -> PageState | None:
        """The state the first link labelled ``label`` leads to (None: no such link)."""
        wanted = normalize_label(label)
        for name, state in self.targets:
            if name == wanted:
                return state
        return None


def build_page(wiki: Wiki, state: PageState) -> Page:
    """Lay out ``state`` (memoised per wiki: pages are pure)."""
    cache = wiki.page_cache
    page = cache.get(state)
    if page is None:
        page = _layout(wiki, state)
        cache[state] = page
        if len(cache) > PAGE_CACHE_SIZE:
            cache.popitem(last=False)
    return page


class _Builder:
    """Collects lines and the link targets while laying out one page."""

    def __init__(self, state: PageState):
        self.state = state
        self.lines: list[Line] = []
        self.targets: list[tuple[str, PageState]] = []

    def link(self, text: str, target: PageState) -> Segment:
        text = clean_text(text)
        self.targets.append((normalize_label(text), target))
        return Segment(text, target.to_query())

    def line(self, *segments: Segment | str) -> None:
        line = tuple(s if isinstance(s, Segment) else Segment(clean_text(s)) for s in segments)
        self.lines.append(tuple(s for s in line if s.text))

    def page(self, title: str) -> Page:
        return Page(clean_text(title), tuple(self.lines), tuple(self.targets))


def _layout(wiki: Wiki, state: PageState) -> Page:
    out = _Builder(state)
    if state.kind == "search":
        out.line("Search the wiki: write a query to see the articles that match it.")
        return out.page("Search")
    if state.kind == "results":
        found = wiki.search(state.query, RESULTS_PER_PAGE)
        out.line(_count(len(found)))
        for article, paragraph in found:
            title = wiki.titles[article]
            target = state.then("article", state.query, title)
            out.line(out.link(title, target), " " + _snippet(wiki.texts[paragraph]))
        return out.page(f'Search results for "{state.query}"')
    article = wiki.index[state.title]
    span = wiki.paragraph_range(article)
    shown = span[state.offset : state.offset + PARAGRAPHS_PER_SCREEN]
    for paragraph in shown:
        out.line(*_linked(wiki, state, out, paragraph))
    if len(span) > PARAGRAPHS_PER_SCREEN:
        position = f"Paragraphs {state.offset + 1}-{state.offset + len(shown)} of {len(span)}."
        more = state.offset + PARAGRAPHS_PER_SCREEN < len(span)
        out.line(position + (" Scroll down for more." if more else ""))
    return out.page(state.title)


def _linked(wiki: Wiki, state: PageState, out: _Builder, paragraph: int) -> list[Segment | str]:
    text = wiki.texts[paragraph]
    segments: list[Segment | str] = []
    position = 0
    for start, end, target in wiki.links_of(paragraph):
        segments.append(text[position:start])
        segments.append(out.link(text[start:end], state.then("article", state.query, wiki.titles[target])))
        position = end
    segments.append(text[position:])
    return segments


def _snippet(text: str) -> str:
    text = clean_text(text).strip()
    if len(text) <= SNIPPET_CHARS:
        return text
    cut = text[:SNIPPET_CHARS].rsplit(" ", 1)[0]
    return cut + " ..."


@dataclass(frozen=True)
class Transition:
    """The outcome of one action: the next state, or an error name (the state unchanged)."""

    state: PageState
    error: str | None = None


def parse_action(action: object) -> tuple[str, str] | str:
    """``(verb, argument)`` of ``verb[argument]`` or of a ``(verb, argument)`` pair, or an error name."""
    if isinstance(action, tuple) and len(action) == 2 and all(isinstance(a, str) for a in action):
        verb, argument = action[0].lower(), action[1]
        if verb not in VERBS:
            return "malformed"
    elif isinstance(action, str):
        match = _ACTION.match(action[: MAX_ARGUMENT_CHARS * 4])
        if match is None:
            return "too_long" if len(action) > MAX_ARGUMENT_CHARS * 4 else "malformed"
        verb, argument = match.group(1).lower(), match.group(2)
    else:
        return "malformed"
    if len(argument) > MAX_ARGUMENT_CHARS:
        return "too_long"
    return verb, argument


def transition(wiki: Wiki, state: PageState, action: object) -> Transition:
    """Apply one action to ``state`` (pure; never raises on any action)."""
    parsed = parse_action(action)
    if isinstance(parsed, str):
        return Transition(state, parsed)
    verb, argument = parsed
    if verb == "search":
        query = _SPACES.sub(" ", argument).strip()
        if not query:
            return Transition(state, "empty_query")
        return Transition(state.then("results", query))
    if verb == "back":
        if not state.back:
            return Transition(state, "no_back")
        return Transition(replace(state.back[-1], back=state.back[:-1]))
    if verb == "scroll":
        return _scroll(wiki, state, normalize_label(argument))
    target = build_page(wiki, state).target(argument)
    if target is None:
        return Transition(state, "unknown_link")
    return Transition(target)


def _scroll(wiki: Wiki, state: PageState, direction: str) -> Transition:
    if direction not in ("", "down", "up"):
        return Transition(state, "bad_scroll")
    if state.kind != "article":
        return Transition(state, "no_scroll")
    n = len(wiki.paragraph_range(wiki.index[state.title]))
    offset = (
        state.offset - PARAGRAPHS_PER_SCREEN if direction == "up" else state.offset + PARAGRAPHS_PER_SCREEN
    )
    if not 0 <= offset < n:
        return Transition(state, "no_scroll")
    return Transition(replace(state, offset=offset))


def _count(n: int) -> str:
    if n == 0:
        return "No articles match. Try other words."
    return "1 article matches." if n == 1 else f"{n} articles match."
