"""Token-budget micro-batches: several packed episodes per row, the unpacked gradients, equal
forward/backward counts on every rank (FSDP2 and DDP under 2 gloo processes)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from gloo_spawn import run_gloo  # noqa: E402

from agents.ppo.buffer import RolloutBuffer  # noqa: E402
from agents.ppo.config import preset  # noqa: E402
from agents.ppo.trainer import PPOTrainer  # noqa: E402
from mem1_envs.trajectory import RolloutRecord, TurnRecord  # noqa: E402

pytestmark = pytest.mark.train


def synthetic_records(shapes: list[tuple[int, list[tuple[int, int]]]], seed: int = 0) -> list[RolloutRecord]:
    """Episodes of given (prompt length, [(context length, generated length), ...]), random ids."""
    rng = np.random.default_rng(seed)
    records = []
    for k, (prompt, turns) in enumerate(shapes):
        steps = [TurnRecord(rng.integers(3, 2000, c), rng.integers(3, 2000, g)) for c, g in turns]
        records.append(RolloutRecord(rng.integers(3, 2000, prompt), steps, reward=float(k % 3) / 2))
    return records


def config(out_dir, episodes: int, **changes):
    settings = dict(
        env_kwargs=(("world", "small"), ("max_turns", 2)),
        num_envs=1,
        episodes_per_step=episodes,
        mini_batch_episodes=episodes,
        micro_batch_episodes=1,
        old_logprobs="recompute",
        kl_mode="k3_loss",
        kl_coef=0.1,
        actor_lr=1e-3,
        grad_clip=1e9,  # the raw accumulated gradients stay in .grad for the comparison
        out_dir=str(out_dir),
        progress=False,
    )
    settings.update(changes)
    return preset("tiny-cpu", **settings)


SHAPES = [
    (20, [(0, 12), (15, 10)]),
    (12, [(0, 30)]),
    (25, [(0, 8), (20, 9), (18, 7)]),
    (10, [(0, 5)]),
    (30, [(0, 40), (25, 20)]),
    (8, [(0, 6), (6, 6)]),
    (16, [(0, 22)]),
    (14, [(0, 9), (12, 11)]),
]


def _grads(trainer: PPOTrainer) -> dict[str, torch.Tensor]:
    """The accumulated gradients left by ``update`` (gathered from FSDP2 shards: a collective)."""
    from torch.distributed.tensor import DTensor

    grads = {}
    for name, param in trainer.core.named_parameters():
        if param.grad is not None:
            grad = param.grad.detach()
            grads[name] = (grad.full_tensor() if isinstance(grad, DTensor) else grad).clone()
    return grads


def test_token_budget_packs_rows_within_budget_and_matches_unpacked_gradients(tmp_path):
    records = synthetic_records(SHAPES)
    groups = list(range(len(records)))
    budget = 128
    buffer = RolloutBuffer.from_records(records, groups)
    plan = buffer.micro_batches(range(len(buffer)), max_tokens=budget)
    lengths = [len(p) for p in buffer.packed]
    assert max(lengths) <= budget < sum(lengths)
    assert sorted(i for micro in plan for row in micro for i in row) == list(range(len(buffer)))
    assert all(sum(lengths[i] for row in micro for i in row) <= budget for micro in plan)
    assert any(len(row) > 1 for micro in plan for row in micro)  # packing happened
    assert len(plan) < len(buffer)

    unpacked = PPOTrainer(config(tmp_path / "a", len(records)))
    one = unpacked.update(records, groups, step=0)
    expected = _grads(unpacked)
    unpacked.close()
    packed = PPOTrainer(config(tmp_path / "b", len(records), max_tokens_per_microbatch=budget))
    two = packed.update(records, groups, step=0)
    got = _grads(packed)
    packed.close()
    assert one["micro_batches"] == len(records) and two["micro_batches"] == len(plan)
    assert set(got) == set(expected) and any(float(g.abs().max()) > 1e-3 for g in expected.values())
    for name, grad in expected.items():
        assert torch.allclose(got[name], grad, atol=1e-5, rtol=0), (
            name,
            float((got[name] - grad).abs().max()),
        )
    # the scoring pass runs in the same budgeted rows: its log-probs, values and KL agree too
    for name in ("policy_loss", "value_loss", "entropy", "kl_k3", "kl", "logprob_gap"):
        assert one[name] == pytest.approx(two[name], rel=1e-5, abs=1e-7), name


def test_an_episode_over_the_budget_is_an_error():
    buffer = RolloutBuffer.from_records(synthetic_records([(10, [(0, 5)]), (50, [(0, 20)])]))
    with pytest.raises(
        ValueError, match="episode 1 has 70 packed tokens, more than max_tokens_per_microbatch=64"
    ):
        buffer.micro_batches([0, 1], max_tokens=64)


# rank 0 gets two short episodes (one micro-batch), rank 1 two long ones (two micro-batches)
RANKED = [(10, [(0, 14)]), (12, [(0, 10)]), (40, [(0, 50)]), (30, [(0, 30), (20, 15)])]
BUDGET = 128


def _ranked_worker(rank: int, world: int, base, records, out_dir: str) -> None:
    share = len(records) // world
    mine = slice(rank * share, (rank + 1) * share)
    results = {}
    for kind in ("ddp", "fsdp2"):
        trainer = PPOTrainer(dataclasses.replace(base, distributed=kind))
        calls: list[int] = []
        loss_fn = trainer._loss

        def counted(batch, denominator, calls=calls, loss_fn=loss_fn):
            calls.append(int(batch["loss_mask"].sum()))  # 0: a zero-loss padding pass
            return loss_fn(batch, denominator)

        trainer._loss = counted
        metrics = trainer.update(records[mine], list(range(len(records)))[mine], step=0)
        results[kind] = {"calls": calls, "metrics": metrics, "grads": _grads(trainer)}
        results[kind]["state"] = trainer._model_state()
        trainer.close()
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))


def test_ranks_with_different_micro_batch_counts_run_equal_passes_and_match_one_process(tmp_path):
    records = synthetic_records(RANKED, seed=1)
    base = config(tmp_path, len(records), max_tokens_per_microbatch=BUDGET)
    single = PPOTrainer(base)
    one = single.update(records, list(range(len(records))), step=0)
    grads = _grads(single)
    state = {k: v.detach().clone() for k, v in single.core.state_dict().items()}
    single.close()
    buffer = RolloutBuffer.from_records(records)
    assert len(buffer.micro_batches([0, 1], max_tokens=BUDGET)) == 1
    assert len(buffer.micro_batches([2, 3], max_tokens=BUDGET)) == 2
    run_gloo(_ranked_worker, base, records, str(tmp_path), world=2, timeout=300)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for kind in ("ddp", "fsdp2"):
        zero, first = ranks[0][kind], ranks[1][kind]
        # rank 0: its one real micro-batch, then a zero-loss pass; rank 1: two real ones
        assert len(zero["calls"]) == len(first["calls"]) == 2, kind
        assert zero["calls"][1] == 0 and all(n > 0 for n in first["calls"]), kind
        assert zero["metrics"]["padding_micro_batches"] == 1.0
        # DDP averages and FSDP2 reduce-scatters rank 0's and rank 1's accumulated gradients.
        assert set(zero["grads"]) == set(grads)
        for name, grad in grads.items():
            assert torch.allclose(zero["grads"][name], grad, atol=1e-5, rtol=0), (kind, name)
        # Adam's first step is ~lr * sign(g): float noise in a near-zero gradient entry moves a
        # parameter by up to ~1e-5 (seen 1.2e-5) of the 1e-3 step; 5e-5 is 5% of a step.
        for name, value in state.items():
            assert torch.allclose(zero["state"][name], value, atol=5e-5, rtol=0), (kind, name)
        for name in ("policy_loss", "value_loss", "entropy", "grad_norm"):
            assert zero["metrics"][name] == pytest.approx(one[name], rel=1e-4, abs=1e-7), (kind, name)
