"""Inference engines for rollouts: a colocated vLLM engine or an OpenAI-compatible server.

Both are :class:`agents.llm_policy.GenerationBackend` objects (``generate``), plus what the
trainer and the per-episode rollout use:

- ``submit(key, ids, config, stop_strings, seed)`` / ``poll()``: one request at a time, results
  as they finish (:func:`agents.rollout.collect` then plays episodes asynchronously);
- ``sleep()`` / ``load_weights(chunks)`` / ``wake_up()``: driven by
  :class:`agents.engines.weight_sync.EngineSync` around every update;
- ``logprobs_exact``: whether the returned log-probs are ``log_softmax(logits / T)`` (else the
  trainer recomputes old log-probs itself).

``make_backend(config, ...)`` builds the one a :class:`agents.ppo.config.PPOConfig` asks for
(``rollout="hf"``: None, the policy's default Hugging Face ``generate``).
"""

from __future__ import annotations

from typing import Any

from agents.engines.common import EngineError
from agents.engines.mismatch import engine_logprobs_mode
from agents.engines.weight_sync import EngineSync

__all__ = ["EngineError", "EngineSync", "make_backend"]


def make_backend(
    config: Any,
    *,
    tokenizer: Any,
    model_path: str,
    model_config: Any = None,
    rank: int = 0,
    engine: Any = None,
) -> Any:
    """The generation backend of ``config.rollout`` (None for ``"hf"``).

    ``engine``: an already-built engine object for ``rollout="vllm"`` (e.g.
    :class:`agents.engines.fake.FakeLLM` in CPU tests); it may bring its own
    ``sampling_params_class``. Otherwise a vLLM engine is launched on ``model_path``.
    """
    if config.rollout == "hf":
        return None
    mode, _ = engine_logprobs_mode(config.temperature, config.top_p, config.engine_logprobs)
    if config.rollout == "vllm":
        from agents.engines.vllm_backend import VLLMBackend, launch_vllm

        if engine is None:
            engine = launch_vllm(
                model_path,
                logprobs_mode=mode,
                gpu_memory_utilization=config.engine_gpu_memory,
                max_model_len=config.engine_max_model_len,
                seed=config.seed * 1009 + rank,
                enforce_eager=config.engine_enforce_eager,
            )
        elif getattr(engine, "logprobs_mode", mode) != mode:
            raise ValueError(f"the given engine returns {engine.logprobs_mode}, the run needs {mode}")
        return VLLMBackend(
            engine,
            tokenizer,
            logprobs_mode=mode,
            temperature=config.temperature,
            top_p=config.top_p,
            sleep_level=config.engine_sleep_level,
            sampling_params=getattr(engine, "sampling_params_class", None),
        )
    from agents.engines.openai_backend import OpenAIBackend

    # A server's log-prob mode is fixed when it starts (vLLM: --logprobs-mode, default raw).
    server_mode = "raw_logprobs" if config.engine_logprobs == "auto" else config.engine_logprobs
    return OpenAIBackend(
        config.engine_url,
        tokenizer,
        model=config.engine_model,
        logprobs_mode=server_mode,
        temperature=config.temperature,
        top_p=config.top_p,
        timeout=config.engine_timeout,
        retries=config.engine_retries,
        weight_sync=config.engine_weight_sync,
        sync_dir=config.engine_sync_dir,
        model_config=model_config,
        writer=rank == 0,
    )
