"""Stand-ins with vLLM's and the OpenAI API's shapes, for CPU tests and ``gpu_check --cpu``.

:class:`FakeLLM` has the parts of ``vllm.LLM`` the backend uses -- ``generate(prompts,
sampling_params)`` over ``{"prompt_token_ids": ...}`` prompts returning ``RequestOutput``-like
objects (``outputs[0].token_ids / logprobs / finish_reason / stop_reason``), ``llm_engine``
(``add_request`` / ``step`` / ``has_unfinished_requests``), ``sleep(level)`` / ``wake_up(tags)`` /
``reset_prefix_cache()``, and ``collective_rpc(fn, args)`` calling ``fn(worker, *args)`` where
``worker.model_runner.model.load_weights(weights)`` loads tensors by checkpoint name. It decodes
with a real Hugging Face model (fp32, one request at a time: tiny models only), so its log-probs are real;
``logprobs_mode`` follows vLLM's documented meaning (``raw_logprobs``: ``log_softmax(logits)``;
``processed_logprobs``: after temperature and top-p); ``forced(prompt, generated)`` may dictate
tokens (None: sample). Like vLLM's scheduler, :meth:`step`
advances every running request by one token, so requests finish at different steps and new ones
join a running batch. ``sleep(level=2)`` really zeroes the weights, so a missing reload shows.

:class:`FakeCompletionsServer` serves the same engine over HTTP on ``127.0.0.1`` (a free port):
``/v1/models``, ``/v1/completions`` (token-id prompts, ``logprobs``, ``return_token_ids``),
``/update_weights_from_disk`` (SGLang), ``/collective_rpc`` (``reload_weights``, vLLM dev mode) and
``/reset_prefix_cache``; ``fail_next`` makes the next requests answer given HTTP statuses.

>>> import pytest; _ = pytest.importorskip("transformers")
>>> from agents.tiny_model import default_tiny_model
>>> llm = FakeLLM(default_tiny_model())
>>> out = llm.generate([{"prompt_token_ids": [5, 6, 7]}], SamplingParams(max_tokens=3, logprobs=0, seed=1))
>>> len(out[0].outputs[0].token_ids) == len(out[0].outputs[0].logprobs) <= 3
True
"""

from __future__ import annotations

import inspect
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "CompletionOutput",
    "FakeCompletionsServer",
    "FakeLLM",
    "Logprob",
    "RequestOutput",
    "SamplingParams",
]


@dataclass
class SamplingParams:
    """The fields of ``vllm.SamplingParams`` the backends set (others are accepted and kept)."""

    n: int = 1
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    logprobs: int | None = None
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def make(cls, **options: Any) -> SamplingParams:
        known = {k: options.pop(k) for k in list(options) if k in cls.__dataclass_fields__ and k != "extra"}
        return cls(**known, extra=options)


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None = None
    stop_reason: Any = None


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool


@dataclass
class _Running:
    request_id: str
    prompt: list[int]
    params: SamplingParams
    generator: Any
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    past: Any = None


class _Model:
    """``worker.model_runner.model``: the engine's model with a checkpoint-name ``load_weights``."""

    def __init__(self, module: Any):
        self.module = module

    def load_weights(self, weights: Any) -> set[str]:
        params = dict(self.module.named_parameters())
        loaded = set()
        for name, tensor in weights:
            if name not in params:
                raise KeyError(f"the engine's model has no parameter {name!r}")
            params[name].data.copy_(tensor.to(params[name].dtype))
            loaded.add(name)
        return loaded


class _Worker:
    def __init__(self, model: _Model):
        self.model_runner = type("ModelRunner", (), {"model": model})()


