"""The shop's local web app: an ASGI app (Starlette) served by uvicorn on 127.0.0.1.

The app serves the pure page model (:mod:`mem1_envs.shop.pages`) over HTTP. It keeps no
session state: every address carries the page state (``PageState.to_query()``), so one server
can serve any number of browser tabs and a stale page can never corrupt another. Routes::

    GET /                         the start (search) page
    GET /page?<state>             the page of a state (the env uses it to load a page directly)
    GET /search?query=<q>         the search box's form (method GET): search from the start page
    GET /act?<state>&action=<a>   a button's link: apply ``a`` to the state, show the next page

Every page is :func:`~mem1_envs.shop.render_html.render_html` of its state, with its reading
contract (the DOM's text equals ``render_text``). An action the page model refuses (only a
hand-edited address can do that) shows the unchanged page with status 400 and the error in the
``X-Shop-Error`` header; a bad address is a 400 or 404, never a crash of the server. The pages
have no external assets (inline style, no script, no CDN); ``/favicon.ico`` is an empty 204 so
that the browser asks nothing else.

``LocalServer`` (:mod:`mem1_envs.local_server`, re-exported here) runs the app in a daemon thread
on ``127.0.0.1`` and a port the kernel picks; ``stop()`` shuts it down and joins the thread.

Starlette and uvicorn are imported when a server starts, never at ``import mem1_envs`` time.
Serve a shop to look at it in a browser: ``python -m mem1_envs.shop.webapp --n-products 2000``.

Example (needs the ``browser`` extra, so it is not a doctest; the tests run it)::

    with LocalServer(build_app(load_shop(2000, 0))) as server:
        urllib.request.urlopen(server.url + "/search?query=potato+chips").read()
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import parse_qsl

from mem1_envs.local_server import LocalServer, import_server_libs, serve_until_interrupted
from mem1_envs.shop.engine import ShopEngine
from mem1_envs.shop.pages import MAX_ARGUMENT_CHARS, PageState, transition
from mem1_envs.shop.render_html import render_html
from mem1_envs.validation import check_int, cli_type

__all__ = ["LocalServer", "build_app", "main"]  # LocalServer: re-exported from mem1_envs.local_server

MAX_QUERY_STRING = 16 * MAX_ARGUMENT_CHARS + 4096  # a longer address is refused (414), not parsed


def build_app(shop: ShopEngine) -> Any:
    """The Starlette app serving ``shop``'s pages (see the module docstring for the routes)."""
    import_server_libs()
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, PlainTextResponse, Response
    from starlette.routing import Route

    def page_response(state: PageState, status: int = 200, error: str | None = None) -> Response:
        # Every address is a fresh state: the browser must never show a cached page.
        headers = {"Cache-Control": "no-store"}
        if error is not None:
            headers["X-Shop-Error"] = error
        try:
            html = render_html(shop, state, base="/")
        except Exception as failure:  # a hand-made state: a product index out of range...
            return PlainTextResponse(f"bad page state: {type(failure).__name__}: {failure}", status_code=400)
        return HTMLResponse(html, status_code=status, headers=headers)

    def query_fields(request: Request) -> dict[str, str] | None:
        raw = request.url.query
        if len(raw) > MAX_QUERY_STRING:
            return None
        return dict(parse_qsl(raw, keep_blank_values=True))

    async def start(request: Request) -> Response:
        return page_response(PageState())

    async def page(request: Request) -> Response:
        if query_fields(request) is None:
            return PlainTextResponse("address too long", status_code=414)
        return page_response(PageState.from_query(request.url.query))

    async def search(request: Request) -> Response:
        fields = query_fields(request)
        if fields is None:
            return PlainTextResponse("address too long", status_code=414)
        state = PageState()
        result = transition(shop, state, f"search[{fields.get('query', '')}]")
        if result.error is not None:
            return page_response(state, 400, result.error)
        return page_response(result.state)

    async def act(request: Request) -> Response:
        fields = query_fields(request)
        if fields is None:
            return PlainTextResponse("address too long", status_code=414)
        state = PageState.from_query(request.url.query)
        try:
            result = transition(shop, state, fields.get("action", ""))
        except Exception as error:  # a hand-made state (a product index out of range...)
            return PlainTextResponse(f"bad page state: {type(error).__name__}: {error}", status_code=400)
        if result.error is not None:
            return page_response(state, 400, result.error)
        return page_response(result.state)

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/", start),
            Route("/page", page),
            Route("/search", search),
            Route("/act", act),
            Route("/favicon.ico", favicon),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    """Serve a generated shop until Ctrl-C (to look at the pages in a browser)."""
    from mem1_envs.shop.engine import load_shop

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--n-products", type=cli_type(check_int, int, minimum=1), default=10_000)
    parser.add_argument("--catalog-seed", type=cli_type(check_int, int, minimum=0), default=0)
    args = parser.parse_args(argv)
    serve_until_interrupted(LocalServer(build_app(load_shop(args.n_products, args.catalog_seed))))


if __name__ == "__main__":
    main()
