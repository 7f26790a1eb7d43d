"""Benchmark packed trajectories: mask building, compact vs dense masks, packed vs per-turn forwards.

Three measurements, each side by side in one run (medians of repeats):

1. Dense ``[B, 1, S, S]`` additive mask for a batch (16 episodes x 8 turns, ~8k packed tokens):
   the numba kernel vs a straightforward vectorised torch implementation of the same rule
   (``dense_additive_mask_torch``); both start from the same block ids and produce equal masks.
2. Compact form at 8k / 32k / 128k tokens in one row: exact packing (numba) + FlexAttention
   tile structure (``make_block_mask``) time and bytes, next to the dense bool ``S x S`` mask
   (built where it fits in memory, otherwise its size is only computed).
3. Packed exact forward vs one forward per turn on a tiny random Qwen2 model with a long
   (16-objective-like) prompt: tokens processed, time, and the log-prob agreement.

Usage::

    python scripts/bench_trajectory.py            # the numbers in BENCHMARKS.md
    python scripts/bench_trajectory.py --quick    # a smoke run of a few seconds
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mem1_envs.trajectory import PackedTrajectory, concat_packed, fill_dense_masks, pack_exact


@dataclass(frozen=True)
class Args:
    """Benchmark settings.

    Attributes:
        quick: tiny sizes and few repeats (a smoke run).
        repeats: timed repeats per measurement (the median is reported).
        episodes: episodes in the dense-mask batch.
        turns: turns per episode.
        seed: random seed of the synthetic episodes.
    """

    quick: bool = False
    repeats: int = 15
    episodes: int = 16
    turns: int = 8
    seed: int = 0


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    function()  # warm-up: numba compilation, allocator
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(
    functions: dict[str, Callable[[], object]], repeats: int, times: dict[str, list[float]] | None = None
) -> dict[str, float]:
    """Median seconds of each function, the sides alternating every repeat (on a shared machine
    a load spike then hits every side alike instead of one); ``times`` receives every repeat."""
    for function in functions.values():
        function()  # warm-up
    times = {} if times is None else times
    times.update({name: [] for name in functions})
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def mem1_episode(
    rng: np.random.Generator,
    turns: int,
    prompt: int,
    state: int,
    action: int,
    observation: int,
    vocab: int = 1000,
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """A synthetic MEM1-policy episode; lengths vary by +-25% around the given means."""

    def draw(mean: int) -> np.ndarray:
        return rng.integers(1, vocab, max(1, int(rng.integers(mean * 3 // 4, mean * 5 // 4 + 1))))

    prompt_ids = draw(prompt)
    pairs, previous = [], np.zeros(0, np.int64)
    for _ in range(turns):
        generated = np.concatenate([draw(state), draw(action)])
        pairs.append((previous, generated))
        previous = np.concatenate([generated, draw(observation)])
    return prompt_ids, pairs


def padded_blocks(trajectories: list[PackedTrajectory]) -> tuple[np.ndarray, np.ndarray]:
    from mem1_envs.trajectory_torch import _padded_blocks

    size = max(len(t) for t in trajectories)
    block_ids, visible, _ = _padded_blocks(trajectories, size, "right")
    return block_ids, visible


def bench_dense(args: Args) -> dict[str, object]:
    import torch

    from mem1_envs.trajectory_torch import dense_additive_mask_torch

    rng = np.random.default_rng(args.seed)
    trajectories = [pack_exact(*mem1_episode(rng, args.turns, 60, 12, 6, 20)) for _ in range(args.episodes)]
    block_ids, visible = padded_blocks(trajectories)
    rows, size = block_ids.shape
    block_ids_t, visible_t = torch.from_numpy(block_ids), torch.from_numpy(visible)
    low = torch.finfo(torch.float32).min

    def numba_mask() -> torch.Tensor:
        out = torch.empty((rows, 1, size, size), dtype=torch.float32)
        fill_dense_masks(out.numpy()[:, 0], block_ids, visible, 0.0, low)
        return out

    def torch_mask() -> torch.Tensor:
        return dense_additive_mask_torch(block_ids_t, visible_t)

    assert torch.equal(numba_mask(), torch_mask()), "numba and torch masks differ"
    times: dict[str, list[float]] = {}
    medians = interleaved_medians({"numba": numba_mask, "torch": torch_mask}, args.repeats, times)
    numba_s, torch_s = medians["numba"], medians["torch"]
    packed_tokens = sum(len(t) for t in trajectories)
    print(
        f"[dense mask] {rows} episodes x {args.turns} turns, {packed_tokens} packed tokens, "
        f"mask [{rows}, 1, {size}, {size}] float32 ({rows * size * size * 4 / 2**20:.0f} MiB), "
        f"torch threads {torch.get_num_threads()}"
    )
    print(
        f"  numba {numba_s * 1e3:.2f} ms   torch (vectorised) {torch_s * 1e3:.2f} ms   "
        f"speed-up {torch_s / numba_s:.1f}x  (medians of {args.repeats}, interleaved)"
    )
    return {"rows": rows, "size": size, "packed_tokens": packed_tokens, "times": times}


def long_row(rng: np.random.Generator, target: int) -> list[tuple[np.ndarray, list]]:
    """Episodes whose exact packings add up to about ``target`` tokens."""
    episodes, total = [], 0
    while total < target:
        prompt, pairs = mem1_episode(rng, 8, 300, 40, 10, 120)
        episodes.append((prompt, pairs))
        total += len(prompt) + sum(c.size + g.size for c, g in pairs)
    return episodes


def compact_case(args: Args, target: int, dense_limit: int) -> str:
    """One row of about ``target`` tokens: time and bytes of the compact and the dense form."""
    import torch

    from mem1_envs.trajectory import tile_counts, tile_lists
    from mem1_envs.trajectory_torch import make_block_mask

    episodes = long_row(np.random.default_rng(args.seed), target)

    def pack() -> PackedTrajectory:
        return concat_packed([pack_exact(p, t) for p, t in episodes])

    row = pack()
    size = -(-len(row) // 128) * 128
    block_ids = np.full(size, row.num_blocks, np.int32)
    block_ids[: len(row)] = row.block_ids
    visible = np.eye(row.num_blocks + 1, dtype=bool)
    visible[: row.num_blocks, : row.num_blocks] = row.block_visible
    ids_t, visible_t = torch.from_numpy(block_ids)[None], torch.from_numpy(visible)[None]
    repeats = max(1, args.repeats // 3)
    pack_s = median_seconds(pack, repeats)
    tiles_s = median_seconds(lambda: tile_lists(tile_counts(block_ids, visible, 128), 128), repeats)
    block_mask_s = median_seconds(lambda: make_block_mask(ids_t, visible_t), repeats)
    block_mask = make_block_mask(ids_t, visible_t)
    tensors = [block_mask.kv_num_blocks, block_mask.kv_indices, block_mask.full_kv_num_blocks]
    tensors.append(block_mask.full_kv_indices)
    compact_bytes = sum(getattr(row, name).nbytes for name in ("block_ids", "block_visible", "position_ids"))
    compact_bytes += sum(t.numel() * t.element_size() for t in tensors)
    if size <= dense_limit:
        out = np.empty((1, size, size), np.bool_)
        dense_s = median_seconds(
            lambda: fill_dense_masks(out, block_ids[None], visible[None], True, False), repeats
        )
        dense = f"{dense_s * 1e3:9.1f}"
    else:
        dense = f"{'not built':>9}"
    return (
        f"  {len(row):8d} {pack_s * 1e3:9.2f} {tiles_s * 1e3:9.2f} {block_mask_s * 1e3:10.1f} "
        f"{compact_bytes / 2**20:12.2f} {dense} {size * size / 2**20:10.0f}"
    )


def bench_compact(args: Args, sizes: list[int], dense_limit: int) -> None:
    print("[compact vs dense] one row of sequence-packed episodes; FlexAttention tiles of 128")
    print("  pack = exact packing (numba) of all episodes; tiles = numba tile kernels; BlockMask = tiles +")
    print("  torch BlockMask.from_kv_blocks; compact = block ids + tables + positions + BlockMask lists;")
    print("  dense = bool S x S mask (numba), built only where it fits")
    header = ("tokens", "pack ms", "tiles ms", "BlockMask ms", "compact MiB", "dense ms", "dense MiB")
    print("  " + " ".join(f"{h:>{w}}" for h, w in zip(header, (8, 9, 9, 10, 12, 9, 10), strict=True)))
    for target in sizes:
        print(compact_case(args, target, dense_limit))


def bench_forward(args: Args, episodes: int, turns: int, prompt: int) -> None:
    import torch
    import transformers

    from mem1_envs.trajectory_torch import collate, forward_logprobs

    torch.manual_seed(args.seed)
    config = transformers.Qwen2Config(
        vocab_size=1000,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        attn_implementation="sdpa",
    )
    model = transformers.Qwen2ForCausalLM(config).eval()
    rng = np.random.default_rng(args.seed)
    data = [mem1_episode(rng, turns, prompt, 40, 10, 120) for _ in range(episodes)]
    trajectories = [pack_exact(p, t) for p, t in data]

    @torch.no_grad()
    def packed() -> torch.Tensor:
        return forward_logprobs(model, collate(trajectories))

    per_turn_inputs = []
    for p, pairs in data:
        for context, generated in pairs:
            per_turn_inputs.append((np.concatenate([p, context, generated]), generated.size))

    batch = collate(trajectories)

    @torch.no_grad()
    def packed_forward_only() -> torch.Tensor:
        return forward_logprobs(model, batch)

    @torch.no_grad()
    def per_turn() -> list[np.ndarray]:
        out = []
        for ids, n in per_turn_inputs:
            tokens = torch.from_numpy(ids)[None]
            logits = model(input_ids=tokens, use_cache=False).logits[0]
            logprobs = torch.log_softmax(logits[-n - 1 : -1], -1)
            out.append(logprobs.gather(1, tokens[0, -n:, None])[:, 0].numpy())
        return out

    packed_lp = packed()
    reference = per_turn()
    error = 0.0
    cursor = 0
    for row, trajectory in enumerate(trajectories):
        values = packed_lp[row, : len(trajectory)].numpy()
        for k in range(turns):
            got = values[trajectory.loss_mask & (trajectory.turn_index == k)]
            error = max(error, float(np.abs(got - reference[cursor]).max()))
            cursor += 1
    repeats = max(1, args.repeats // 3)
    medians = interleaved_medians(
        {"packed": packed, "forward": packed_forward_only, "per_turn": per_turn}, repeats
    )
    packed_s, forward_s, per_turn_s = medians["packed"], medians["forward"], medians["per_turn"]
    packed_tokens = sum(len(t) for t in trajectories)
    padded_tokens = int(batch["input_ids"].numel())
    per_turn_tokens = sum(ids.size for ids, _ in per_turn_inputs)
    print(
        f"[forward] tiny Qwen2 (2 layers, hidden 64, sdpa, fp32), {episodes} episodes x {turns} turns, "
        f"prompt ~{prompt} tokens"
    )
    print(
        f"  packed exact: {packed_tokens} tokens ({padded_tokens} with padding), one forward, "
        f"{packed_s * 1e3:.1f} ms with collation ({forward_s * 1e3:.1f} ms forward only)"
    )
    print(
        f"  per turn:     {per_turn_tokens} tokens, {len(per_turn_inputs)} forwards, {per_turn_s * 1e3:.1f} ms"
    )
    print(
        f"  tokens ratio {per_turn_tokens / packed_tokens:.2f}x, time ratio {per_turn_s / packed_s:.2f}x, "
        f"max |log-prob diff| {error:.1e}"
    )
    # Attention work: SDPA with a dense mask scores every (query, key) pair of the padded rows;
    # a block-sparse kernel (FlexAttention on GPU) needs only the allowed pairs.
    scored = int(batch["input_ids"].shape[0]) * int(batch["input_ids"].shape[1]) ** 2
    allowed = sum(int(t.dense_mask().sum()) for t in trajectories)
    causal = sum(ids.size * (ids.size + 1) // 2 for ids, _ in per_turn_inputs)
    print(
        f"  attention pairs: packed dense-mask SDPA scores {scored / 1e6:.1f} M, of which allowed "
        f"{allowed / 1e6:.1f} M; per-turn causal pairs {causal / 1e6:.1f} M"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 15, quick 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1, like the numba kernels)"
    )
    options = parser.parse_args()
    if options.threads < 1:
        parser.error(f"--threads must be >= 1, got {options.threads}")
    import torch

    # One thread on both sides: numba runs single-threaded, and on a shared CPU torch's thread
    # pool mostly measures contention (a 600x64 linear: 0.3 ms on one thread, 1-20 ms on two).
    torch.set_num_threads(options.threads)
    repeats = options.repeats if options.repeats is not None else (3 if options.quick else 15)
    if repeats < 1:
        parser.error(f"--repeats must be >= 1, got {repeats}")
    if options.quick:
        args = Args(quick=True, repeats=repeats, episodes=4, turns=3, seed=options.seed)
        bench_dense(args)
        bench_compact(args, [2_000], dense_limit=4_096)
        bench_forward(args, episodes=1, turns=3, prompt=64)
        return
    args = Args(repeats=repeats, seed=options.seed)
    bench_dense(args)
    bench_compact(args, [8_000, 32_000, 128_000], dense_limit=40_000)
    bench_forward(args, episodes=4, turns=8, prompt=400)


if __name__ == "__main__":
    main()
