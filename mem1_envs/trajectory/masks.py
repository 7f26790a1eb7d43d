"""Attention masks from the compact form (a block id per token, a ``[blocks, blocks]``
visibility table): dense ``[B, S, S]`` masks filled by contiguous ranges, per-tile counts and
FlexAttention block lists without an ``S x S`` mask, and the pair-by-pair oracle."""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

__all__ = ["dense_mask_python", "fill_dense_masks", "tile_counts", "tile_lists"]


@numba.njit(cache=True)
def _block_ranges(block_ids, visible):  # pragma: no cover - jit
    """Token range of every block, and (CSR) the other non-empty blocks each block sees."""
    size = block_ids.shape[0]
    n_blocks = visible.shape[0]
    start = np.zeros(n_blocks, np.int64)
    end = np.zeros(n_blocks, np.int64)
    count = np.zeros(n_blocks, np.int64)
    for i in range(size):
        b = block_ids[i]
        if count[b] == 0:
            start[b] = i
        end[b] = i + 1
        count[b] += 1
    for b in range(n_blocks):
        if count[b] != end[b] - start[b]:
            raise ValueError("the tokens of a block must be contiguous")
    seen_from = np.zeros(n_blocks + 1, np.int64)
    seen = np.zeros(n_blocks * n_blocks, np.int64)
    n = 0
    for s in range(n_blocks):
        for t in range(n_blocks):
            if t != s and visible[s, t] and count[t] > 0:
                seen[n] = t
                n += 1
        seen_from[s + 1] = n
    return start, end, seen_from, seen


@numba.njit(cache=True)
def _fill_one(out, block_ids, visible, allowed, blocked):  # pragma: no cover - jit
    size = block_ids.shape[0]
    start, end, seen_from, seen = _block_ranges(block_ids, visible)
    out[:, :] = blocked
    # Every allowed set is a union of contiguous ranges: fill ranges, never test pairs.
    for i in range(size):
        s = block_ids[i]
        for k in range(seen_from[s], seen_from[s + 1]):
            t = seen[k]
            out[i, start[t] : min(end[t], i + 1)] = allowed
        out[i, start[s] : i + 1] = allowed


@numba.njit(cache=True)
def _fill_batch(out, block_ids, visible, allowed, blocked):  # pragma: no cover - jit
    for b in range(out.shape[0]):
        _fill_one(out[b], block_ids[b], visible[b], allowed[b], blocked[b])


@numba.njit(cache=True)
def _tile_counts_kernel(block_ids, visible, tile):  # pragma: no cover - jit
    """Allowed (query, key) pairs per ``tile x tile`` tile of one row, from ranges alone."""
    size = block_ids.shape[0]
    n_tiles = size // tile
    start, end, seen_from, seen = _block_ranges(block_ids, visible)
    counts = np.zeros((n_tiles, n_tiles), np.int64)
    for i in range(size):
        q_tile = i // tile
        s = block_ids[i]
        for k in range(seen_from[s], seen_from[s + 1] + 1):
            if k < seen_from[s + 1]:
                t = seen[k]
                lo, hi = start[t], min(end[t], i + 1)
            else:
                lo, hi = start[s], i + 1
            if lo >= hi:
                continue
            for kv_tile in range(lo // tile, (hi - 1) // tile + 1):
                counts[q_tile, kv_tile] += min(hi, (kv_tile + 1) * tile) - max(lo, kv_tile * tile)
    return counts


def tile_counts(block_ids: np.ndarray, block_visible: np.ndarray, tile: int) -> np.ndarray:
    """``[S/tile, S/tile]`` counts of allowed pairs per tile of one row, without an ``S x S`` mask.

    A tile is empty (0), full (``tile**2``) or partial: what a FlexAttention ``BlockMask`` needs.
    ``S`` must be a multiple of ``tile``.

    >>> from mem1_envs.trajectory import pack_exact
    >>> packed = pack_exact([1, 2], [([], [3, 4])])
    >>> tile_counts(packed.block_ids, packed.block_visible, 2).tolist()
    [[3, 0], [4, 3]]
    """
    size = int(np.asarray(block_ids).shape[0])
    if tile < 1 or size % tile:
        raise ValueError(f"the sequence length ({size}) must be a multiple of tile (got tile={tile})")
    return _tile_counts_kernel(
        np.ascontiguousarray(block_ids, dtype=np.int64),
        np.ascontiguousarray(block_visible, dtype=np.bool_),
        tile,
    )


@numba.njit(cache=True)
def _tile_lists_kernel(counts, full_count):  # pragma: no cover - jit
    n = counts.shape[0]
    partial_num = np.zeros(n, np.int32)
    partial_idx = np.zeros((n, n), np.int32)
    full_num = np.zeros(n, np.int32)
    full_idx = np.zeros((n, n), np.int32)
    for q in range(n):
        for k in range(n):
            c = counts[q, k]
            if c == full_count:
                full_idx[q, full_num[q]] = k
                full_num[q] += 1
            elif c > 0:
                partial_idx[q, partial_num[q]] = k
                partial_num[q] += 1
    return partial_num, partial_idx, full_num, full_idx


def tile_lists(counts: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """FlexAttention's block lists from :func:`tile_counts`: ``(partial_num, partial_idx, full_num,
    full_idx)``, per query tile the number and (first columns of) indices of its key tiles."""
    return _tile_lists_kernel(np.ascontiguousarray(counts, dtype=np.int64), tile * tile)


def fill_dense_masks(
    out: np.ndarray,
    block_ids: np.ndarray,
    block_visible: np.ndarray,
    allowed: object,
    blocked: object,
) -> np.ndarray:
    """Write ``allowed``/``blocked`` into ``out[b, i, j]`` (``[B, S, S]``, any numeric or bool dtype).

    ``block_ids`` is ``[B, S]`` (blocks contiguous per row), ``block_visible`` ``[B, K, K]``;
    ``allowed``/``blocked`` are scalars or one value per row (how the released-rules D1 rows
    differ). Returns ``out``.
    """
    rows = out.shape[0]
    allowed_rows = np.broadcast_to(np.asarray(allowed, dtype=out.dtype), (rows,)).copy()
    blocked_rows = np.broadcast_to(np.asarray(blocked, dtype=out.dtype), (rows,)).copy()
    _fill_batch(
        out,
        np.ascontiguousarray(block_ids, dtype=np.int64),
        np.ascontiguousarray(block_visible, dtype=np.bool_),
        allowed_rows,
        blocked_rows,
    )
    return out


def dense_mask_python(block_ids: Sequence[int], block_visible: np.ndarray) -> np.ndarray:
    """Plain-Python twin of the dense mask: the rule itself, pair by pair (the test oracle)."""
    size = len(block_ids)
    mask = np.zeros((size, size), np.bool_)
    for i in range(size):
        for j in range(i + 1):
            mask[i, j] = bool(block_visible[block_ids[i], block_ids[j]])
    return mask
