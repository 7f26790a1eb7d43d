"""The accessibility-tree observer (mem1_envs.ax_text) on small static pages in headless Chromium."""

from __future__ import annotations

import pytest

from mem1_envs.ax_text import ax_text, collapse, find_links

# Each page's body and the text the observer must read from it.
PAGES = {
    "headings": (
        "<h1>Main   title</h1><h2>Sub <a href='/x'>linked</a></h2><h3></h3>",
        "# Main title\n# Sub linked",
    ),
    "paragraphs": ("<p>One.</p><p>Two\nlines\tjoined.</p><p>   </p><p></p>", "One.\nTwo lines joined."),
    "links": (
        "<p>See <a href='/a'>Ada  Lovelace</a>, <a href='/b'> spaced </a>and<a href='/c'>tight</a>.</p>"
        "<p><a href='/e'></a>empty link shows nothing</p>",
        "See [Ada Lovelace], [spaced]and[tight].\nempty link shows nothing",
    ),
    "lists": (
        "<ul><li>one <a href='/y'>two</a></li><li>three</li></ul><ol><li>first</li></ol>",
        "• one [two]\n• three\n1. first",
    ),
    "nested_inline": (
        "<p>a <em>b <strong>c</strong></em> <span class='k'>d</span> <span title='t'>e</span> <code>f</code>"
        " <a href='/q'><span>in</span> <em>side</em></a> g</p>",
        "a b c d e f [in side] g",
    ),
    "blocks": (
        "<div>div text <b>bold</b></div><div><div>inner</div> tail</div><section><p>in section</p></section>"
        "<p>x <span style='display:block'>block span</span> y</p><p>a<br>b</p>",
        "div text bold\ninner\ntail\nin section\nx\nblock span\ny\na\nb",
    ),
    "hidden": (
        "<p>shown<span style='display:none'>none</span><span style='visibility:hidden'>invisible</span>"
        "<span hidden>hidden</span><span aria-hidden='true'>aria</span></p><p style='display:none'>gone</p>"
        "<div aria-hidden='true'><p>gone too</p></div><p><img alt='alt text'> after image</p>",
        "shown\nafter image",
    ),
    "unicode": (
        "<p>中文 😀 é&nbsp;&nbsp;x &amp; &lt;tag&gt; &#91;br&#93;</p><p>Zürich —\u00a0Ελλάδα</p>",
        "中文 😀 é x & <tag> [br]\nZürich — Ελλάδα",
    ),
}


def test_collapse_and_empty_tree_without_a_browser() -> None:
    assert collapse("\u2003a\u00a0 b\n") == "a b"
    assert ax_text([]) == ""
    root = {"nodeId": "1", "role": {"value": "RootWebArea"}, "ignored": False, "childIds": ["2", "9"]}
    hidden = {
        "nodeId": "2",
        "parentId": "1",
        "role": {"value": "paragraph"},
        "ignored": True,
        "childIds": ["3"],
    }
    text = {
        "nodeId": "3",
        "parentId": "2",
        "role": {"value": "StaticText"},
        "name": {"value": "x"},
        "ignored": True,
    }
    # An ignored text, and a child id the reply does not hold (a racing mutation), give nothing.
    assert ax_text([root, hidden, text]) == ""


@pytest.fixture(scope="module")
def served() -> object:
    from mem1_envs.local_server import LocalServer, import_server_libs

    import_server_libs()
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    async def page(request: object) -> HTMLResponse:
        name = request.path_params["name"]  # type: ignore[attr-defined]
        if name not in PAGES:  # the browser's /favicon.ico
            return HTMLResponse("", status_code=404)
        body = PAGES[name][0]
        return HTMLResponse(
            f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>T</title></head><body>{body}</body></html>'
        )

    server = LocalServer(Starlette(routes=[Route("/{name}", page)]), name="mem1-test-server")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def driver() -> object:
    from mem1_envs.shop.browser import ManagedBrowser

    browser = ManagedBrowser()
    yield browser.driver
    browser.close()


@pytest.mark.browser
@pytest.mark.parametrize("name", sorted(PAGES))
def test_observer_reads_what_the_browser_shows(name: str, served: object, driver: object) -> None:
    from mem1_envs.ax_text import page_text

    driver.get(f"{served.url}/{name}")  # type: ignore[attr-defined]
    assert page_text(driver) == PAGES[name][1]


@pytest.mark.browser
def test_find_links_by_accessible_name(served: object, driver: object) -> None:
    from mem1_envs.ax_text import read_ax_nodes

    driver.get(f"{served.url}/links")  # type: ignore[attr-defined]
    nodes = read_ax_nodes(driver)
    (ada,) = find_links(nodes, "Ada   Lovelace")
    (spaced,) = find_links(nodes, "spaced")
    assert find_links(nodes, "nobody") == [] and find_links(nodes, "") == []
    described = driver.execute_cdp_cmd("DOM.describeNode", {"backendNodeId": ada})["node"]  # type: ignore[attr-defined]
    assert (
        described["nodeName"] == "A"
        and described["attributes"][described["attributes"].index("href") + 1] == "/a"
    )
    assert spaced != ada
