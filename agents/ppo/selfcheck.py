"""Data-parallel self-check: N processes (gloo on CPU) make the same update as one process.

Used by ``tests/test_ppo_distributed.py`` and runnable by hand::

    python -m agents.ppo.selfcheck --world 2

It collects a small batch with the tiny model, gives it fixed rewards, runs one update in one
process on the whole batch and in ``world`` processes (each on its contiguous share, launched
with ``torch.multiprocessing`` on 127.0.0.1 and a free port), and prints the largest parameter
difference. Under ``torchrun`` the trainer reads ``RANK``/``WORLD_SIZE`` the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import socket
import tempfile
from typing import Any

__all__ = ["free_port", "run_ddp_update", "run_single_update", "toy_batch"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker(rank: int, world: int, port: int, config: Any, batch_path: str, out_path: str) -> None:
    import torch
    import torch.distributed as dist

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    from agents.ppo.trainer import PPOTrainer

    with open(batch_path, "rb") as handle:
        records, groups = pickle.load(handle)
    trainer = PPOTrainer(config)
    share = len(records) // world
    mine = slice(rank * share, (rank + 1) * share)
    metrics = trainer.update(records[mine], groups[mine], step=0)
    state = trainer._model_state()  # a collective under FSDP2: every rank takes part
    if rank == 0:
        torch.save({"state": state, "metrics": metrics}, out_path)
    trainer.close()
    dist.barrier()
    dist.destroy_process_group()


def run_single_update(config: Any, records: list, groups: list) -> dict[str, Any]:
    from agents.ppo.trainer import PPOTrainer

    trainer = PPOTrainer(config)
    initial = {k: v.detach().cpu().clone() for k, v in trainer.core.state_dict().items()}
    metrics = trainer.update(records, groups, step=0)
    state = {k: v.detach().cpu() for k, v in trainer.core.state_dict().items()}
    trainer.close()
    return {"state": state, "metrics": metrics, "initial": initial}


def run_ddp_update(config: Any, records: list, groups: list, world: int = 2) -> dict[str, Any]:
    """Rank 0's parameters and metrics after one update on ``world`` gloo processes."""
    import torch
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as folder:
        batch_path = os.path.join(folder, "batch.pkl")
        out_path = os.path.join(folder, "rank0.pt")
        with open(batch_path, "wb") as handle:
            pickle.dump((records, groups), handle)
        mp.spawn(_worker, args=(world, free_port(), config, batch_path, out_path), nprocs=world, join=True)
        return torch.load(out_path, weights_only=False)


def toy_batch(config: Any, rewards: list[float]) -> tuple[list, list]:
    """Collect ``len(rewards)`` episodes with the config's model and set their task rewards."""
    from agents.ppo.trainer import PPOTrainer
    from mem1_envs.trajectory import RolloutRecord, TurnRecord

    trainer = PPOTrainer(
        dataclasses.replace(config, episodes_per_step=len(rewards), mini_batch_episodes=len(rewards))
    )
    episodes, groups, _ = trainer.rollout(0)
    trainer.close()
    records = []
    for episode, reward in zip(episodes, rewards, strict=True):
        turns = [
            TurnRecord(t.context_ids, t.generated_ids, old_logprobs=t.old_logprobs)
            for t in episode.record.turns
        ]
        records.append(RolloutRecord(episode.record.prompt_ids, turns, reward=reward))
    return records, groups


def toy_config(**overrides: Any) -> Any:
    """The tiny-cpu config of the 1-vs-N-process check: 4 episodes, one micro-batch each."""
    from agents.ppo.config import preset

    settings = dict(
        env_kwargs=(("world", "small"), ("max_turns", 2), ("invalid_action", "penalize")),
        num_envs=1,
        episodes_per_step=4,
        mini_batch_episodes=4,
        micro_batch_episodes=1,  # 4 accumulated micro-batches in one process, 2 per rank in two
        max_new_tokens=8,
        progress=False,
    )
    settings.update(overrides)
    return preset("tiny-cpu", **settings)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--distributed", default="ddp", choices=["ddp", "fsdp2"])
    args = parser.parse_args()
    config = toy_config(out_dir=tempfile.mkdtemp(), distributed=args.distributed)
    records, groups = toy_batch(config, [1.0, 0.0, 0.5, 0.0])
    one = run_single_update(config, records, groups)
    many = run_ddp_update(config, records, groups, world=args.world)
    diff = max(float((one["state"][k] - many["state"][k]).abs().max()) for k in one["state"])
    print(f"{args.distributed}: max |param(1 process) - param({args.world} processes)| = {diff:.3e}")


if __name__ == "__main__":
    main()
