"""A vLLM engine in the trainer's own process (colocated), behind :class:`GenerationBackend`.

What it does, and how it maps onto vLLM's offline API (``vllm.LLM``):

- **token ids in, token ids out**: prompts are ``{"prompt_token_ids": [...]}`` (vLLM's
  ``TokensPrompt``); the generated ``token_ids`` and each one's log-prob (``logprobs=0``: the
  sampled token only) are returned unchanged. The text is decoded from those ids.
- **stop at the protocol's closing tags**: ``stop=[...]`` with ``include_stop_str_in_output=True``,
  so the closing tag is part of the text and its token(s) are in the ids the trainer scores.
- **log-prob semantics**: the engine is built with the ``logprobs_mode`` that equals
  ``log_softmax(logits / T)`` for the run's temperature and top-p (see
  :mod:`agents.engines.mismatch`); when none does, :attr:`VLLMBackend.logprobs_exact` is False and
  the trainer recomputes old log-probs itself.
- **sleep mode**: the engine is built with ``enable_sleep_mode=True``; :meth:`sleep` (level 2 by
  default: weights and KV cache released, no CPU copy since new weights follow) frees the GPU for
  the update, :meth:`load_weights` wakes the weights only and loads the new ones per decoder layer
  through ``collective_rpc`` (a function run on the worker, in process: no serialisation), and
  :meth:`wake_up` restores the KV cache and drops the prefix cache (computed with old weights).
- **per-episode requests**: besides the batched :meth:`generate`, :meth:`submit`/:meth:`poll`
  add one request to the engine (``llm_engine.add_request``) and step it until some request
  finishes, so :func:`agents.rollout.collect` can send an episode's next turn as soon as its
  observation exists, while the other episodes are still decoding (continuous batching across
  episodes, no turn-synchronous waves).

The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, as TRL's colocate mode),
one engine per trainer rank (tensor parallel 1); under ``torchrun`` it joins the existing process
group (``distributed_executor_backend="external_launcher"``). Nothing here was run on a GPU in
this repository: the CPU tests drive the same code against :class:`agents.engines.fake.FakeLLM`,
which has vLLM's API shapes.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import numpy as np

from agents.engines.common import EngineError, draw_seed, finish_of, make_generation
from agents.llm_policy import Generation, GenerationConfig

__all__ = ["VLLMBackend", "launch_vllm", "require_vllm"]

GPU_EXTRA = "pip install 'mem1-envs[gpu]' -c constraints-gpu.txt (a CUDA machine; see scripts/gpu_check.sh)"


def require_vllm() -> Any:
    """``import vllm`` or an ImportError naming the ``gpu`` extra."""
    try:
        import vllm
    except ImportError as error:
        raise ImportError(f"rollout='vllm' needs vLLM, which is not installed: {GPU_EXTRA}") from error
    return vllm


def _vllm_sampling_params(**options: Any) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    # FINAL_ONLY: llm_engine.step() reports a request once, when it ends (no per-token copies).
    return SamplingParams(output_kind=RequestOutputKind.FINAL_ONLY, **options)


def launch_vllm(
    model_path: str,
    *,
    logprobs_mode: str,
    gpu_memory_utilization: float = 0.4,
    max_model_len: int | None = None,
    seed: int = 0,
    enforce_eager: bool = False,
    **extra: Any,
) -> Any:
    """A colocated ``vllm.LLM`` in bf16 with sleep mode, prefix caching and ``logprobs_mode``."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in process: collective_rpc takes callables
    vllm = require_vllm()
    options: dict[str, Any] = dict(
        model=model_path,
        dtype="bfloat16",
        enable_sleep_mode=True,
        enable_prefix_caching=True,
        gpu_memory_utilization=gpu_memory_utilization,
        logprobs_mode=logprobs_mode,
        seed=seed,
        enforce_eager=enforce_eager,
    )
    if max_model_len is not None:
        options["max_model_len"] = max_model_len
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        options["distributed_executor_backend"] = "external_launcher"
    options.update(extra)
    return vllm.LLM(**options)


def _load_on_worker(worker: Any, weights: list[tuple[str, Any]]) -> int:
    """Runs inside the vLLM worker (``collective_rpc``): hand one layer's tensors to the model's
    own ``load_weights``, which knows its fused/stacked layout (qkv, gate_up, tied head)."""
    runner = worker.model_runner
    model = runner.model if hasattr(runner, "model") else runner.get_model()
    model.load_weights(weights=weights)
    return len(weights)


def _chosen_logprobs(entries: Any, token_ids: Sequence[int], source: str) -> list[float]:
    """The sampled token's log-prob at each position from vLLM's ``[{token_id: Logprob}, ...]``."""
    if entries is None:
        raise EngineError(f"{source} returned no log-probs (SamplingParams.logprobs was not honoured)")
    out = []
    for entry, token in zip(entries, token_ids, strict=True):
        value = entry[token] if isinstance(entry, dict) else entry
        out.append(float(getattr(value, "logprob", value)))
    return out


