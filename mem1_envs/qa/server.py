"""A retrieval server speaking Search-R1's and MEM1's ``/retrieve`` API (extra ``serve``).

``POST /retrieve`` with ``{"queries": ["q1", ...], "topk": 3, "return_scores": true}`` answers
``{"result": [[{"document": {"id": "...", "contents": "\\"Title\\"\\ntext"}, "score": 1.5}, ...], ...]}``
(one list per query; without ``return_scores`` each entry is the document itself), exactly as
Search-R1's ``retrieval_server.py``, so MEM1's and Search-R1's training code can use our indexes
unchanged. ``topk`` defaults to 3 when omitted.

Bad requests never reach the engine: a body over the size limit gets 413, malformed or too deeply
nested JSON 400, a body not received in full within ``body_timeout`` seconds (a client that
declared more bytes than it sends) 408, anything else out of bounds (missing ``queries``,
``topk`` of 0 or above the limit, too many or too long queries) 422; every error body is
``{"error": "reason"}``, and a 408 or 413 closes the connection. ``topk`` is read as Search-R1's
pydantic server reads an ``int``: ``3``, ``"3"``, ``2.0`` and ``"2.0"`` are accepted, ``2.5`` and
``true`` are not. A client that disconnects mid-upload costs one log line, never a traceback.
Queries arriving together
from several clients (e.g. the workers of an ``AsyncVectorEnv``) are coalesced into one engine
call. Run it with ``python -m mem1_envs serve-retriever --index DIR --port 8000`` (127.0.0.1 by
default: loopback only).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
from dataclasses import dataclass, fields
from typing import Any

from mem1_envs.errors import Mem1EnvsError
from mem1_envs.qa.corpus import join_contents
from mem1_envs.search import Hit, SearchEngine
from mem1_envs.validation import check_float, check_int


@dataclass(frozen=True)
class ServiceLimits:
    """What one ``/retrieve`` request may ask for; larger requests get a 4xx answer."""

    max_queries: int = 4096
    """Queries per request."""
    max_topk: int = 100
    """Largest ``topk``."""
    max_query_chars: int = 4096
    """Characters per query."""
    max_body_bytes: int = 8 * 2**20
    """Request body size in bytes."""
    default_topk: int = 3
    """``topk`` of a request that omits it (Search-R1's default)."""
    max_batch_queries: int = 4096
    """Queries coalesced into one engine call across concurrent requests."""
    body_timeout: float = 5.0
    """Seconds to receive a whole request body; a client still sending after that gets 408."""

    def __post_init__(self) -> None:
        for spec in fields(self):
            if spec.name == "body_timeout":
                check_float(spec.name, self.body_timeout, above=0)
            else:
                check_int(spec.name, getattr(self, spec.name), minimum=1)
        if self.default_topk > self.max_topk:
            raise ValueError(f"default_topk must be <= max_topk={self.max_topk}, got {self.default_topk}")


class BadRequest(Mem1EnvsError):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


# What pydantic (Search-R1's server) parses as an int from a string: digits, optionally signed,
# with ``_`` between digits or a zero fraction ("3", " +3 ", "1_0", "3.0"); "3.5" or "1e2" are not.
_INTEGRAL_STRING = re.compile(r"\s*([+-]?\d+(?:_\d+)*)(?:\.0*)?\s*")


def parse_topk(value: object) -> int | None:
    """The integer a ``topk`` value stands for, as Search-R1's pydantic ``int`` field reads it
    (``None`` when it is not integral); bools are refused although pydantic takes them.

    >>> [parse_topk(v) for v in (3, "3", 2.0, "2.0", 2.5, True, "x")]
    [3, 3, 2, 2, None, None, None]
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        match = _INTEGRAL_STRING.fullmatch(value)
        return int(match.group(1)) if match and len(value) <= 100 else None
    return None


def parse_request(body: bytes, limits: ServiceLimits) -> tuple[list[str], int, bool]:
    """Validate a ``/retrieve`` body: ``(queries, topk, return_scores)`` or :class:`BadRequest`.

    >>> parse_request(b'{"queries": ["a"], "topk": 2}', ServiceLimits())
    (['a'], 2, False)
    >>> parse_request(b'{"queries": ["a"], "topk": "2"}', ServiceLimits())
    (['a'], 2, False)
    >>> parse_request(b'{"queries": ["a"], "topk": 0}', ServiceLimits())
    Traceback (most recent call last):
    ...
    mem1_envs.qa.server.BadRequest: 'topk' must be an integer in 1..100, got 0
    """
    if len(body) > limits.max_body_bytes:
        raise BadRequest(
            413, f"request body of {len(body)} bytes exceeds the limit of {limits.max_body_bytes}"
        )
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequest(400, f"malformed JSON: {error}") from None
    except RecursionError:  # e.g. 100k "[": the decoder's recursion guard, not a server fault
        raise BadRequest(400, "malformed JSON: nested too deeply") from None
    if not isinstance(payload, dict):
        raise BadRequest(422, f"the body must be a JSON object, got {type(payload).__name__}")
    queries = payload.get("queries")
    if queries is None:
        raise BadRequest(422, "'queries' is required: a list of strings")
    if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
        raise BadRequest(422, "'queries' must be a list of strings")
    if len(queries) > limits.max_queries:
        raise BadRequest(422, f"{len(queries)} queries exceed the limit of {limits.max_queries} per request")
    for i, query in enumerate(queries):
        if len(query) > limits.max_query_chars:
            raise BadRequest(
                422, f"query {i} has {len(query)} characters, more than the limit of {limits.max_query_chars}"
            )
    raw_topk = payload.get("topk")
    topk = limits.default_topk if raw_topk is None else parse_topk(raw_topk)
    if topk is None or not 1 <= topk <= limits.max_topk:
        raise BadRequest(422, f"'topk' must be an integer in 1..{limits.max_topk}, got {raw_topk!r:.100}")
    return_scores = payload.get("return_scores", False)
    if not isinstance(return_scores, bool):
        raise BadRequest(422, f"'return_scores' must be true or false, got {return_scores!r}")
    return queries, topk, return_scores


def render_result(hits: list[list[Hit]], return_scores: bool) -> dict[str, Any]:
    """Search-R1's answer body for per-query hits."""
    result = []
    for query_hits in hits:
        documents = [{"id": h.doc_id, "contents": join_contents(h.title, h.text)} for h in query_hits]
        if return_scores:
            result.append(
                [{"document": d, "score": h.score} for d, h in zip(documents, query_hits, strict=True)]
            )
        else:
            result.append(documents)
    return {"result": result}


class _Coalescer:
    """Runs queued requests' queries in one engine call (in a worker thread, off the event loop)."""

    def __init__(self, engine: SearchEngine, max_batch: int):
        self.engine, self.max_batch = engine, max_batch
        self.queue: asyncio.Queue | None = None
        self.worker: asyncio.Task | None = None

    async def search(self, queries: list[str], k: int) -> list[list[Hit]]:
        if self.queue is None:
            self.queue = asyncio.Queue()
            self.worker = asyncio.get_running_loop().create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((queries, k, future))
        return await future

    async def _run(self) -> None:
        assert self.queue is not None
        while True:
            items = [await self.queue.get()]
            size = len(items[0][0])
            while not self.queue.empty() and size < self.max_batch:
                items.append(self.queue.get_nowait())
                size += len(items[-1][0])
            queries = [q for item in items for q in item[0]]
            k = max(item[1] for item in items)
            try:
                hits = await asyncio.to_thread(self.engine.search, queries, k) if queries else []
            except Exception as error:  # the engine failed: every waiting request gets a 500
                for _, _, future in items:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for item_queries, item_k, future in items:
                if not future.done():
                    future.set_result([h[:item_k] for h in hits[start : start + len(item_queries)]])
                start += len(item_queries)


# uvicorn's own error logger: its handler and level (``log_level``) are what the operator set up.
_log = logging.getLogger("uvicorn.error")


def _client(request: Any) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else "a client"


async def _read_body(request: Any, limits: ServiceLimits) -> bytes:
    """The request body, or :class:`BadRequest` 413 (too large) / 408 (not sent in time)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise BadRequest(
            413, f"request body of {declared} bytes exceeds the limit of {limits.max_body_bytes}"
        )
    body = bytearray()
    try:
        # One deadline for the whole body: a client trickling a byte at a time is cut off too.
        async with asyncio.timeout(limits.body_timeout):
            async for chunk in request.stream():
                body.extend(chunk)
                if len(body) > limits.max_body_bytes:
                    raise BadRequest(413, f"request body exceeds the limit of {limits.max_body_bytes} bytes")
    except TimeoutError:
        expected = f" of {declared}" if declared is not None else ""
        _log.warning(
            "%s sent %d%s body bytes in %gs: answered 408",
            _client(request),
            len(body),
            expected,
            limits.body_timeout,
        )
        raise BadRequest(
            408,
            f"request body not received within {limits.body_timeout:g} s ({len(body)}{expected} bytes came)",
        ) from None
    return bytes(body)


def create_app(engine: SearchEngine, limits: ServiceLimits | None = None) -> Any:
    """The Starlette app serving ``engine`` at ``POST /retrieve``."""
    try:
        from starlette.applications import Starlette
        from starlette.requests import ClientDisconnect
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route
    except ImportError:
        raise ImportError(
            "the retrieval server needs starlette and uvicorn: pip install mem1-envs[serve]"
        ) from None
    limits = limits or ServiceLimits()
    coalescer = _Coalescer(engine, limits.max_batch_queries)

    async def retrieve(request: Any) -> Any:
        try:
            body = await _read_body(request, limits)
            queries, topk, return_scores = parse_request(body, limits)
        except ClientDisconnect:
            # Nobody is left to answer; one line instead of Starlette's traceback.
            _log.warning("%s disconnected before sending the whole request body", _client(request))
            return Response(status_code=400)
        except BadRequest as error:
            # 408/413 leave unread body bytes on the connection: close it rather than parse them.
            headers = {"Connection": "close"} if error.status in (408, 413) else None
            return JSONResponse({"error": error.reason}, status_code=error.status, headers=headers)
        try:
            hits = await coalescer.search(queries, topk)
        except Exception as error:
            return JSONResponse({"error": f"search failed: {type(error).__name__}: {error}"}, status_code=500)
        return JSONResponse(render_result(hits, return_scores))

    return Starlette(routes=[Route("/retrieve", retrieve, methods=["POST"])])


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (``port=0``: a free port, read it from ``getsockname()``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def _uvicorn_server(app: Any, log_level: str) -> Any:
    try:
        import uvicorn
    except ImportError:
        raise ImportError(
            "the retrieval server needs starlette and uvicorn: pip install mem1-envs[serve]"
        ) from None
    return uvicorn.Server(
        uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=2, access_log=False)
    )


def warm_up(engine: SearchEngine) -> None:
    """Run one real query, so JIT compilation (numba, torch) happens before any client waits.

    The query is a passage title when the engine exposes titles: a query with no indexed word
    would return before reaching the compiled code.
    """
    titles = getattr(engine, "titles", None)
    if titles is None:
        titles = getattr(getattr(engine, "store", None), "titles", None)
    query = str(titles[0]) if titles is not None and len(titles) else ""
    engine.search([query or "warm up"], 1)


def serve(
    engine: SearchEngine,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: ServiceLimits | None = None,
    log_level: str = "warning",
) -> None:
    """Serve until interrupted; prints ``serving at http://HOST:PORT/retrieve`` once listening."""
    server = _uvicorn_server(create_app(engine, limits), log_level)
    warm_up(engine)
    sock = bind(host, port)
    actual = sock.getsockname()[1]
    print(f"serving at http://{host}:{actual}/retrieve", flush=True)
    server.run(sockets=[sock])


class ServerThread:
    """Serve an engine from a background thread of this process (tests, benchmarks, notebooks).

    >>> from mem1_envs.search import BM25Engine
    >>> engine = BM25Engine.build(["1"], ["Oslo"], ["Oslo is a city."])
    >>> with ServerThread(engine) as url:  # doctest: +SKIP
    ...     print(url)
    http://127.0.0.1:41234/retrieve
    """

    def __init__(self, engine: SearchEngine, limits: ServiceLimits | None = None, host: str = "127.0.0.1"):
        self.server = _uvicorn_server(create_app(engine, limits), "warning")
        self.sock = bind(host, 0)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}/retrieve"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> str:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return self.url
            if not self.thread.is_alive():
                break
            threading.Event().wait(0.01)
        raise RuntimeError(f"retrieval server at {self.url} did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
