"""Rollouts on an OpenAI-compatible completions server (``vllm serve``, SGLang) given by URL.

Requests go to ``POST <url>/v1/completions`` with the prompt as token ids (a list of ints is a
tokenized prompt in the OpenAI API) and ask for the sampled tokens' log-probs (``logprobs: 1``)
and their ids: vLLM's extensions ``return_token_ids`` (``choices[i].token_ids``) and
``return_tokens_as_token_ids`` (``logprobs.tokens`` as ``"token_id:<id>"``) are both requested,
and either is read. ``stop`` + ``include_stop_str_in_output`` end a response at the protocol's
closing tag with the tag kept. The server decides what its log-probs are (vLLM:
``--logprobs-mode``, default ``raw_logprobs``); say which with ``logprobs_mode`` so the trainer
knows whether they equal its ``log_softmax(logits / T)``.

Per-episode requests: :meth:`OpenAIBackend.submit`/:meth:`poll` run each request on a thread
pool, so every episode's next turn is sent as soon as its observation exists; the server's
continuous batching does the rest.

Failures are one line naming the URL: a refused connection or timeout after ``retries`` retries
(with back-off), an HTTP error status with the server's message, a response without token ids.

Weight sync (``weight_sync``), after every optimizer step, through a bf16 checkpoint written
layer by layer into ``sync_dir`` (the folder the server reads):

- ``"sglang"``: ``POST /update_weights_from_disk {"model_path": sync_dir}`` (SGLang's endpoint).
- ``"vllm_reload"``: the checkpoint-reload fallback for ``vllm serve``: start the server on
  ``sync_dir`` with ``VLLM_SERVER_DEV_MODE=1``; each sync rewrites the folder and calls
  ``POST /collective_rpc {"method": "reload_weights"}`` then ``POST /reset_prefix_cache``.
- ``"none"``: the server keeps its weights (evaluation, or a deliberately stale behaviour
  policy: the PPO ratio / TIS then carry the whole correction).

vLLM's newer NCCL/IPC weight-transfer endpoints (which avoid the disk) are not used: their API
changes between releases and they could not be tested here.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Hashable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np

from agents.engines.common import EngineError, draw_seed, finish_of, make_generation
from agents.llm_policy import Generation, GenerationConfig

__all__ = ["WEIGHT_SYNCS", "OpenAIBackend"]

WEIGHT_SYNCS = ("none", "sglang", "vllm_reload")


def _base(url: str) -> str:
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class OpenAIBackend:
    """Generation through an OpenAI-compatible completions server.

    Args:
        url: the server, e.g. ``http://127.0.0.1:8000`` (a trailing ``/v1`` is accepted).
        tokenizer: the trainer's tokenizer (decodes the returned ids into text).
        model: the served model name (None: the first of ``GET /v1/models``).
        logprobs_mode: what the server's log-probs are (``raw_logprobs``: vLLM's default).
        temperature, top_p: the run's sampling settings.
        timeout: seconds per request.
        retries: retries of a refused/timed-out/5xx request, with exponential back-off.
        concurrency: requests in flight at once.
        weight_sync: ``"none"``, ``"sglang"`` or ``"vllm_reload"`` (see the module docstring).
        sync_dir: folder the bf16 checkpoint is written to (read by the server).
        model_config: the policy's Hugging Face config (written next to the checkpoint).
        writer: whether this process writes the checkpoint and calls the server (rank 0).
    """

    name = "openai"

    def __init__(
        self,
        url: str,
        tokenizer: Any,
        *,
        model: str | None = None,
        logprobs_mode: str = "raw_logprobs",
        temperature: float = 1.0,
        top_p: float = 1.0,
        timeout: float = 600.0,
        retries: int = 3,
        concurrency: int = 64,
        weight_sync: str = "none",
        sync_dir: str | None = None,
        model_config: Any = None,
        writer: bool = True,
    ):
        from agents.engines.mismatch import logprobs_match

        if not url.startswith(("http://", "https://")):
            raise ValueError(f"engine_url must start with http:// or https://, got {url!r}")
        if weight_sync not in WEIGHT_SYNCS:
            raise ValueError(f"engine_weight_sync must be one of {WEIGHT_SYNCS}, got {weight_sync!r}")
        if weight_sync != "none" and not sync_dir:
            raise ValueError(
                f"engine_weight_sync={weight_sync!r} needs engine_sync_dir (a folder the server reads)"
            )
        if retries < 0 or timeout <= 0 or concurrency < 1:
            raise ValueError(
                f"need retries >= 0, timeout > 0, concurrency >= 1; got {retries}, {timeout}, {concurrency}"
            )
        self.url = _base(url)
        self.tokenizer = tokenizer
        self.model = model
        self.logprobs_mode = logprobs_mode
        self.logprobs_exact = logprobs_match(logprobs_mode, temperature, top_p)
        self.timeout = timeout
        self.retries = retries
        self.weight_sync = weight_sync
        self.syncs_weights = weight_sync != "none"  # EngineSync stays idle otherwise
        self.sync_dir = sync_dir
        self.model_config = model_config
        self.writer = writer
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="mem1-openai")
        self._futures: dict[Future, Hashable] = {}

    # -- HTTP ------------------------------------------------------------------------------------
    def _request(self, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.url + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in range(self.retries + 1):
            try:
                request = urllib.request.Request(url, data=data, headers=headers)
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    text = response.read().decode()
                return json.loads(text) if text.strip() else {}
            except urllib.error.HTTPError as error:
                message = error.read().decode(errors="replace").strip().splitlines()
                reason = message[0][:300] if message else error.reason
                if error.code < 500 or attempt == self.retries:
                    raise EngineError(
                        f"completions server at {url} answered HTTP {error.code}: {reason}"
                    ) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                if attempt == self.retries:
                    reason = getattr(error, "reason", error)
                    raise EngineError(
                        f"cannot reach the completions server at {url} after {self.retries + 1} attempt(s): {reason}"
                    ) from None
            except json.JSONDecodeError:
                raise EngineError(
                    f"completions server at {url} answered with something that is not JSON"
                ) from None
            time.sleep(min(0.25 * 2**attempt, 8.0))
        raise AssertionError("unreachable")

    def _model(self) -> str:
        if self.model is None:
            models = self._request("/v1/models").get("data") or []
            if not models:
                raise EngineError(f"completions server at {self.url} lists no model at /v1/models")
            self.model = str(models[0]["id"])
        return self.model

    # -- generation ------------------------------------------------------------------------------
    def _complete(
        self, input_ids: np.ndarray, config: GenerationConfig, stop_strings: tuple[str, ...], seed: int
    ) -> Generation:
        body = {
            "model": self._model(),
            "prompt": np.asarray(input_ids, np.int64).tolist(),
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature if config.do_sample else 0.0,
            "top_p": config.top_p if config.do_sample else 1.0,
            "stop": list(stop_strings),
            "include_stop_str_in_output": True,
            "skip_special_tokens": False,
            "logprobs": 1,
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,
            "seed": seed,
            "n": 1,
        }
        answer = self._request("/v1/completions", body)
        source = f"completions server at {self.url}"
        try:
            choice = answer["choices"][0]
            logprobs = choice.get("logprobs") or {}
            token_logprobs = logprobs.get("token_logprobs")
            ids = choice.get("token_ids")
            if ids is None and logprobs.get("tokens") is not None:
                ids = [int(str(t).rsplit(":", 1)[1]) for t in logprobs["tokens"]]
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise EngineError(f"{source} returned an unexpected completion ({error!r})") from None
        if ids is None or token_logprobs is None:
            raise EngineError(
                f"{source} returned no token ids or log-probs (needs vLLM's return_token_ids / "
                "return_tokens_as_token_ids and logprobs)"
            )
        # vLLM names the matched stop string stop_reason, SGLang matched_stop.
        finish = finish_of(choice.get("finish_reason"), choice.get("stop_reason", choice.get("matched_stop")))
        return make_generation(self.tokenizer, ids, token_logprobs, finish, source)

    def generate(
        self, input_ids: Sequence[np.ndarray], config: GenerationConfig, stop_strings: tuple[str, ...]
    ) -> list[Generation]:
        """One request per row, all in flight at once; results in row order."""
        seeds = [draw_seed() for _ in input_ids]
        futures = [
            self._pool.submit(self._complete, ids, config, stop_strings, s)
            for ids, s in zip(input_ids, seeds, strict=True)
        ]
        return [f.result() for f in futures]

    def submit(
        self,
        key: Hashable,
        input_ids: np.ndarray,
        config: GenerationConfig,
        stop_strings: tuple[str, ...],
        seed: int,
    ) -> None:
        self._futures[self._pool.submit(self._complete, input_ids, config, stop_strings, seed)] = key

    def poll(self) -> list[tuple[Hashable, Generation]]:
        if not self._futures:
            raise EngineError("poll() called with no request in flight")
        done, _ = wait(list(self._futures), return_when=FIRST_COMPLETED)
        return [(self._futures.pop(f), f.result()) for f in done]

    # -- weights ---------------------------------------------------------------------------------
    def sleep(self) -> None:
        """A remote server keeps its memory: nothing to release on the trainer's GPUs."""

    def wake_up(self) -> None:
        """Nothing to restore (see :meth:`sleep`)."""

    def load_weights(self, chunks: Iterable[list[tuple[str, Any]]]) -> int:
        """Write the bf16 checkpoint into ``sync_dir`` and have the server reload it."""
        from agents.engines.weight_sync import save_bf16_checkpoint

        if self.weight_sync == "none":
            return 0
        shards = save_bf16_checkpoint(iter(chunks), str(self.sync_dir), self.model_config, write=self.writer)
        if self.writer:
            if self.weight_sync == "sglang":
                self._request("/update_weights_from_disk", {"model_path": self.sync_dir})
            else:
                self._request("/collective_rpc", {"method": "reload_weights"})
                self._request("/reset_prefix_cache", {})
        return shards

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
