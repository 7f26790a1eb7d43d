"""WebQA's web app in headless Chromium: the accessibility-tree observer reads exactly render_text."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest

from mem1_envs.ax_text import page_text
from mem1_envs.qa.world import SMALL_WORLD, generate_world
from mem1_envs.webqa.pages import MAX_ARGUMENT_CHARS, MAX_BACK, PageState, build_page, transition
from mem1_envs.webqa.render_text import render_text
from mem1_envs.webqa.webapp import MAX_QUERY_STRING, act_url, page_url, serve
from mem1_envs.webqa.wiki import Wiki, wiki_from_corpus, wiki_from_world

pytestmark = pytest.mark.browser

WORLD = generate_world(SMALL_WORLD, seed=0)

# A corpus with what real text holds: accents, CJK, emoji, entities, odd spaces, brackets, a
# long article (scrolling), titles inside titles, and markup-like text that must stay text.
ODD_ROWS = [
    {"id": "0", "contents": '"Zürich"\nZürich  is a city in Switzerland; see São Paulo & <b>Tokyo</b>.'},
    {"id": "1", "contents": '"Switzerland"\nSwitzerland [CH] borders\tFrance\u00a0and Italy — 瑞士 😀.'},
    {"id": "2", "contents": '"São Paulo"\nSão Paulo is larger than Zürich.   Trailing spaces   '},
    {"id": "3", "contents": '"Tokyo"\nTokyo &amp; Zürich &lt;tag&gt; "quoted" \'single\' back\\slash.'},
    *(
        {"id": str(4 + i), "contents": f'"Switzerland"\nParagraph {i} mentions France and Tokyo.'}
        for i in range(8)
    ),
    {"id": "20", "contents": '"France"\nFrance.'},
]


def walk(wiki: Wiki, names: list[str], seed: int, steps: int) -> list[PageState]:
    """States reached by random valid actions (searches for names, clicks, backs, scrolls)."""
    rng = np.random.default_rng(seed)
    state, states = PageState(), [PageState()]
    for _ in range(steps):
        links = build_page(wiki, state).links()
        choice = int(rng.integers(10))
        if choice == 0 or not links:
            action = f"search[{names[int(rng.integers(len(names)))]}]"
        elif choice == 1:
            action = "back[]"
        elif choice == 2:
            action = "scroll[down]" if rng.integers(2) else "scroll[up]"
        else:
            action = f"click[{links[int(rng.integers(len(links)))]}]"
        state = transition(wiki, state, action).state  # a refused action keeps the state
        states.append(state)
    return states


@pytest.fixture(scope="module")
def driver() -> Any:
    from mem1_envs.shop.browser import ManagedBrowser

    browser = ManagedBrowser()
    yield browser.driver
    browser.close()


def _get(url: str) -> tuple[int, dict[str, str], str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode(), response.url
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode(), url


@pytest.mark.parametrize("source", ["world", "odd_corpus"])
def test_ax_observer_reads_render_text_on_many_pages(source: str, driver: Any) -> None:
    if source == "world":
        wiki, names = wiki_from_world(WORLD), list(WORLD.entity_names)
        states = [s for seed in range(4) for s in walk(wiki, names, seed, 40)]
    else:
        wiki = wiki_from_corpus(ODD_ROWS)
        names = [*wiki.titles, "Zürich Tokyo", "nothing matches this"]
        states = [s for seed in range(4) for s in walk(wiki, names, seed, 30)]
    unique = list(dict.fromkeys(states))
    assert len(unique) >= (100 if source == "world" else 25)
    assert {s.kind for s in unique} == {"search", "results", "article"}
    if source == "odd_corpus":  # the world's articles fit one screen; this corpus's do not
        assert any(s.offset > 0 for s in unique)
    with serve(wiki) as server:
        for state in unique:
            driver.get(server.url + page_url(state))
            assert page_text(driver) == render_text(wiki, state), state


def test_web_app_routes_and_refusals() -> None:
    wiki = wiki_from_world(WORLD)
    server = serve(wiki)
    try:
        url = server.url
        status, headers, body, _ = _get(url + "/")
        assert status == 200 and headers["cache-control"] == "no-store" and "<h1>Search</h1>" in body
        name = WORLD.entity_names[3]
        status, _, body, landed = _get(url + act_url(PageState(), f"search[  {name} ]"))
        results = transition(wiki, PageState(), f"search[{name}]").state
        assert status == 200 and landed == url + page_url(results)  # followed the 303
        assert _get(url + page_url(results))[2] == body
        status, headers, body, _ = _get(url + act_url(results, "click[no such link]"))
        assert status == 400 and headers["x-webqa-error"] == "unknown_link"
        assert _get(url + act_url(PageState(), "scroll[down]"))[1]["x-webqa-error"] == "no_scroll"
        # Hand-made addresses: an unknown article or kind shows the search page, never a crash.
        assert "<h1>Search</h1>" in _get(url + "/page?kind=article&title=Nowhere&offset=7")[2]
        assert "<h1>Search</h1>" in _get(url + "/page?kind=nonsense&offset=x")[2]
        assert _get(url + "/page?x=" + "a" * (MAX_QUERY_STRING + 1))[0] == 414
        assert _get(url + "/favicon.ico")[0] == 204 and _get(url + "/static/x.js")[0] == 404
        # The longest state the page model can reach (a full back stack of long non-ASCII
        # searches) is still served.
        state = PageState()
        for index in range(MAX_BACK + 3):
            state = transition(wiki, state, f"search[{str(index) + 'é' * (MAX_ARGUMENT_CHARS - 4)}]").state
        status, _, body, _ = _get(url + page_url(state))
        assert len(page_url(state)) > 16_384 and status == 200 and "Search results for" in body
        port = server.port
    finally:
        server.stop()
    assert not server.running
    import socket

    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