class FakeLLM:
    """vLLM's ``LLM`` shapes over a Hugging Face model folder (see the module docstring).

    Attributes:
        calls: every sleep/wake_up/collective_rpc/reset_prefix_cache/add_request, in order.
        produced: request id -> (token ids, log-probs) exactly as generated.
    """

    sampling_params_class = staticmethod(SamplingParams.make)

    def __init__(
        self,
        model_path: str,
        *,
        logprobs_mode: str = "raw_logprobs",
        forced: Callable[[list[int], list[int]], int | None] | None = None,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if logprobs_mode not in ("raw_logprobs", "processed_logprobs"):
            raise ValueError(
                f"logprobs_mode must be raw_logprobs or processed_logprobs, got {logprobs_mode!r}"
            )
        self.model_path = model_path
        self.torch = torch
        self.module = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.eos = {int(self.tokenizer.eos_token_id)} if self.tokenizer.eos_token_id is not None else set()
        self.logprobs_mode = logprobs_mode
        self.forced = forced
        self.calls: list[tuple[Any, ...]] = []
        self.produced: dict[str, tuple[list[int], list[float]]] = {}
        self.params: dict[str, SamplingParams] = {}
        self.llm_engine = self
        self._worker = _Worker(_Model(self.module))
        self._running: list[_Running] = []
        self._counter = 0
        self._lock = threading.RLock()
        self.sleeping: set[str] = set()
        forward = inspect.signature(type(self.module).forward).parameters
        self._cache_name = "cache" if "cache" in forward else "past_key_values"

    # -- vLLM's LLMEngine shapes -----------------------------------------------------------------
    def add_request(self, request_id: str, prompt: dict[str, Any], params: SamplingParams) -> None:
        if "weights" in self.sleeping or "kv_cache" in self.sleeping:
            raise RuntimeError("request added while the engine sleeps")
        generator = self.torch.Generator().manual_seed(params.seed if params.seed is not None else 0)
        self.calls.append(("add_request", request_id, len(self._running)))
        self.params[request_id] = params
        self._running.append(_Running(request_id, list(prompt["prompt_token_ids"]), params, generator))

    def has_unfinished_requests(self) -> bool:
        return bool(self._running)

    def _next_token(self, request: _Running) -> tuple[int, float]:
        torch = self.torch
        with torch.no_grad():  # a per-request KV cache, as an engine keeps one
            if request.past is None:
                out = self.module(torch.tensor([request.prompt + request.ids]), use_cache=True)
            else:
                out = self.module(
                    torch.tensor([request.ids[-1:]]), **{self._cache_name: request.past}, use_cache=True
                )
        # transformers 5.2x renamed past_key_values to cache (argument and output)
        request.past = getattr(out, self._cache_name)
        logits = out.logits[0, -1].float()
        raw = torch.log_softmax(logits, -1)
        p = request.params
        if p.temperature == 0:
            processed = raw
            token = int(torch.argmax(logits))
        else:
            scaled = torch.log_softmax(logits / p.temperature, -1)
            if p.top_p < 1.0:  # nucleus: keep the smallest set of tokens whose mass reaches top_p
                order = torch.argsort(scaled, descending=True)
                mass = torch.cumsum(scaled[order].exp(), 0)
                drop = order[(mass - scaled[order].exp()) >= p.top_p]
                scaled = scaled.clone()
                scaled[drop] = -float("inf")
            processed = torch.log_softmax(scaled, -1)
            forced = self.forced(request.prompt, request.ids) if self.forced is not None else None
            if forced is not None:
                token = forced
            else:
                token = int(torch.multinomial(processed.exp(), 1, generator=request.generator))
        chosen = raw if self.logprobs_mode == "raw_logprobs" else processed
        return token, float(chosen[token])

    def _finish(self, request: _Running) -> tuple[str, Any, str] | None:
        p = request.params
        text = self.tokenizer.decode(request.ids, skip_special_tokens=False)
        for stop in p.stop:
            at = text.find(stop)
            if at >= 0:
                return "stop", stop, text[: at + len(stop)] if p.include_stop_str_in_output else text[:at]
        if request.ids and request.ids[-1] in self.eos:
            return "stop", None, text
        if len(request.ids) >= p.max_tokens:
            return "length", None, text
        return None

    def step(self) -> list[RequestOutput]:
        """One decoding step of every running request; the requests that ended at it."""
        done, still = [], []
        with self._lock:
            for request in self._running:
                token, logprob = self._next_token(request)
                request.ids.append(token)
                request.logprobs.append(logprob)
                end = self._finish(request)
                if end is None:
                    still.append(request)
                    continue
                reason, stop, text = end
                self.produced[request.request_id] = (list(request.ids), list(request.logprobs))
                entries = [{t: Logprob(lp, 1)} for t, lp in zip(request.ids, request.logprobs, strict=True)]
                completion = CompletionOutput(
                    0, text, list(request.ids), sum(request.logprobs), entries, reason, stop
                )
                done.append(RequestOutput(request.request_id, request.prompt, [completion], True))
            self._running = still
        return done

    # -- vLLM's LLM shapes -----------------------------------------------------------------------
    def generate(
        self, prompts: list[dict[str, Any]], sampling_params: Any, use_tqdm: bool = True
    ) -> list[RequestOutput]:
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        with self._lock:  # one batch at a time (the loopback server calls this from many threads)
            if self._running:
                raise RuntimeError("generate() while llm_engine requests are running")
            ids = []
            for prompt, p in zip(prompts, params, strict=True):
                self._counter += 1
                ids.append(f"batch-{self._counter}")
                self.add_request(ids[-1], prompt, p)
            finished: dict[str, RequestOutput] = {}
            while self._running:
                finished.update({o.request_id: o for o in self.step()})
        return [finished[i] for i in ids]

    def sleep(self, level: int = 1) -> None:
        self.calls.append(("sleep", level))
        if level == 2:  # vLLM discards the weights: make that visible
            with self.torch.no_grad():
                for param in self.module.parameters():
                    param.zero_()
        self.sleeping = {"weights", "kv_cache"}

    def wake_up(self, tags: list[str] | None = None) -> None:
        self.calls.append(("wake_up", tuple(tags) if tags else None))
        self.sleeping -= set(tags or ["weights", "kv_cache"])

    def reset_prefix_cache(self) -> bool:
        self.calls.append(("reset_prefix_cache",))
        return True

    def collective_rpc(
        self, method: Any, timeout: float | None = None, args: tuple = (), kwargs: dict | None = None
    ) -> list[Any]:
        self.calls.append(("collective_rpc", getattr(method, "__name__", method)))
        if isinstance(method, str):
            return [getattr(self._worker, method)(*args, **(kwargs or {}))]
        return [method(self._worker, *args, **(kwargs or {}))]

    def load_folder(self, folder: str) -> int:
        """Load a safetensors checkpoint folder's tensors by name (what a server's reload does)."""
        from safetensors.torch import load_file

        names = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
        count = 0
        for name in names:
            tensors = load_file(os.path.join(folder, name))
            self._worker.model_runner.model.load_weights(tensors.items())
            count += len(tensors)
        return count


class FakeCompletionsServer:
    """An OpenAI-compatible completions server over a :class:`FakeLLM`, on ``127.0.0.1:<free port>``.

    Use as a context manager; ``url`` is its base URL; ``requests`` lists every request body.
    """

    def __init__(self, llm: FakeLLM, *, model_name: str = "fake-model", model_dir: str | None = None):
        self.llm = llm
        self.model_name = model_name
        self.model_dir = model_dir
        self.requests: list[tuple[str, Any]] = []
        self.fail_next: list[int] = []
        self.send_token_ids = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._send(200, {"data": [{"id": server.model_name}]})
                else:
                    self._send(404, {"error": f"no route {self.path}"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append((self.path, body))
                if server.fail_next:
                    status = server.fail_next.pop(0)
                    self._send(status, {"error": f"injected failure {status}"})
                    return
                try:
                    self._send(200, server.handle(self.path, body))
                except ValueError as error:
                    self._send(400, {"error": str(error)})

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def handle(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        llm = self.llm
        if path == "/v1/completions":
            if body.get("model") != self.model_name:
                raise ValueError(f"model {body.get('model')!r} does not exist")
            prompt = body["prompt"]
            if not (isinstance(prompt, list) and all(isinstance(t, int) for t in prompt)):
                raise ValueError("this server takes token-id prompts only")
            params = SamplingParams(
                max_tokens=body.get("max_tokens", 16),
                temperature=body.get("temperature", 1.0),
                top_p=body.get("top_p", 1.0),
                stop=list(body.get("stop") or []),
                include_stop_str_in_output=bool(body.get("include_stop_str_in_output")),
                logprobs=body.get("logprobs"),
                seed=body.get("seed"),
            )
            with llm._lock:
                llm._counter += 1
                request_id = f"http-{llm._counter}"
            out = llm.generate([{"prompt_token_ids": prompt}], [params])[0].outputs[0]
            tokens = [
                f"token_id:{t}" if body.get("return_tokens_as_token_ids") else str(t) for t in out.token_ids
            ]
            choice = {
                "index": 0,
                "text": out.text,
                "finish_reason": out.finish_reason,
                "stop_reason": out.stop_reason,
                "logprobs": {
                    "tokens": tokens,
                    "token_logprobs": [
                        e[t].logprob for e, t in zip(out.logprobs, out.token_ids, strict=True)
                    ],
                },
            }
            if body.get("return_token_ids") and self.send_token_ids:
                choice["token_ids"] = list(out.token_ids)
            return {"id": request_id, "object": "text_completion", "choices": [choice]}
        if path == "/update_weights_from_disk":
            return {"success": True, "loaded": llm.load_folder(body["model_path"])}
        if path == "/collective_rpc":
            if body.get("method") != "reload_weights" or self.model_dir is None:
                raise ValueError(f"unsupported collective_rpc {body.get('method')!r}")
            return {"results": [llm.load_folder(self.model_dir)]}
        if path == "/reset_prefix_cache":
            llm.reset_prefix_cache()
            return {}
        raise ValueError(f"no route {path}")

    def __enter__(self) -> FakeCompletionsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
