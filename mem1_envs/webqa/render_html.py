"""The HTML renderer: a WebQA :class:`~mem1_envs.webqa.pages.Page` as a plain, self-contained web page.

``<h1>`` holds the page title, then one ``<p>`` per line: plain segments as (escaped) text, link
segments as ``<a href="/page?{link}">{text}</a>``. Nothing else is visible (no navigation chrome
the text mode lacks, no style, no script), so what a browser shows, read through its
accessibility tree by :func:`mem1_envs.ax_text.ax_text`, is exactly ``render_text(page)``.
The observer does not rely on this markup: it reads any page by generic rules.

>>> from types import SimpleNamespace as S
>>> page = S(title="Ada & Co", lines=((S(text="Born in ", link=None), S(text="London", link="kind=article&title=London")),))
>>> print(render_page_html(page))  # doctest: +NORMALIZE_WHITESPACE
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Ada &amp; Co</title></head>
<body>
<h1>Ada &amp; Co</h1>
<p>Born in <a href="/page?kind=article&amp;title=London">London</a></p>
</body></html>
"""

from __future__ import annotations

from html import escape
from typing import Any

PAGE_PATH = "/page"  # the web app's route for a page state (``/page?{state query}``)


def _segment(segment: Any) -> str:
    text = escape(segment.text, quote=False)
    if segment.link is None:
        return text
    return f'<a href="{escape(f"{PAGE_PATH}?{segment.link}")}">{text}</a>'


def render_page_html(page: Any) -> str:
    """The HTML document of ``page`` (any object with ``title`` and ``lines`` of segments)."""
    body = "\n".join("<p>" + "".join(_segment(s) for s in line) + "</p>" for line in page.lines)
    title = escape(page.title, quote=False)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title></head>\n<body>\n<h1>{title}</h1>\n{body}\n</body></html>\n"
    )
