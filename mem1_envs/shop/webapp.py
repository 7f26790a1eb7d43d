"""The shop's local web app: an ASGI app (Starlette) served by uvicorn on 127.0.0.1.

The app is a thin HTTP face over sessions the caller owns: it holds no shop logic. A caller
registers a ``PageHandler`` under a random session id; the browser then reads

- ``GET  /s/{sid}``  the session's current page (``handler.page_html()``), and
- ``POST /s/{sid}``  an ``application/x-www-form-urlencoded`` form (a search box submission or
  a button press), given to ``handler.submit(fields)``, which answers the page to show next,

and ``GET /static/{name}`` serves the local assets (``STATIC_FILES``: no CDN, nothing external).
An unknown session or a handler error is a plain-text 404/400 page, never a crash of the server.

``LocalServer`` runs the app in a daemon thread: it binds ``127.0.0.1`` on a port the kernel
picks (``port=0``, so parallel envs never collide) and ``stop()`` shuts it down and joins the
thread. No process is started, so nothing can outlive the Python process that owns it.

Starlette and uvicorn are imported when a server starts, never at ``import mem1_envs`` time.

Example (needs the ``browser`` extra, so it is not a doctest; the tests run it)::

    class Echo:
        def page_html(self): return "<p>hello</p>"
        def submit(self, fields): return "<p>" + fields.get("q", "") + "</p>"

    with LocalServer() as server:
        sid = server.add_session(Echo())
        urllib.request.urlopen(server.url + "/s/" + sid).read()   # b'<p>hello</p>'
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from typing import Any, Protocol
from urllib.parse import parse_qsl

from mem1_envs.shop.browser import BROWSER_EXTRA_HINT

MAX_FORM_BYTES = 1_000_000  # a form body beyond this is refused (413), not parsed

# Local assets, served from memory so that a wheel needs no package data and no page ever asks
# another host for anything. Layout only: the text the env reads does not depend on it.
STATIC_FILES: dict[str, tuple[str, str]] = {
    "shop.css": (
        "text/css",
        "body{font-family:sans-serif;margin:1em;}\nbutton{margin:0 .2em;}\ninput[type=text]{width:30em;}\n",
    ),
}


class PageHandler(Protocol):
    """What the app asks of one session."""

    def page_html(self) -> str:
        """The HTML of the page the session shows now."""

    def submit(self, fields: dict[str, str]) -> str:
        """Apply one form submission and return the HTML of the page to show next."""


def _import_server_libs() -> tuple[Any, Any]:
    try:
        import starlette
        import uvicorn
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(BROWSER_EXTRA_HINT) from error
    return starlette, uvicorn


def build_app(sessions: dict[str, PageHandler]) -> Any:
    """The Starlette app over a (live, caller-owned) mapping of session id -> handler."""
    _import_server_libs()
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, PlainTextResponse, Response
    from starlette.routing import Route

    def _no_store(response: Response) -> Response:
        # Every page is a fresh state of a session: the browser must never show a cached one.
        response.headers["Cache-Control"] = "no-store"
        return response

    async def index(request: Request) -> Response:
        return PlainTextResponse(f"mem1-envs shop: {len(sessions)} session(s)")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return PlainTextResponse(f"no static file {name!r}", status_code=404)
        media_type, body = STATIC_FILES[name]
        return Response(body, media_type=media_type)

    async def page(request: Request) -> Response:
        handler = sessions.get(request.path_params["sid"])
        if handler is None:
            return PlainTextResponse("unknown session", status_code=404)
        if request.method == "GET":
            return _no_store(HTMLResponse(handler.page_html()))
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return PlainTextResponse(f"form larger than {MAX_FORM_BYTES} bytes", status_code=413)
        fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        try:
            html = handler.submit(fields)
        except Exception as error:  # a bad form must not take the server down
            return PlainTextResponse(f"bad request: {type(error).__name__}: {error}", status_code=400)
        return _no_store(HTMLResponse(html))

    return Starlette(
        routes=[
            Route("/", index),
            Route("/static/{name}", static),
            Route("/s/{sid}", page, methods=["GET", "POST"]),
        ]
    )


class LocalServer:
    """The web app on ``127.0.0.1:<free port>`` in a background thread.

    Sessions are added with ``add_session(handler)`` (returns the id) and removed with
    ``remove_session(sid)``. ``start()`` is called by the first ``add_session`` or ``url``.
    """

    def __init__(self, start_timeout_s: float = 10.0) -> None:
        self.sessions: dict[str, PageHandler] = {}
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
        _, uvicorn = _import_server_libs()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))  # the kernel picks a free port: no race between envs
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(self.sessions),
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

    def add_session(self, handler: PageHandler) -> str:
        if not self.running:
            self.start()
        sid = secrets.token_hex(8)
        self.sessions[sid] = handler
        return sid

    def remove_session(self, sid: str) -> None:
        self.sessions.pop(sid, None)

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
        self.sessions.clear()

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
