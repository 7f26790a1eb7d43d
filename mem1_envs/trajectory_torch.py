"""Torch side of packed trajectories: batch collation, FlexAttention block masks, log-probs.

Imported only by code that trains (``pip install mem1-envs[train]``); ``import mem1_envs``
never imports torch. From rollout records to per-token log-probs in three calls::

    batch = collate_records(records, pad_id=tokenizer.pad_token_id)   # or collate(packed, ...)
    logits = model(**model_inputs(batch)).logits
    logprobs = gather_logprobs(logits, batch)                         # [B, S], 0 off the loss mask

The 4-D mask handed to a Hugging Face model is always *additive* float: 0 where a token may
attend, ``torch.finfo(dtype).min`` where it may not. A True/False (or 1.0/0.0) 4-D mask is added
to the attention scores as is and masks nothing (MEM1's defect D1); only rows packed with
``pack_mem1(..., released_rules=True)`` get that 1.0/0.0 mask, to reproduce the defect.

>>> import pytest; torch = pytest.importorskip("torch")  # the ``core`` install has no torch
>>> from mem1_envs.trajectory import pack_exact
>>> batch = collate([pack_exact([7, 8], [([], [1, 2])]), pack_exact([7], [([4], [3])])], pad_id=0)
>>> batch["input_ids"].tolist(), batch["attention_mask"].shape
([[7, 8, 1, 2], [7, 4, 3, 0]], torch.Size([2, 1, 4, 4]))
>>> (batch["attention_mask"][1, 0] == 0).int().tolist()  # the pad token sees only itself
[[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 1]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mem1_envs.trajectory import (
    PackedTrajectory,
    RolloutRecord,
    fill_dense_masks,
    pack_records,
    tile_counts,
    tile_lists,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "collate",
    "collate_records",
    "dense_additive_mask_torch",
    "forward_logprobs",
    "gather_logprobs",
    "make_block_mask",
    "model_inputs",
]


def _torch() -> Any:
    """Import torch on first use, so that this module (and its doctests) load without it."""
    try:
        import torch
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError("packed-trajectory tensors need torch: pip install mem1-envs[train]") from error
    return torch


def _padded_blocks(
    trajectories: Sequence[PackedTrajectory], size: int, padding_side: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block ids ``[B, S]`` and tables ``[B, K, K]`` with padding as one extra self-only block."""
    rows = len(trajectories)
    n_blocks = max(t.num_blocks for t in trajectories) + 1
    block_ids = np.empty((rows, size), np.int64)
    visible = np.zeros((rows, n_blocks, n_blocks), np.bool_)
    offsets = np.zeros(rows, np.int64)
    for b, t in enumerate(trajectories):
        pad = size - len(t)
        offsets[b] = pad if padding_side == "left" else 0
        pad_block = t.num_blocks
        block_ids[b] = pad_block
        block_ids[b, offsets[b] : offsets[b] + len(t)] = t.block_ids
        visible[b, : t.num_blocks, : t.num_blocks] = t.block_visible
        visible[b, pad_block, pad_block] = True
    return block_ids, visible, offsets


