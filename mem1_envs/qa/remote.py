"""A search engine that asks a Search-R1-compatible retrieval server over HTTP.

``RemoteEngine("http://127.0.0.1:8000/retrieve")`` speaks the ``/retrieve`` API of Search-R1
and MEM1 (``POST {"queries": [...], "topk": k, "return_scores": true}`` answered by
``{"result": [[{"document": {"id", "contents"}, "score": s}, ...], ...]}``), so it works with
``python -m mem1_envs serve-retriever`` and with a user's own E5/FAISS server alike.

Failures are never turned into empty results: a request that times out, cannot connect or gets
a 5xx answer is retried with exponential back-off; when the tries are used up, or at once for a
4xx answer or a malformed body, :class:`RetrievalServiceError` says which URL failed and why.
A server that dies or stops answering therefore costs a search at most
``(retries + 1) * timeout + backoff * (2 ** retries - 1)`` seconds (defaults: 4 x 30 + 3.5 s);
it never hangs (``tests/test_faults.py`` freezes and kills a server mid-episode).
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from mem1_envs.errors import Mem1EnvsError
from mem1_envs.qa.world import split_contents
from mem1_envs.search import Hit


class RetrievalServiceError(Mem1EnvsError, RuntimeError):
    """The retrieval server could not answer (down, too slow, or answering nonsense)."""


class RemoteEngine:
    """:class:`~mem1_envs.search.SearchEngine` over HTTP (stdlib ``urllib``, no extra).

    Arguments: ``url`` of the ``/retrieve`` endpoint; ``timeout`` seconds per request;
    ``retries`` extra tries after a failure that may pass (connection refused, timeout, 5xx);
    ``backoff`` seconds before the first retry, doubled each time; ``batch_size`` queries per
    request (larger batches are split); ``check`` sends one probe query at construction, so a
    wrong URL or a stopped server is reported when the env is made, not mid-episode.
    """

    def __init__(
        self,
        url: str,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        batch_size: int = 256,
        check: bool = True,
    ):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"search must be an http(s) URL of a /retrieve endpoint, got {url!r}")
        for name, value, low in (("timeout", timeout, 0.0), ("backoff", backoff, 0.0)):
            if not value >= low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if timeout == 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.url, self.timeout, self.retries, self.backoff, self.batch_size = (
            url,
            timeout,
            retries,
            backoff,
            batch_size,
        )
        if check:
            self.search(["test"], k=1)

    def __repr__(self) -> str:
        return f"RemoteEngine({self.url!r})"

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        results: list[list[Hit]] = []
        for start in range(0, len(queries), self.batch_size):
            batch = list(queries[start : start + self.batch_size])
            body = self._post({"queries": batch, "topk": k, "return_scores": True})
            results.extend(self._parse(body, len(batch)))
        return results

    def _post(self, payload: dict) -> object:
        data = json.dumps(payload).encode("utf-8")
        delay, failure = self.backoff, ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(delay)
                delay *= 2
            request = urllib.request.Request(
                self.url, data=data, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as error:
                reason = error.read()[:300].decode("utf-8", "replace")
                failure = f"HTTP {error.code}: {reason}"
                if error.code < 500:  # our request is wrong: retrying will not help
                    break
                continue
            except (OSError, http.client.HTTPException) as error:  # refused, reset, timeout, cut off
                failure = f"{type(error).__name__}: {getattr(error, 'reason', error)}"
                continue
            try:
                return json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                failure = f"answer is not JSON: {raw[:200]!r}"
                break
        raise RetrievalServiceError(
            f"retrieval server {self.url} failed after {attempt + 1} tries: {failure}; "
            "is it running (python -m mem1_envs serve-retriever --index DIR)?"
        )

    def _parse(self, body: object, expected: int) -> list[list[Hit]]:
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, list) or len(result) != expected:
            raise RetrievalServiceError(
                f"retrieval server {self.url} answered without a 'result' list of {expected} entries: "
                f"{json.dumps(body)[:200]}"
            )
        hits: list[list[Hit]] = []
        for entries in result:
            if not isinstance(entries, list):
                raise RetrievalServiceError(
                    f"retrieval server {self.url}: a result is not a list: {entries!r:.200}"
                )
            hits.append([self._hit(entry) for entry in entries])
        return hits

    def _hit(self, entry: object) -> Hit:
        # With return_scores the document is nested; without, the entry is the document itself.
        document = entry.get("document", entry) if isinstance(entry, dict) else None
        score = entry.get("score", 0.0) if isinstance(entry, dict) else 0.0
        if not isinstance(document, dict) or not isinstance(document.get("contents"), str):
            raise RetrievalServiceError(
                f"retrieval server {self.url}: a document has no 'contents': {entry!r:.200}"
            )
        title, text = split_contents(document["contents"])
        return Hit(
            str(document.get("id", "")), title, text, float(score) if isinstance(score, int | float) else 0.0
        )
