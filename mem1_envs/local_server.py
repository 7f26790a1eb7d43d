"""A local web server for an ASGI app: uvicorn in a daemon thread on ``127.0.0.1``, a free port.

Used by the browser envs (the shop's and WebQA's web apps). It binds ``127.0.0.1`` on a port the
kernel picks (``port=0``, so parallel envs never collide) and ``stop()`` shuts it down and joins
the thread. No process is started, so nothing can outlive the Python process that owns it.
Starlette and uvicorn are imported when a server starts, never at ``import mem1_envs`` time.

Example (needs the ``browser`` extra, so it is not a doctest; the tests run it)::

    with LocalServer(app, name="my-app") as server:
        urllib.request.urlopen(server.url + "/").read()
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from mem1_envs.shop.browser import BROWSER_EXTRA_HINT


def import_server_libs() -> Any:
    """Import starlette and uvicorn (the ``browser`` extra); return uvicorn."""
    try:
        import starlette
        import uvicorn
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(BROWSER_EXTRA_HINT) from error
    del starlette
    return uvicorn


class LocalServer:
    """An ASGI app on ``127.0.0.1:<free port>``, served by uvicorn in a background thread.

    ``start()`` is called by ``url`` or ``with``; ``stop()`` is idempotent.
    """

    def __init__(
        self,
        app: Any,
        start_timeout_s: float = 10.0,
        name: str = "mem1-shop-server",
        max_header_bytes: int | None = None,
    ) -> None:
        self.app = app
        # The most a request line + headers may take (None: uvicorn's 16 KiB); a longer request
        # is dropped by the HTTP parser before the app sees it.
        self.max_header_bytes = max_header_bytes
        self.name = name  # its thread is f"{name}-{port}"
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
        uvicorn = import_server_libs()
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
            **(
                {}
                if self.max_header_bytes is None
                else {"h11_max_incomplete_event_size": self.max_header_bytes}
            ),
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"{self.name}-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the web app {self.name!r} did not start on 127.0.0.1:{self.port}")
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


def serve_until_interrupted(server: LocalServer) -> None:
    """Start ``server``, print its address and serve until Ctrl-C (or until it stops), then stop it.

    The ``main`` of each family's web app (``python -m mem1_envs.shop.webapp``), to look at pages.
    """
    with server:
        print(f"serving on {server.url}/ (Ctrl-C stops)", flush=True)
        try:
            while server.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
