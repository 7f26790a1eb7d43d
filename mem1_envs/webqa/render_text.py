"""THE canonical text of a wiki page; the text mode shows it and the browser mode must read the same.

Rules: the first line is ``# {title}``; then one line per page line: its segments concatenated
in order, a link written ``[{text}]``, plain text as is; whitespace runs collapsed to one space;
lines stripped; empty lines dropped; lines joined with ``"\\n"``. (Segment texts never hold
``[``, ``]`` or newlines: :func:`mem1_envs.webqa.pages.clean_text` replaced them.)

>>> from mem1_envs.webqa.pages import Page, Segment
>>> print(render_page(Page("Oslo", ((Segment("Oslo is in "), Segment("Norway", "kind=article"), Segment(".")),
...                                 (Segment("  "),)))))
# Oslo
Oslo is in [Norway].
"""

from __future__ import annotations

import re

from mem1_envs.webqa.pages import Line, Page, PageState, Segment, build_page
from mem1_envs.webqa.wiki import Wiki

_SPACES = re.compile(r"\s+")


def line_text(line: Line) -> str:
    """One page line as text (whitespace collapsed, stripped)."""
    raw = "".join(f"[{s.text}]" if s.link is not None else s.text for s in line)
    return _SPACES.sub(" ", raw).strip()


def render_page(page: Page) -> str:
    """The canonical text of ``page`` (see the module docstring)."""
    heading = (Segment(f"# {page.title}"),)  # the same whitespace rule as every line
    lines = [line_text(heading), *map(line_text, page.lines)]
    return "\n".join(line for line in lines if line)


def render_text(wiki: Wiki, state: PageState) -> str:
    """The text of the page shown in ``state`` (memoised beside the page: both are pure)."""
    key = ("text", state)
    text = wiki.page_cache.get(key)
    if text is None:
        text = render_page(build_page(wiki, state))
        wiki.page_cache[key] = text
    return text