def collate(
    trajectories: Sequence[PackedTrajectory],
    *,
    pad_id: int = 0,
    padding_side: str = "right",
    dtype: Any = None,
    mask: str = "dense",
    pad_to_multiple_of: int = 1,
    block_size: int = 128,
    device: Any = None,
) -> dict[str, Any]:
    """Pad packed trajectories into one batch of torch tensors.

    Args:
        trajectories: packed episodes (one per row; use ``concat_packed`` to put several in a row).
        pad_id: token id for padding.
        padding_side: ``"right"`` or ``"left"``.
        dtype: float dtype of the additive mask (default ``torch.float32``); match the model's.
        mask: ``"dense"`` (``attention_mask`` ``[B, 1, S, S]`` additive float), ``"block"``
            (``block_mask``, a FlexAttention ``BlockMask``, no ``S x S`` tensor) or ``"none"``.
        pad_to_multiple_of: round S up (``mask="block"`` also rounds to a multiple of ``block_size``).
        block_size: FlexAttention tile size for ``mask="block"``.
        device: where the tensors go.

    Returns a dict: ``input_ids``, ``position_ids``, ``loss_mask``, ``pred_index`` (-1 off the
    loss), ``rewards``, ``old_logprobs`` (NaN where unknown), ``episode_index`` (-1 on padding;
    for ``gae_generated``), ``block_ids``, ``block_visible``,
    ``lengths``, ``offsets`` (where each row's tokens start) and the mask. There is no
    Hugging Face ``labels`` on purpose: the model would shift them by one position, which is
    wrong wherever a turn's first token is predicted by the prompt's end; score tokens with
    :func:`gather_logprobs` (it follows ``pred_index``).
    """
    torch = _torch()
    if not trajectories:
        raise ValueError("collate needs at least one trajectory, got 0")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if mask not in ("dense", "block", "none"):
        raise ValueError(f"mask must be 'dense', 'block' or 'none', got {mask!r}")
    if pad_to_multiple_of < 1:
        raise ValueError(f"pad_to_multiple_of must be >= 1, got {pad_to_multiple_of}")
    dtype = torch.float32 if dtype is None else dtype
    rows = len(trajectories)
    size = max(len(t) for t in trajectories)
    if mask == "block":  # FlexAttention tiles cover the sequence exactly
        pad_to_multiple_of = math.lcm(pad_to_multiple_of, block_size)
    size = -(-size // pad_to_multiple_of) * pad_to_multiple_of
    block_ids, visible, offsets = _padded_blocks(trajectories, size, padding_side)

    input_ids = np.full((rows, size), pad_id, np.int64)
    position_ids = np.zeros((rows, size), np.int64)
    loss_mask = np.zeros((rows, size), np.bool_)
    pred_index = np.full((rows, size), -1, np.int64)
    rewards = np.zeros((rows, size), np.float32)
    old_logprobs = np.full((rows, size), np.nan, np.float32)
    episode_index = np.full((rows, size), -1, np.int32)
    for b, t in enumerate(trajectories):
        span = slice(offsets[b], offsets[b] + len(t))
        input_ids[b, span] = t.input_ids
        position_ids[b, span] = t.position_ids
        loss_mask[b, span] = t.loss_mask
        pred_index[b, span] = np.where(t.pred_index >= 0, t.pred_index + offsets[b], -1)
        rewards[b, span] = t.rewards
        old_logprobs[b, span] = t.old_logprobs
        episode_index[b, span] = t.episode_index

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(device)

    batch: dict[str, Any] = {
        "input_ids": tensor(input_ids),
        "position_ids": tensor(position_ids),
        "loss_mask": tensor(loss_mask),
        "pred_index": tensor(pred_index),
        "rewards": tensor(rewards),
        "old_logprobs": tensor(old_logprobs),
        "episode_index": tensor(episode_index),
        "block_ids": tensor(block_ids),
        "block_visible": tensor(visible),
        "lengths": torch.tensor([len(t) for t in trajectories], device=device),
        "offsets": tensor(offsets),
    }
    released = np.array([t.released_rules for t in trajectories])
    if mask == "dense":
        batch["attention_mask"] = _dense_additive(block_ids, visible, released, dtype).to(device)
    elif mask == "block":
        if released.any():
            raise ValueError("released-rules rows reproduce D1 with a dense 1.0/0.0 mask; use mask='dense'")
        batch["block_mask"] = make_block_mask(
            batch["block_ids"], batch["block_visible"], block_size=block_size
        )
    return batch


def _dense_additive(
    block_ids: np.ndarray, visible: np.ndarray, released: np.ndarray, dtype: Any
) -> torch.Tensor:
    """The numba kernel writes the additive mask straight into the tensor's memory."""
    torch = _torch()
    rows, size = block_ids.shape
    low = torch.finfo(dtype).min
    allowed = np.where(released, 1.0, 0.0)  # released rows: D1, the mask cast to 1.0/0.0
    blocked = np.where(released, 0.0, low)
    if dtype in (torch.float32, torch.float64):
        out = torch.empty((rows, 1, size, size), dtype=dtype)
        fill_dense_masks(out.numpy()[:, 0], block_ids, visible, allowed, blocked)
        return out
    # numpy has no bfloat16: build the boolean mask, then pick the values in torch.
    keep = np.empty((rows, size, size), np.bool_)
    fill_dense_masks(keep, block_ids, visible, True, False)
    keep_t = torch.from_numpy(keep)[:, None]
    allowed_t = torch.tensor(allowed, dtype=dtype).view(rows, 1, 1, 1)
    blocked_t = torch.tensor(blocked, dtype=dtype).clamp(min=low).view(rows, 1, 1, 1)
    return torch.where(keep_t, allowed_t, blocked_t)


def dense_additive_mask_torch(
    block_ids: torch.Tensor, block_visible: torch.Tensor, dtype: Any = None
) -> torch.Tensor:
    """The same rule as the numba kernel, written as straightforward vectorised torch.

    ``[B, 1, S, S]`` additive mask from ``block_ids`` ``[B, S]`` and ``block_visible``
    ``[B, K, K]``: allowed where ``j <= i`` and ``block_visible[b, block[i], block[j]]``. Used as
    the twin in tests and as the baseline in ``scripts/bench_trajectory.py``.
    """
    torch = _torch()
    dtype = torch.float32 if dtype is None else dtype
    rows, size = block_ids.shape
    n_blocks = block_visible.shape[-1]
    causal = torch.ones(size, size, dtype=torch.bool, device=block_ids.device).tril_()
    pair = block_ids[:, :, None] * n_blocks + block_ids[:, None, :]
    visible = torch.gather(block_visible.reshape(rows, -1), 1, pair.reshape(rows, -1)).view(rows, size, size)
    keep = visible & causal
    out = torch.zeros(rows, 1, size, size, dtype=dtype, device=block_ids.device)
    return out.masked_fill_(~keep[:, None], torch.finfo(dtype).min)


def make_block_mask(block_ids: torch.Tensor, block_visible: torch.Tensor, *, block_size: int = 128) -> Any:
    """A FlexAttention ``BlockMask`` from per-token block ids, with no ``S x S`` tensor anywhere.

    ``block_ids`` ``[B, S]`` and ``block_visible`` ``[B, K, K]`` as in :func:`collate` (S a
    multiple of ``block_size``: collate with ``mask="block"`` pads to it). A numba kernel counts
    the allowed pairs of every ``block_size`` tile from the blocks' token ranges
    (:func:`~mem1_envs.trajectory.tile_counts`); full tiles skip the mask, partial tiles apply
    the same rule as the dense mask, and empty tiles are never computed. ``create_block_mask``
    would instead evaluate the rule on a full ``[B, 1, S, S]`` grid. Needs torch >= 2.5.
    """
    torch = _torch()
    try:
        from torch.nn.attention.flex_attention import BlockMask
    except ImportError as error:  # pragma: no cover - depends on the torch version
        raise ImportError(f"FlexAttention needs torch >= 2.5, found {torch.__version__}") from error
    rows, size = block_ids.shape
    if size % block_size:
        raise ValueError(f"sequence length {size} must be a multiple of block_size={block_size}")
    n_blocks = block_visible.shape[-1]
    ids_np = block_ids.cpu().numpy()
    visible_np = block_visible.cpu().numpy()
    lists = [tile_lists(tile_counts(ids_np[b], visible_np[b], block_size), block_size) for b in range(rows)]
    kv_num, kv_idx, full_num, full_idx = (
        torch.from_numpy(np.stack([parts[k] for parts in lists]))[:, None].to(block_ids.device)
        for k in range(4)
    )
    flat_visible = block_visible.reshape(rows, n_blocks * n_blocks)

    def mask_mod(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        pair = block_ids[b, q_idx] * n_blocks + block_ids[b, kv_idx]
        return (kv_idx <= q_idx) & flat_visible[b, pair]

    return BlockMask.from_kv_blocks(
        kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=block_size, mask_mod=mask_mod
    )


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of a Hugging Face causal-LM forward for a collated batch.

    A ``mask="block"`` batch passes its ``BlockMask`` as ``attention_mask``: load the model with
    ``attn_implementation="flex_attention"`` for it.
    """
    if "attention_mask" in batch:
        mask = batch["attention_mask"]
    elif "block_mask" in batch:
        mask = batch["block_mask"]
    else:
        raise ValueError("the batch has no attention mask: collate with mask='dense' or mask='block'")
    return {
        "input_ids": batch["input_ids"],
        "attention_mask": mask,
        "position_ids": batch["position_ids"],
        "use_cache": False,
    }


def gather_logprobs(logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    """Log-prob of every loss token under the logits of a packed batch; ``[B, S]``, 0 elsewhere.

    Token ``i`` is scored by the logits at ``pred_index[i]`` (its predecessor in its turn's
    input). Uses ``logsumexp`` per needed row instead of a full ``log_softmax`` copy of the logits.
    """
    torch = _torch()
    pred_index = batch["pred_index"].to(logits.device)
    loss_mask = batch["loss_mask"].to(logits.device)
    source = pred_index.clamp(min=0)
    rows = torch.arange(logits.shape[0], device=logits.device)[:, None]
    targets = batch["input_ids"].to(logits.device)
    picked = logits[rows, source, targets].float()
    normaliser = torch.logsumexp(logits.float(), dim=-1).gather(1, source)
    return torch.where(loss_mask, picked - normaliser, torch.zeros_like(picked))


def forward_logprobs(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    """One packed forward of a Hugging Face causal LM, then :func:`gather_logprobs`."""
    return gather_logprobs(model(**model_inputs(batch)).logits, batch)


def collate_records(
    records: Sequence[RolloutRecord], *, max_tokens: int | None = None, **options: Any
) -> dict[str, Any]:
    """Pack records exactly (``pack_records``: the D7 rule with ``max_tokens``) and :func:`collate`
    them; ``batch["skipped"]`` lists the records left out because their final turn did not fit."""
    packed, skipped = pack_records(records, max_tokens=max_tokens)
    if not packed:
        raise ValueError(f"every record exceeds max_tokens={max_tokens}: nothing to collate")
    batch = collate(packed, **options)
    batch["skipped"] = skipped
    return batch
