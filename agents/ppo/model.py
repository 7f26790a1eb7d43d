"""Policy + critic as one module whose forward is the exact packed forward of a collated batch.

The decoder runs once over the packed batch (additive float mask, rollout position ids), then
the LM head is applied only to the hidden states that predict a loss token (``pred_index``),
so a large vocabulary never costs ``[B, S, V]`` logits; those ``N`` loss positions are then
taken ``logprob_chunk`` at a time (:func:`chunked_logprobs`), each chunk's ``[C, V]`` fp32 logits
recomputed in the backward pass instead of kept, so ``[N, V]`` never exists whole. Values are read at the same positions:
the value of the state in which a token was generated. One module means DDP/FSDP wrap the
whole step and see every parameter used in ``forward``.

>>> import pytest; torch = pytest.importorskip("torch")
>>> from transformers import AutoModelForCausalLM
>>> from agents.tiny_model import default_tiny_model
>>> from mem1_envs.trajectory import pack_exact
>>> from mem1_envs.trajectory_torch import collate, forward_logprobs
>>> policy = AutoModelForCausalLM.from_pretrained(default_tiny_model())
>>> module = ActorCritic(policy, critic="value_head")
>>> batch = collate([pack_exact([5, 6, 7], [([], [8, 9]), ([9, 4], [10])])])
>>> out = module(batch)
>>> bool(torch.allclose(out["logprobs"], forward_logprobs(policy, batch), atol=1e-5))
True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from agents.ppo.losses import entropy_from_logprobs
from mem1_envs.trajectory_torch import model_inputs

__all__ = ["ActorCritic", "chunked_logprobs", "decoder_and_head"]


def decoder_and_head(model: Any) -> tuple[nn.Module, nn.Module]:
    """The base decoder and the LM head of a Hugging Face causal LM (also under peft)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def _chunk_logprobs(
    head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, temperature: float, need_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = head(hidden).float() / temperature  # [C, V]
    logp_all = torch.log_softmax(logits, dim=-1)
    chosen = logp_all.gather(-1, targets[:, None])[:, 0]
    if not need_entropy:
        return chosen, chosen.new_zeros(())
    return chosen, entropy_from_logprobs(logp_all)


def chunked_logprobs(
    head: nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
    chunk: int = 1024,
    need_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``log_softmax(head(hidden) / T)[targets]`` and the entropy, ``chunk`` rows at a time.

    ``hidden`` is ``[N, H]`` (one row per loss token). With gradients on, each chunk runs under
    ``torch.utils.checkpoint``: only its ``[C, H]`` input is kept and its ``[C, V]`` logits are
    recomputed in the backward pass, so the peak is one chunk's logits, not ``N x V``.

    >>> head = nn.Linear(4, 10)
    >>> hidden, targets = torch.randn(5, 4), torch.tensor([1, 2, 3, 4, 5])
    >>> whole, _ = chunked_logprobs(head, hidden, targets, chunk=5)
    >>> parts, _ = chunked_logprobs(head, hidden, targets, chunk=2)
    >>> bool(torch.allclose(whole, parts))
    True
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    grad = torch.is_grad_enabled() and (
        hidden.requires_grad or any(p.requires_grad for p in head.parameters())
    )
    chosen, entropies = [], []
    for start in range(0, hidden.shape[0], chunk):
        args = (
            head,
            hidden[start : start + chunk],
            targets[start : start + chunk],
            temperature,
            need_entropy,
        )
        if grad:
            logp, entropy = checkpoint(_chunk_logprobs, *args, use_reentrant=False)
        else:
            logp, entropy = _chunk_logprobs(*args)
        chosen.append(logp)
        entropies.append(entropy)
    if not chosen:  # no loss token in the batch
        empty = hidden.new_zeros((0,), dtype=torch.float32)
        return empty, empty if need_entropy else None
    return torch.cat(chosen), torch.cat(entropies) if need_entropy else None


class ActorCritic(nn.Module):
    """A causal LM policy with a value head, a separate critic, or no critic.

    Args:
        policy: Hugging Face causal LM (possibly peft-wrapped).
        critic: ``"value_head"``, ``"separate"`` or ``"none"``.
        critic_model: for ``"separate"``: a causal LM whose decoder becomes the critic trunk.
        temperature: log-probs are of ``logits / temperature`` (as the sampler's).
        logprob_chunk: loss tokens per chunk of the LM head + log-softmax (:func:`chunked_logprobs`).
    """

    def __init__(
        self,
        policy: Any,
        critic: str = "value_head",
        critic_model: Any = None,
        temperature: float = 1.0,
        logprob_chunk: int = 1024,
    ):
        super().__init__()
        if logprob_chunk < 1:
            raise ValueError(f"logprob_chunk must be >= 1, got {logprob_chunk}")
        self.policy = policy
        self.critic_kind = critic
        self.temperature = temperature
        self.logprob_chunk = logprob_chunk
        hidden = policy.config.hidden_size
        self.critic_trunk: nn.Module | None = None
        self.value_head: nn.Module | None = None
        if critic == "separate":
            if critic_model is None:
                raise ValueError("critic='separate' needs critic_model")
            self.critic_trunk = decoder_and_head(critic_model)[0]
            hidden = critic_model.config.hidden_size
        if critic != "none":
            self.value_head = nn.Linear(hidden, 1)
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)

    def forward(self, batch: dict[str, Any], need_entropy: bool = False) -> dict[str, torch.Tensor]:
        """``logprobs``, ``values`` (zeros without a critic) and ``entropy``: ``[B, S]``, 0 off the loss."""
        decoder, head = decoder_and_head(self.policy)
        inputs = model_inputs(batch)  # dense additive mask, or the FlexAttention BlockMask
        inputs.pop("use_cache")
        hidden = decoder(**inputs, use_cache=False).last_hidden_state
        loss_mask = batch["loss_mask"].to(hidden.device)
        rows, positions = loss_mask.nonzero(as_tuple=True)
        sources = batch["pred_index"].to(hidden.device)[rows, positions]
        targets = batch["input_ids"].to(hidden.device)[rows, positions]
        chosen, entropies = chunked_logprobs(  # loss tokens only, [N]
            head,
            hidden[rows, sources],
            targets,
            temperature=self.temperature,
            chunk=self.logprob_chunk,
            need_entropy=need_entropy,
        )
        shape = loss_mask.shape
        logprobs = hidden.new_zeros(shape, dtype=torch.float32)
        logprobs = logprobs.index_put((rows, positions), chosen)
        out = {"logprobs": logprobs}
        entropy = hidden.new_zeros(shape, dtype=torch.float32)
        if entropies is not None:
            entropy = entropy.index_put((rows, positions), entropies)
        out["entropy"] = entropy
        values = hidden.new_zeros(shape, dtype=torch.float32)
        if self.value_head is not None:
            trunk_hidden = hidden
            if self.critic_trunk is not None:
                trunk_hidden = self.critic_trunk(**inputs, use_cache=False).last_hidden_state
            picked = self.value_head(trunk_hidden[rows, sources].float())[:, 0].float()
            values = values.index_put((rows, positions), picked)
        out["values"] = values
        return out
