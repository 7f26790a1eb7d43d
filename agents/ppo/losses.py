"""PPO loss terms as small pure functions over ``[B, S]`` tensors and a bool loss mask.

Every reduction is token-level: a masked mean over all loss tokens of the batch (MEM1's
aggregation). ``denominator`` lets a micro-batch divide by the token count of the whole
(global, all-rank) mini-batch, so accumulated micro-batches and data-parallel ranks add up to
exactly the loss of one big batch.

>>> import pytest; torch = pytest.importorskip("torch")
>>> x, m = torch.tensor([[1.0, 2.0, 30.0]]), torch.tensor([[True, True, False]])
>>> masked_mean(x, m).item()
1.5
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "entropy_from_logprobs",
    "explained_variance",
    "kl_k1",
    "kl_k3",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "policy_loss",
    "value_loss",
]


def _torch() -> Any:
    import torch

    return torch


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of ``values`` where ``mask`` is True (NaN/inf off the mask never leak in)."""
    torch = _torch()
    return torch.where(mask, values, torch.zeros_like(values)).sum()


def masked_mean(values: torch.Tensor, mask: torch.Tensor, denominator: Any = None) -> torch.Tensor:
    """Mean over masked tokens, or the masked sum over ``denominator`` when given."""
    total = masked_sum(values, mask)
    if denominator is None:
        return total / mask.sum().clamp(min=1)
    return total / max(float(denominator), 1.0)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    """Variance over masked tokens (biased by default)."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        count = mask.sum()
        var = var * count / (count - 1).clamp(min=1)
    return var


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_ratio: float,
    denominator: Any = None,
    *,
    log_ratio_clamp: float | None = 20.0,
    dual_clip: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate ``-min(r A, clip(r, 1-e, 1+e) A)``, token-level mean.

    ``log_ratio_clamp`` bounds ``log r`` to ``[-c, c]`` before ``exp`` (one outlier token, e.g. a
    sampler/trainer mismatch of 1e4 nats, would otherwise make the loss and gradients inf/NaN; a
    clamped token gets no gradient, as a clipped one). ``dual_clip`` (``c > 1``, Ye et al. 2020)
    caps the loss of negative-advantage tokens at ``-c A``: a huge ratio on a bad action cannot
    dominate the batch.

    Returns the loss and token sums for metrics: ``clipped`` (tokens where the clipped term was
    taken), ``dual_clipped`` (tokens capped by the dual clip), ``approx_kl`` (k3 of new vs old), and
    ``ratio``.

    >>> import pytest; torch = pytest.importorskip("torch")
    >>> lp, old = torch.tensor([[0.0, 0.0]]), torch.tensor([[-1e4, 0.0]])
    >>> loss, _ = policy_loss(lp, old, torch.tensor([[-1.0, 0.0]]), torch.ones(1, 2, dtype=torch.bool), 0.2)
    >>> bool(torch.isfinite(loss))
    True
    """
    torch = _torch()
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (or None), got {dual_clip}")
    log_ratio = torch.where(mask, logprobs - old_logprobs, torch.zeros_like(logprobs))
    if log_ratio_clamp is not None:
        log_ratio = log_ratio.clamp(-log_ratio_clamp, log_ratio_clamp)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio)
    token_loss = torch.maximum(unclipped, clipped)
    dual = torch.zeros_like(token_loss, dtype=torch.bool)
    if dual_clip is not None:
        cap = -advantages * dual_clip  # > 0 where A < 0
        dual = (advantages < 0) & (token_loss > cap)
        token_loss = torch.where(dual, cap, token_loss)
    loss = masked_mean(token_loss, mask, denominator)
    with torch.no_grad():
        stats = {
            "clipped": masked_sum((clipped > unclipped).float(), mask),
            "dual_clipped": masked_sum(dual.float(), mask),
            "approx_kl": masked_sum(ratio - 1.0 - log_ratio, mask),
            "ratio": masked_sum(ratio, mask),
        }
    return loss, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float | None,
    denominator: Any = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``0.5 * max((v - R)^2, (clip(v, v_old +- c) - R)^2)``, token-level mean (no clip: c None)."""
    torch = _torch()
    error = (values - returns) ** 2
    if clip_range is None:
        loss_tokens = error
        clipped_flag = torch.zeros_like(error)
    else:
        clipped_values = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
        clipped_error = (clipped_values - returns) ** 2
        loss_tokens = torch.maximum(error, clipped_error)
        clipped_flag = (clipped_error > error).float()
    loss = 0.5 * masked_mean(loss_tokens, mask, denominator)
    with torch.no_grad():
        stats = {"vf_clipped": masked_sum(clipped_flag, mask)}
    return loss, stats


def entropy_from_logprobs(logp: torch.Tensor) -> torch.Tensor:
    """Entropy of each row (last dim) of a categorical distribution given as log-probabilities;
    takes the log-softmax the policy forward already computed, so the logits are normalised once.

    >>> import pytest; torch = pytest.importorskip("torch")
    >>> round(entropy_from_logprobs(torch.log_softmax(torch.zeros(1, 4), -1)).item(), 4)  # log 4
    1.3863
    """
    return -(logp.exp() * logp).sum(-1)


def kl_k1(logprobs: Any, ref_logprobs: Any) -> Any:
    """k1 estimator of KL(pi || ref) per token: ``log pi - log ref`` (MEM1 adds ``-beta * k1`` to rewards).

    Tensors or numpy arrays: the rollout buffer applies it to its numpy log-probs."""
    return logprobs - ref_logprobs


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k3 estimator per token: ``exp(ref - pi) - (ref - pi) - 1`` >= 0 (the in-loss form)."""
    torch = _torch()
    delta = (ref_logprobs - logprobs).clamp(-20.0, 20.0)
    return torch.exp(delta) - delta - 1.0


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """``1 - Var(R - V) / Var(R)`` over masked tokens (NaN when the returns do not vary)."""
    var_returns = masked_var(returns, mask)
    if float(var_returns) == 0.0:
        return float("nan")
    return float(1.0 - masked_var(returns - values, mask) / var_returns)
