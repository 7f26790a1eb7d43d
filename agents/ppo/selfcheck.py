"""Data-parallel self-check: N processes (gloo on CPU) make the same update as one process.

Used by ``tests/test_ppo_distributed.py`` and runnable by hand::

    python -m agents.ppo.selfcheck --world 2

It collects a small batch with the tiny model, gives it fixed rewards, runs one update in one
process on the whole batch and in ``world`` processes (each on its contiguous share, launched
with ``torch.multiprocessing`` on 127.0.0.1 and a free port), and prints the largest parameter
difference. Under ``torchrun`` the trainer reads ``RANK``/``WORLD_SIZE`` the same way.

:func:`run_checks` plays a whole step (rollout, evaluation, update) in ``world`` processes on
:class:`FixedTurnsEnv`, whose episodes last a number of turns fixed by the seed, so that ranks
generate for different numbers of turns: the deadlock test of the no-collective rollout.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import socket
import tempfile
import time
from datetime import timedelta
from typing import Any, ClassVar

import gymnasium as gym

__all__ = [
    "FixedTurnsEnv",
    "free_port",
    "run_checks",
    "run_ddp_update",
    "run_single_update",
    "sharding_report",
    "toy_batch",
]

FIXED_TURNS_ID = "agents.ppo.selfcheck:FixedTurns-v0"


class FixedTurnsEnv(gym.Env):
    """A question whose episode lasts ``turns[seed % len(turns)]`` turns, whatever the model writes.

    The final reward is ``(len(action) % 7) / 7``: it depends on the generated text, so evaluation
    results can be compared between runs. ``gym.make(FIXED_TURNS_ID, turns=(1, 3))`` imports this
    module, which registers the id.

    >>> env = gym.make(FIXED_TURNS_ID, turns=(1, 3))
    >>> _ = env.reset(seed=1)
    >>> [env.step("x")[2] for _ in range(3)]
    [False, False, True]
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, turns: tuple[int, ...] = (1, 3), split: str = "train", **_: Any):
        from mem1_envs import protocol as proto

        if not turns or min(turns) < 1:
            raise ValueError(f"turns must be a non-empty tuple of counts >= 1, got {turns!r}")
        self.turns = tuple(int(t) for t in turns)
        self.split = split
        self.observation_space = gym.spaces.Text(proto.MAX_OBSERVATION_CHARS, charset=proto.ASCII_CHARSET)
        self.action_space = gym.spaces.Text(proto.DEFAULT_MAX_CHARS, charset=proto.ASCII_CHARSET)
        self.limit, self.turn, self.prompt = 1, 0, ""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self.limit = self.turns[(seed or 0) % len(self.turns)]
        self.turn = 0
        self.prompt = f"Answer the following question: what is item {seed}?"
        return self.prompt, {"prompt": self.prompt}  # the LLM-policy contract: the task prompt in info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        self.turn += 1
        done = self.turn >= self.limit
        reward = (len(action) % 7) / 7 if done else 0.0
        observation = f"{self.prompt}\nTurn {self.turn} of {self.limit} done."
        info = {"prompt": self.prompt, "em": [float(reward > 0.5)], "f1": [reward]}
        return observation, reward, done, False, info


if FIXED_TURNS_ID.split(":")[1] not in gym.registry:
    gym.register(FIXED_TURNS_ID.split(":")[1], entry_point=FixedTurnsEnv)


