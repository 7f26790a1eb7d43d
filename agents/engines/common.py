"""What the engine backends share: the error type, per-request seeds, the result conversion.

>>> import numpy as np
>>> finish_of("stop", None), finish_of("stop", "</answer>"), finish_of("length", None)
('eos', 'stop', 'length')
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.llm_policy import Generation

__all__ = ["EngineError", "draw_seed", "finish_of", "make_generation"]


class EngineError(RuntimeError):
    """An inference engine or server failed; the message is one line naming it."""


def draw_seed() -> int:
    """A per-request sampling seed from torch's global generator, so ``torch.manual_seed`` (what
    :meth:`LLMPolicy.generate` and ``collect`` seed) makes engine rollouts reproducible too."""
    try:
        import torch
    except ImportError:  # pragma: no cover - the engines are used from the trainer, with torch
        return int(np.random.randint(0, 2**31 - 1))
    return int(torch.randint(0, 2**31 - 1, ()).item())


def finish_of(finish_reason: str | None, stop_reason: Any) -> str:
    """vLLM/OpenAI ``finish_reason`` (+ vLLM's ``stop_reason``) as a :class:`Generation` finish:
    ``"stop"`` with no stop reason is the end-of-sequence token."""
    if finish_reason == "length":
        return "length"
    return "eos" if stop_reason is None else "stop"


def make_generation(tokenizer: Any, token_ids: Any, logprobs: Any, finish: str, source: str) -> Generation:
    """A :class:`Generation` of the engine's ids and log-probs exactly as returned (no re-tokenizing)."""
    ids = np.asarray(list(token_ids), dtype=np.int64)
    lps = np.asarray(list(logprobs), dtype=np.float32)
    if ids.shape != lps.shape:
        raise EngineError(f"{source} returned {len(ids)} token ids but {len(lps)} log-probs")
    text = tokenizer.decode(ids.tolist(), skip_special_tokens=False)
    return Generation(text=text, token_ids=ids, logprobs=lps, finish=finish)
