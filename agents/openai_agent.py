"""An agent that plays any env through an OpenAI-compatible server (vLLM, SGLang, llama.cpp, hosted).

The env builds the context (its memory policy applies: ``mem1``, ``window`` or ``full``); the
agent sends it as is, as one user message (``api="chat"``, ``/chat/completions``) or as the raw
prompt (``api="completions"``, ``/completions``), and returns the response text. Standard
library only (``urllib``): no ``openai`` package needed.

Generation stops at the protocol's closing action tags. OpenAI-style servers drop a matched
stop string from the returned text; the agent puts it back (vLLM's ``stop_reason`` names it;
otherwise the one whose opening tag is left open), so the env parses a complete action.

Failures are bounded: each request has a socket ``timeout``; connection errors, timeouts and
HTTP 408/409/429/5xx are retried ``retries`` times with exponential backoff (``Retry-After``
honoured up to ``max_backoff``); anything else, or the last failure, raises
:class:`OpenAIAgentError` with a one-line message. ``rate_limit`` spaces requests to at most
that many per second.

>>> agent = OpenAIAgent("http://127.0.0.1:8000/v1", "my-model", api="completions")
>>> agent.url
'http://127.0.0.1:8000/v1/completions'
>>> agent.restore_stop("<think>s</think><search>Oslo", "stop", None)
'<think>s</think><search>Oslo</search>'
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from typing import Any

from agents.llm_policy import stop_strings_for
from mem1_envs.errors import Mem1EnvsError

__all__ = ["OpenAIAgent", "OpenAIAgentError"]

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class OpenAIAgentError(Mem1EnvsError, RuntimeError):
    """A request that failed for good; the message is one line."""


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class OpenAIAgent:
    """One-environment agent (:class:`agents.base.Agent`) backed by an OpenAI-compatible server.

    Args:
        base_url: the server's API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the served model name.
        api: ``"chat"`` or ``"completions"``.
        api_key: bearer token (default: ``$OPENAI_API_KEY`` if set, else none).
        protocol: tag set whose closing action tags stop a response.
        max_tokens, temperature, top_p: sampling settings sent with every request.
        timeout: seconds per socket operation of one request.
        retries: extra attempts after a retryable failure.
        backoff: first retry delay in seconds (doubled each retry, capped at ``max_backoff``).
        rate_limit: at most this many requests per second (None: no limit).
        system_prompt: an optional system message (chat only).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api: str = "chat",
        api_key: str | None = None,
        protocol: str = "mem1",
        max_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        timeout: float = 60.0,
        retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        rate_limit: float | None = None,
        system_prompt: str | None = None,
    ):
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not model:
            raise ValueError(f"model must be a non-empty name, got {model!r}")
        if api not in ("chat", "completions"):
            raise ValueError(f"api must be 'chat' or 'completions', got {api!r}")
        for name, value, ok, rule in (
            ("max_tokens", max_tokens, max_tokens >= 1, ">= 1"),
            ("timeout", timeout, timeout > 0, "> 0"),
            ("retries", retries, retries >= 0, ">= 0"),
            ("backoff", backoff, backoff >= 0, ">= 0"),
            ("max_backoff", max_backoff, max_backoff >= 0, ">= 0"),
            ("rate_limit", rate_limit, rate_limit is None or rate_limit > 0, "> 0 or None"),
        ):
            if not ok:
                raise ValueError(f"{name} must be {rule}, got {value!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api = api
        self.url = f"{self.base_url}/{'chat/completions' if api == 'chat' else 'completions'}"
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.stop = list(stop_strings_for(protocol))
        self.sampling = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p}
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.interval = 0.0 if rate_limit is None else 1.0 / rate_limit
        self.system_prompt = system_prompt
        self.requests = 0
        self.failed_attempts = 0
        self._next_request = 0.0

    def reset(self, seed: int | None = None) -> None:
        """Nothing is kept between turns: the env's observation is the whole context."""

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Send the observation as is; return the response with its closing tag restored."""
        body: dict[str, Any] = {"model": self.model, "stop": self.stop, **self.sampling}
        if self.api == "chat":
            messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
            body["messages"] = [*messages, {"role": "user", "content": observation}]
        else:
            body["prompt"] = observation
        reply = self._post(body)
        try:
            choice = reply["choices"][0]
            text = choice["message"]["content"] if self.api == "chat" else choice["text"]
        except (KeyError, IndexError, TypeError) as error:
            raise OpenAIAgentError(
                f"{self.url}: unexpected response shape ({type(error).__name__}: {error}): {_one_line(json.dumps(reply))}"
            ) from None
        return self.restore_stop(text or "", choice.get("finish_reason"), choice.get("stop_reason"))

    def restore_stop(self, text: str, finish_reason: Any, stop_reason: Any) -> str:
        """Put back the stop string the server removed (it ends every complete action)."""
        if isinstance(stop_reason, str) and stop_reason in self.stop:
            return text if text.endswith(stop_reason) else text + stop_reason
        if finish_reason != "stop" or text.endswith(tuple(self.stop)):
            return text
        open_at, chosen = -1, None
        for stop in self.stop:
            opening = "<" + stop[2:]
            at = text.rfind(opening)
            if at > text.rfind(stop) and at > open_at:
                open_at, chosen = at, stop
        return text + chosen if chosen else text

    # -- HTTP -----------------------------------------------------------------------------
    def _wait_turn(self) -> None:
        if self.interval:
            now = time.monotonic()
            if now < self._next_request:
                time.sleep(self._next_request - now)
            self._next_request = max(now, self._next_request) + self.interval

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.failed_attempts += 1
            self._wait_turn()
            self.requests += 1
            delay = min(self.backoff * 2**attempt, self.max_backoff)
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as error:
                detail = _one_line(error.read().decode("utf-8", "replace"), 120) if error.fp else ""
                last = f"HTTP {error.code} {error.reason}" + (f": {detail}" if detail else "")
                if error.code not in RETRYABLE_STATUS:
                    break
                retry_after = error.headers.get("Retry-After") if error.headers else None
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    delay = min(float(retry_after), self.max_backoff)
            except TimeoutError:
                last = f"timed out after {self.timeout:g} s"
            except (urllib.error.URLError, ConnectionError, OSError) as error:
                reason = getattr(error, "reason", error)
                last = (
                    "timed out"
                    if isinstance(reason, TimeoutError | socket.timeout)
                    else _one_line(str(reason))
                )
            else:
                try:
                    return json.loads(raw)
                except ValueError:
                    raise OpenAIAgentError(
                        f"{self.url}: the reply is not JSON: {_one_line(raw.decode('utf-8', 'replace'))}"
                    ) from None
            if attempt < self.retries:
                time.sleep(delay)
        attempts = attempt + 1
        raise OpenAIAgentError(
            f"POST {self.url} failed after {attempts} attempt{'s' * (attempts > 1)}: {last}"
        )
