"""The text renderer: a page as WebShop-style lines, with the available actions last.

Each page line is its segments joined by one space; a button is ``[button] label [button_]``
(``[clicked button] ... [clicked button_]`` when selected); the last line lists the actions::

    [button] Back to Search [button_]
    Search results for "potato chips"
    ...
    Available actions: click[back to search], click[< prev], click[next >], click[p0000042], ...

>>> from mem1_envs.shop.pages import Page, Button
>>> print(render_page(Page((("Hello",), (Button("Buy Now"),)))))
Hello
[button] Buy Now [button_]
Available actions: click[buy now]
"""

from __future__ import annotations

from mem1_envs.shop.engine import ShopEngine
from mem1_envs.shop.pages import Button, Page, PageState, build_page

ACTIONS_PREFIX = "Available actions: "


def line_text(line: tuple[str | Button, ...]) -> str:
    return " ".join(s.text if isinstance(s, Button) else s for s in line)


def actions_line(page: Page) -> str:
    return ACTIONS_PREFIX + ", ".join(page.actions())


def render_page(page: Page) -> str:
    """All lines of ``page`` and the actions line, joined by newlines."""
    return "\n".join([*(line_text(line) for line in page.lines), actions_line(page)])


def render_text(shop: ShopEngine, state: PageState) -> str:
    """The text of the page shown in ``state``."""
    return render_page(build_page(shop, state))