class VLLMBackend:
    """Generation through a vLLM ``LLM`` (or anything with its shapes).

    Args:
        engine: the ``vllm.LLM`` (see :func:`launch_vllm`).
        tokenizer: the trainer's tokenizer (decodes the returned ids into text).
        logprobs_mode: the engine's ``logprobs_mode`` (what its log-probs are).
        temperature, top_p: the run's sampling settings (whether those log-probs are the trainer's).
        sleep_level: 1 (weights kept on CPU), 2 (weights dropped: they are reloaded anyway) or 0 (never sleep).
        sampling_params: factory of one request's parameters (default ``vllm.SamplingParams``).
    """

    name = "vllm"

    def __init__(
        self,
        engine: Any,
        tokenizer: Any,
        *,
        logprobs_mode: str = "raw_logprobs",
        temperature: float = 1.0,
        top_p: float = 1.0,
        sleep_level: int = 2,
        sampling_params: Callable[..., Any] | None = None,
    ):
        from agents.engines.mismatch import logprobs_match

        if sleep_level not in (0, 1, 2):
            raise ValueError(f"sleep_level must be 0, 1 or 2, got {sleep_level}")
        self.engine = engine
        self.tokenizer = tokenizer
        self.logprobs_mode = logprobs_mode
        self.logprobs_exact = logprobs_match(logprobs_mode, temperature, top_p)
        self.sleep_level = sleep_level
        self.sampling_params = sampling_params or _vllm_sampling_params
        self.asleep: set[str] = set()
        self.weights_lost = False
        self._ids = itertools.count()
        self._pending: dict[str, Hashable] = {}

    # -- requests ----------------------------------------------------------------------------
    def _params(self, config: GenerationConfig, stop_strings: tuple[str, ...], seed: int) -> Any:
        return self.sampling_params(
            n=1,
            max_tokens=config.max_new_tokens,
            temperature=config.temperature if config.do_sample else 0.0,
            top_p=config.top_p if config.do_sample else 1.0,
            stop=list(stop_strings),
            include_stop_str_in_output=True,
            skip_special_tokens=False,
            logprobs=0,
            seed=seed,
        )

    def _check_awake(self) -> None:
        if self.weights_lost:
            raise EngineError("the vLLM engine's weights were released by sleep(level=2) and never reloaded")
        if self.asleep:
            self.wake_up()

    def _result(self, output: Any) -> Generation:
        completion = output.outputs[0]
        ids = list(completion.token_ids)
        logprobs = _chosen_logprobs(completion.logprobs, ids, "the vLLM engine")
        finish = finish_of(completion.finish_reason, getattr(completion, "stop_reason", None))
        return make_generation(self.tokenizer, ids, logprobs, finish, "the vLLM engine")

    def generate(
        self, input_ids: Sequence[np.ndarray], config: GenerationConfig, stop_strings: tuple[str, ...]
    ) -> list[Generation]:
        """One batch: every row is a request; vLLM schedules them with continuous batching."""
        self._check_awake()
        prompts = [{"prompt_token_ids": np.asarray(ids, np.int64).tolist()} for ids in input_ids]
        params = [self._params(config, stop_strings, draw_seed()) for _ in input_ids]
        outputs = self.engine.generate(prompts, params, use_tqdm=False)
        return [self._result(output) for output in outputs]

    def submit(
        self,
        key: Hashable,
        input_ids: np.ndarray,
        config: GenerationConfig,
        stop_strings: tuple[str, ...],
        seed: int,
    ) -> None:
        """Queue one request now (it joins the running batch at the engine's next step)."""
        self._check_awake()
        request_id = f"mem1-{next(self._ids)}"
        self._pending[request_id] = key
        prompt = {"prompt_token_ids": np.asarray(input_ids, np.int64).tolist()}
        self.engine.llm_engine.add_request(request_id, prompt, self._params(config, stop_strings, seed))

    def poll(self) -> list[tuple[Hashable, Generation]]:
        """Step the engine until at least one request finishes; those requests' results."""
        if not self._pending:
            raise EngineError("poll() called with no request in flight")
        while True:
            done = [o for o in self.engine.llm_engine.step() if o.finished]
            if done:
                return [(self._pending.pop(o.request_id), self._result(o)) for o in done]
            if not self.engine.llm_engine.has_unfinished_requests():
                raise EngineError(f"the vLLM engine lost {len(self._pending)} request(s)")

    # -- memory and weights --------------------------------------------------------------------
    def sleep(self) -> None:
        """Release the GPU for the update (KV cache, and weights at level 2)."""
        if self.sleep_level == 0 or self.asleep:
            return
        self.engine.sleep(level=self.sleep_level)
        self.asleep = {"weights", "kv_cache"}
        self.weights_lost = self.sleep_level == 2

    def _wake(self, tags: list[str]) -> None:
        tags = [t for t in tags if t in self.asleep]
        if tags:
            self.engine.wake_up(tags=tags)
            self.asleep -= set(tags)

    def load_weights(self, chunks: Iterable[list[tuple[str, Any]]]) -> int:
        """Wake the weights only (the KV cache stays released during the update) and load the
        new ones chunk by chunk (one decoder layer each); returns the tensors loaded."""
        self._wake(["weights"])
        loaded = 0
        for chunk in chunks:
            answers = self.engine.collective_rpc(_load_on_worker, args=(chunk,))
            loaded += int(answers[0]) if answers else len(chunk)
        self.weights_lost = False
        return loaded

    def wake_up(self) -> None:
        """Before the next rollout: KV cache back, prefix cache dropped (built with old weights)."""
        if self.weights_lost:
            raise EngineError("the vLLM engine's weights were released by sleep(level=2) and never reloaded")
        self._wake(["weights", "kv_cache"])
        self.engine.reset_prefix_cache()
