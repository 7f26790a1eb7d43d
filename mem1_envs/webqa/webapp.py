"""The wiki's local web app: an ASGI app (Starlette) serving the page model as HTML.

Stateless like the shop's (:mod:`mem1_envs.shop.webapp`): every address carries the page state
(``PageState.to_query()``, back stack included), so one server serves any number of tabs.
Routes::

    GET /                         the search page
    GET /page?<state>             the page of a state (what every link on a page points to)
    GET /act?<state>&action=<a>   apply action ``a`` (``search[q]``, ``scroll[down]``...) to the
                                  state and redirect (303) to ``/page?<next state>``

A state the wiki cannot show (a hand-edited address) shows the search page; an action the page
model refuses shows the unchanged page with status 400 and the error in ``X-WebQA-Error``; an
over-long address is a 414. Pages are :func:`~mem1_envs.webqa.render_html.render_page_html`
of the page model's :class:`~mem1_envs.webqa.pages.Page`: no script, no style, no external
asset; ``/favicon.ico`` is an empty 204 so that the browser asks nothing else.

Served by :class:`mem1_envs.local_server.LocalServer` (uvicorn in a thread, ``127.0.0.1``, a
free port). Starlette and uvicorn are imported when the app is built, not at ``import mem1_envs``.
Serve the generated world's wiki to look at it: ``python -m mem1_envs.webqa.webapp``.

Example (needs the ``browser`` extra, so it is not a doctest; the tests run it)::

    with LocalServer(build_app(wiki), name="mem1-webqa-server") as server:
        urllib.request.urlopen(server.url + "/act?kind=search&action=search%5BOslo%5D").read()
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import parse_qsl, urlencode

from mem1_envs.local_server import LocalServer, import_server_libs, serve_until_interrupted
from mem1_envs.webqa.pages import MAX_ARGUMENT_CHARS, MAX_BACK, PageState, build_page, sanitize, transition
from mem1_envs.webqa.render_html import PAGE_PATH, render_page_html
from mem1_envs.webqa.wiki import Wiki

# The longest address a state can have is its back stack of MAX_BACK states, each quoted twice
# (percent signs of UTF-8 bytes quoted again): an address beyond this one is refused (414).
MAX_QUERY_STRING = (MAX_BACK + 2) * 16 * (2 * MAX_ARGUMENT_CHARS + 64)
SERVER_NAME = "mem1-webqa-server"  # the server thread's name prefix


def page_url(state: PageState) -> str:
    """The path of ``state``'s page (what the links on pages point to).

    >>> page_url(PageState())
    '/page?kind=search&query=&title=&offset=0'
    """
    return f"{PAGE_PATH}?{state.to_query()}"


def act_url(state: PageState, action: str) -> str:
    """The path that applies ``action`` to ``state`` (the app redirects to the next page)."""
    return f"/act?{state.to_query()}&{urlencode({'action': action})}"


def build_app(wiki: Wiki) -> Any:
    """The Starlette app serving ``wiki``'s pages (see the module docstring for the routes)."""
    import_server_libs()
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
    from starlette.routing import Route

    headers = {"Cache-Control": "no-store"}  # every address is a fresh state: never a cached page

    def page_response(state: PageState, status: int = 200, error: str | None = None) -> Response:
        extra = {} if error is None else {"X-WebQA-Error": error}
        html = render_page_html(build_page(wiki, state))
        return HTMLResponse(html, status_code=status, headers={**headers, **extra})

    def state_of(request: Request) -> PageState | None:
        raw = request.url.query
        if len(raw) > MAX_QUERY_STRING:
            return None
        return sanitize(wiki, PageState.from_query(raw))

    async def start(request: Request) -> Response:
        return page_response(PageState())

    async def page(request: Request) -> Response:
        state = state_of(request)
        if state is None:
            return PlainTextResponse("address too long", status_code=414)
        return page_response(state)

    async def act(request: Request) -> Response:
        state = state_of(request)
        if state is None:
            return PlainTextResponse("address too long", status_code=414)
        action = dict(parse_qsl(request.url.query, keep_blank_values=True)).get("action", "")
        result = transition(wiki, state, action)
        if result.error is not None:
            return page_response(state, 400, result.error)
        return RedirectResponse(page_url(result.state), status_code=303, headers=headers)

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/", start),
            Route(PAGE_PATH, page),
            Route("/act", act),
            Route("/favicon.ico", favicon),
        ]
    )


def serve(wiki: Wiki) -> LocalServer:
    """A (not yet started) local server of ``wiki``'s app."""
    # Deep back stacks of long searches make addresses over uvicorn's 16 KiB default.
    return LocalServer(build_app(wiki), name=SERVER_NAME, max_header_bytes=2 * MAX_QUERY_STRING)


def main(argv: list[str] | None = None) -> None:
    """Serve the generated world's wiki until Ctrl-C (to look at the pages in a browser)."""
    from mem1_envs.qa.world import generate_world
    from mem1_envs.validation import check_int, cli_type
    from mem1_envs.webqa.wiki import wiki_from_world

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--world-seed", type=cli_type(check_int, int, minimum=0), default=0)
    args = parser.parse_args(argv)
    serve_until_interrupted(serve(wiki_from_world(generate_world(seed=args.world_seed))))


if __name__ == "__main__":
    main()
