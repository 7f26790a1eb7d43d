"""Policy + critic as one module whose forward is the exact packed forward of a collated batch.

The decoder runs once over the packed batch (additive float mask, rollout position ids), then
the LM head is applied only to the hidden states that predict a loss token (``pred_index``),
so a large vocabulary never costs ``[B, S, V]`` logits. Values are read at the same positions:
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

from mem1_envs.trajectory_torch import model_inputs

__all__ = ["ActorCritic", "decoder_and_head"]


def decoder_and_head(model: Any) -> tuple[nn.Module, nn.Module]:
    """The base decoder and the LM head of a Hugging Face causal LM (also under peft)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


class ActorCritic(nn.Module):
    """A causal LM policy with a value head, a separate critic, or no critic.

    Args:
        policy: Hugging Face causal LM (possibly peft-wrapped).
        critic: ``"value_head"``, ``"separate"`` or ``"none"``.
        critic_model: for ``"separate"``: a causal LM whose decoder becomes the critic trunk.
        temperature: log-probs are of ``logits / temperature`` (as the sampler's).
    """

    def __init__(
        self, policy: Any, critic: str = "value_head", critic_model: Any = None, temperature: float = 1.0
    ):
        super().__init__()
        self.policy = policy
        self.critic_kind = critic
        self.temperature = temperature
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
        logits = head(hidden[rows, sources]).float() / self.temperature  # [N, V]: loss tokens only
        logp_all = torch.log_softmax(logits, dim=-1)
        shape = loss_mask.shape
        logprobs = hidden.new_zeros(shape, dtype=torch.float32)
        logprobs = logprobs.index_put((rows, positions), logp_all.gather(-1, targets[:, None])[:, 0])
        out = {"logprobs": logprobs}
        entropy = hidden.new_zeros(shape, dtype=torch.float32)
        if need_entropy:
            entropy = entropy.index_put((rows, positions), -(logp_all.exp() * logp_all).sum(-1))
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
