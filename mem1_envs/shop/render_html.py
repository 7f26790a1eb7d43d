"""The HTML renderer: the same :class:`~mem1_envs.shop.pages.Page` as a self-contained web page.

THE READING CONTRACT (the browser env depends on it; ``text_from_html`` implements it offline):

1. The page body holds ``<div id="page">``; every text line of :func:`render_text` is exactly
   one element with class ``line`` inside it, in order, the actions line last (it also has
   class ``actions``). Nothing else inside ``#page`` carries class ``line``.
2. The ``textContent`` of a line element equals the text line exactly: segments are separated
   by one literal space, markup inside a line has no other whitespace, and button markers are
   real text (``<span class="mark">[button]</span>``), not CSS. Read ``textContent``, not
   Selenium's ``.text`` (which depends on layout); entities decode to the original characters.
3. So ``"\\n".join(el.textContent for el in document.querySelectorAll("#page .line"))``
   equals ``render_text(shop, state)``.
4. Every clickable is an ``<a class="btn">`` with ``data-action="click[label]"`` (the exact
   action string the text mode accepts) and an ``href`` that performs it (default
   ``{base}act?<state query>&action=<action>``; the web app chooses ``base``). The search box
   is a ``<form class="line" data-action="search" action="{base}search">`` holding a text
   ``<input name="query">`` (no text content) and the marker ``[search box]``.
5. ``<div id="page">`` carries ``data-state`` = ``PageState.to_query()`` of the shown state.
6. No external assets: the stylesheet is inline, there is no script and no CDN.

>>> from mem1_envs.shop.engine import ShopEngine
>>> from mem1_envs.shop.catalog import generate_catalog
>>> from mem1_envs.shop.pages import PageState
>>> from mem1_envs.shop.render_text import render_text
>>> shop = ShopEngine.build(generate_catalog(50, seed=0))
>>> state = PageState("results", query="chips")
>>> text_from_html(render_html(shop, state)) == render_text(shop, state)
True
"""

from __future__ import annotations

from html import escape
from html.parser import HTMLParser
from urllib.parse import quote

from mem1_envs.shop.engine import ShopEngine
from mem1_envs.shop.pages import SEARCH_BOX, Button, Page, PageState, build_page
from mem1_envs.shop.render_text import actions_line

STYLE = """
body { font-family: sans-serif; max-width: 60em; margin: 1em auto; }
.line { margin: 0.25em 0; }
.btn { display: inline-block; padding: 0.1em 0.4em; border: 1px solid #888; border-radius: 4px;
       text-decoration: none; color: #123; background: #f4f4f4; }
.btn.clicked { background: #ffd27f; }
.mark { color: #999; font-size: 70%; }
.actions { color: #555; font-size: 85%; border-top: 1px solid #ddd; padding-top: 0.4em; }
"""


def _segment(segment: str | Button, state: PageState, base: str) -> str:
    if isinstance(segment, Button):
        marker = "clicked button" if segment.clicked else "button"
        href = f"{base}act?{state.to_query()}&action={quote(segment.action)}"
        css = "btn clicked" if segment.clicked else "btn"
        return (
            f'<a class="{css}" data-action="{escape(segment.action)}" href="{escape(href)}">'
            f'<span class="mark">[{marker}]</span> {escape(segment.label)} <span class="mark">[{marker}_]</span></a>'
        )
    return f'<span class="text">{escape(segment)}</span>'


def render_page_html(page: Page, state: PageState, base: str = "/") -> str:
    """The HTML document of ``page`` (shown in ``state``); see the module's contract."""
    lines = []
    for line in page.lines:
        if line == (SEARCH_BOX,):
            lines.append(
                f'<form class="line" data-action="search" method="get" action="{escape(base)}search">'
                f'<span class="text">{SEARCH_BOX}</span><input type="text" name="query" autofocus></form>'
            )
            continue
        lines.append('<div class="line">' + " ".join(_segment(s, state, base) for s in line) + "</div>")
    lines.append(f'<div class="line actions">{escape(actions_line(page))}</div>')
    body = "\n".join(lines)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>MEM1 Shop</title>'
        f"<style>{STYLE}</style></head>\n<body>\n"
        f'<div id="page" data-state="{escape(state.to_query())}">\n{body}\n</div>\n</body></html>\n'
    )


def render_html(shop: ShopEngine, state: PageState, base: str = "/") -> str:
    """The HTML document of the page shown in ``state``."""
    return render_page_html(build_page(shop, state), state, base)


class _LineReader(HTMLParser):
    """Collects the textContent of every ``.line`` element inside ``#page``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._depth = 0  # nesting depth inside the current line element (0: outside)
        self._buffer: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("input", "meta", "br", "img"):
            return
        if self._depth:
            self._depth += 1
            return
        classes = (dict(attrs).get("class") or "").split()
        if "line" in classes:
            self._depth = 1
            self._buffer = []

    def handle_endtag(self, tag: str) -> None:
        if self._depth:
            self._depth -= 1
            if self._depth == 0:
                self.lines.append("".join(self._buffer))

    def handle_data(self, data: str) -> None:
        if self._depth:
            self._buffer.append(data)


def text_from_html(document: str) -> str:
    """Read a rendered document the way the browser env reads the live DOM (rule 3)."""
    reader = _LineReader()
    reader.feed(document)
    reader.close()
    return "\n".join(reader.lines)
