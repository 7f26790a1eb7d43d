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

``LocalServer`` runs the app in a daemon thread: it binds ``127.0.0.1`` on a port the kernel
picks (``port=0``, so parallel envs never collide) and ``stop()`` shuts it down and joins the
thread. No process is started, so nothing can outlive the Python process that owns it.

Starlette and uvicorn are imported when a server starts, never at ``import mem1_envs`` time.
Serve a shop to look at it in a browser: ``python -m mem1_envs.shop.webapp --n-products 2000``.

Example (needs the ``browser`` extra, so it is not a doctest; the tests run it)::

    with LocalServer(build_app(load_shop(2000, 0))) as server:
        urllib.request.urlopen(server.url + "/search?query=potato+chips").read()
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from typing import Any
from urllib.parse import parse_qsl

from mem1_envs.shop.browser import BROWSER_EXTRA_HINT
from mem1_envs.shop.engine import ShopEngine
from mem1_envs.shop.pages import MAX_ARGUMENT_CHARS, PageState, transition
from mem1_envs.shop.render_html import render_html
from mem1_envs.validation import check_int, cli_type

MAX_QUERY_STRING = 16 * MAX_ARGUMENT_CHARS + 4096  # a longer address is refused (414), not parsed


def _import_server_libs() -> Any:
    try:
        import starlette
        import uvicorn
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(BROWSER_EXTRA_HINT) from error
    del starlette
    return uvicorn


def build_app(shop: ShopEngine) -> Any:
    """The Starlette app serving ``shop``'s pages (see the module docstring for the routes)."""
    _import_server_libs()
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


class LocalServer:
    """An ASGI app on ``127.0.0.1:<free port>``, served by uvicorn in a background thread.

    ``start()`` is called by ``url`` or ``with``; ``stop()`` is idempotent.
    """

    def __init__(self, app: Any, start_timeout_s: float = 10.0) -> None:
        self.app = app
        self.start_timeout_s = start_timeout_s
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port: int | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def url(self) -> str:
        if not self.running:
            self.start()
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.running:
            return
        uvicorn = _import_server_libs()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))  # the kernel picks a free port: no race between envs
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"mem1-shop-server-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the shop web app did not start on 127.0.0.1:{self.port}")
            time.sleep(0.005)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Shut the server down and join its thread. Idempotent."""
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(timeout_s)
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve a generated shop until Ctrl-C (to look at the pages in a browser)."""
    from mem1_envs.shop.engine import load_shop

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--n-products", type=cli_type(check_int, int, minimum=1), default=10_000)
    parser.add_argument("--catalog-seed", type=cli_type(check_int, int, minimum=0), default=0)
    args = parser.parse_args(argv)
    with LocalServer(build_app(load_shop(args.n_products, args.catalog_seed))) as server:
        print(f"serving on {server.url}/ (Ctrl-C stops)", flush=True)
        try:
            while server.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