def set_process_environment(rank: int, world: int, port: int) -> None:
    """The torchrun variables of process ``rank`` of ``world`` on 127.0.0.1:``port``."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker(rank: int, world: int, port: int, config: Any, batch_path: str, out_path: str) -> None:
    import torch
    import torch.distributed as dist

    set_process_environment(rank, world, port)
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


def sharding_report(trainer: Any) -> dict[str, Any]:
    """Per model (policy, critic trunk, reference): whether every decoder layer is an FSDP2
    module, and this rank's local parameter bytes against the model's total bytes."""
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    from agents.ppo.setup import decoder_layers

    models = {"policy": trainer.core.policy}
    if trainer.core.critic_trunk is not None:
        models["critic"] = trainer.core.critic_trunk
    if trainer.reference is not None:
        models["reference"] = trainer.reference.policy
    report: dict[str, Any] = {}
    for name, model in models.items():
        layers = decoder_layers(model)
        local = total = 0
        for param in model.parameters():
            size = param.element_size()
            total += param.numel() * size
            local += (param.to_local() if isinstance(param, DTensor) else param).numel() * size
        report[name] = {
            "layers": len(layers),
            "fsdp_layers": sum(isinstance(layer, FSDPModule) for layer in layers),
            "local_bytes": local,
            "total_bytes": total,
        }
    return report


def _resident(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> int:
    """Reset the peak resident size (VmHWM) to the current one; returns the current one."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")
    return _resident("VmRSS")


def _memory_job(config: Any) -> dict[str, Any]:
    from agents.ppo.trainer import PPOTrainer

    start = _reset_peak()
    trainer = PPOTrainer(config)
    built = _resident("VmHWM") - start
    report = sharding_report(trainer)
    start = _reset_peak()
    trainer.rollout(0)
    rollout = _resident("VmHWM") - start
    trainer.close()
    return {"build_peak": built, "rollout_peak": rollout, "sharding": report}


def _step_job(config: Any, eval_seeds: list[int], rank: int) -> dict[str, Any]:
    from agents.ppo.trainer import PPOTrainer

    trainer = PPOTrainer(config)
    report = sharding_report(trainer) if config.distributed == "fsdp2" else {}
    start = time.perf_counter()
    episodes, groups, _ = trainer.rollout(0)
    evaluation = trainer.evaluate(eval_seeds)
    records = [e.record for e in episodes]
    metrics = trainer.update(records, groups, step=0)
    seconds = time.perf_counter() - start
    state = trainer._model_state()  # a collective under FSDP2
    trainer.close()
    result = {
        "turns": [e.turns for e in episodes],
        "records": records,
        "groups": groups,
        "evaluation": evaluation,
        "metrics": metrics,
        "seconds": seconds,
        "sharding": report,
    }
    if rank == 0:
        result["state"] = state
    return result


def _checks_worker(rank: int, world: int, port: int, jobs: list[tuple], out_dir: str) -> None:
    import torch
    import torch.distributed as dist

    set_process_environment(rank, world, port)
    torch.set_num_threads(1)  # also one malloc arena: less noise in the resident size
    # A hang fails within a minute instead of gloo's default 30.
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    import transformers.models.qwen2.modeling_qwen2  # noqa: F401 - imported before any measurement

    results = []
    for job in jobs:  # "memory" jobs first: a fresh process measures its peaks best
        if job[0] == "memory":
            results.append(_memory_job(job[1]))
        else:
            results.append(_step_job(job[1], job[2], rank))
        dist.barrier()
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def run_checks(jobs: list[tuple], world: int = 2) -> list[list[dict[str, Any]]]:
    """Run ``jobs`` in one set of ``world`` gloo processes; per job, each rank's result.

    - ``("step", config, eval_seeds)``: one step (rollout, evaluation of ``eval_seeds``, update):
      turns, records, evaluation, metrics, seconds, sharding report, rank 0's parameters after;
    - ``("memory", config)``: peak resident bytes above the start of building the trainer and of
      one rollout, and the sharding report (Linux: reads ``/proc/self/status``).
    """
    import torch
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_checks_worker, args=(world, free_port(), jobs, folder), nprocs=world, join=True)
        ranks = [torch.load(os.path.join(folder, f"rank{r}.pt"), weights_only=False) for r in range(world)]
    return [[ranks[r][j] for r in range(world)] for j in range(len(jobs))]


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
