"""Log-prob semantics of an inference engine, the engine/trainer mismatch, and TIS weights.

The trainer's PPO ratio uses ``log_softmax(logits / T)`` of the *untruncated* distribution.
Engines return other quantities unless asked: vLLM's default ``raw_logprobs`` is
``log_softmax(logits)`` before temperature; its ``processed_logprobs`` come after temperature
*and* after top-k/top-p truncation (renormalised over the nucleus). So:

====================  ==========================  ===========================================
temperature, top-p    vLLM ``logprobs_mode``      equals ``log_softmax(logits / T)``?
====================  ==========================  ===========================================
T = 1, any top-p      ``raw_logprobs``            yes (temperature 1 is a no-op)
T != 1, top-p = 1     ``processed_logprobs``      yes (no truncation)
T != 1, top-p < 1     ``processed_logprobs``      no: the trainer recomputes old log-probs
====================  ==========================  ===========================================

When the quantities match, the per-token difference between the engine's log-prob and the
trainer's recomputed one is pure numerics (bf16 kernels, batch shapes): its mean and max over
generated tokens are the health metric, and truncated importance sampling (TIS, Yao et al.
2025) reweights each token's PPO term by ``min(exp(trainer - engine), cap)``, the capped ratio of
the trainer's old policy to the engine's behaviour policy.

>>> engine_logprobs_mode(1.0, 0.95)
('raw_logprobs', True)
>>> engine_logprobs_mode(0.7, 1.0)
('processed_logprobs', True)
>>> engine_logprobs_mode(0.7, 0.95)
('processed_logprobs', False)
>>> import numpy as np
>>> stats = mismatch_stats([np.array([-1.0, -2.0, 0.0])], [np.array([-1.5, -2.0, 9.0])],
...                        [np.array([True, True, False])])
>>> stats.tolist()  # [sum |diff|, max |diff|, tokens]
[0.5, 0.5, 2.0]
>>> [w.tolist() for w in tis_weights([np.array([0.0, -1.0])], [np.array([-1.0, 0.0])],
...                                   [np.array([True, True])], cap=2.0)]
[[2.0, 0.3678794503211975]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["LOGPROBS_MODES", "engine_logprobs_mode", "logprobs_match", "mismatch_stats", "tis_weights"]

LOGPROBS_MODES = ("auto", "raw_logprobs", "processed_logprobs")


def logprobs_match(mode: str, temperature: float, top_p: float) -> bool:
    """Whether an engine's ``mode`` log-probs equal ``log_softmax(logits / temperature)``."""
    if mode == "raw_logprobs":
        return temperature == 1.0
    if mode == "processed_logprobs":
        return top_p >= 1.0
    raise ValueError(f"logprobs mode must be one of {LOGPROBS_MODES[1:]}, got {mode!r}")


def engine_logprobs_mode(temperature: float, top_p: float, requested: str = "auto") -> tuple[str, bool]:
    """The ``logprobs_mode`` to ask the engine for and whether it matches the trainer's quantity."""
    if requested not in LOGPROBS_MODES:
        raise ValueError(f"engine_logprobs must be one of {LOGPROBS_MODES}, got {requested!r}")
    if requested == "auto":
        requested = "raw_logprobs" if temperature == 1.0 else "processed_logprobs"
    return requested, logprobs_match(requested, temperature, top_p)


def mismatch_stats(
    engine: Sequence[np.ndarray], trainer: Sequence[np.ndarray], masks: Sequence[np.ndarray]
) -> np.ndarray:
    """``[sum, max, count]`` of ``|engine - trainer|`` over the masked (generated) tokens, float64."""
    gaps = [
        np.abs(e.astype(np.float64) - t.astype(np.float64))[m]
        for e, t, m in zip(engine, trainer, masks, strict=True)
    ]
    gap = np.concatenate(gaps) if gaps else np.zeros(0)
    return np.array([gap.sum(), gap.max(initial=0.0), gap.size], np.float64)


def tis_weights(
    trainer: Sequence[np.ndarray], engine: Sequence[np.ndarray], masks: Sequence[np.ndarray], cap: float
) -> list[np.ndarray]:
    """Per-token TIS weights ``min(exp(trainer - engine), cap)`` on masked tokens, 1 elsewhere."""
    if cap <= 0:
        raise ValueError(f"tis_cap must be > 0, got {cap}")
    out = []
    for t, e, m in zip(trainer, engine, masks, strict=True):
        # The log-ratio is clamped before exp so one outlier token cannot overflow (the cap binds anyway).
        log_ratio = np.clip(t.astype(np.float64) - e.astype(np.float64), -50.0, np.log(cap))
        out.append(np.where(m, np.exp(log_ratio), 1.0).astype(np.float32))
    return out
