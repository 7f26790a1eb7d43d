"""Run a function on N gloo processes (127.0.0.1, a free port) with a deadline instead of a hang."""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable
from typing import Any


def _entry(rank: int, world: int, port: int, seconds: float, fn: Callable[..., Any], args: tuple) -> None:
    import torch
    import torch.distributed as dist

    from agents.ppo.selfcheck import set_process_environment

    set_process_environment(rank, world, port)
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    # A collective that one rank never reaches fails after `seconds` instead of gloo's 30 minutes.
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=seconds))
    try:
        fn(rank, world, *args)
    finally:
        dist.destroy_process_group()


def run_gloo(fn: Callable[..., Any], *args: Any, world: int = 2, timeout: float = 240.0) -> None:
    """``fn(rank, world, *args)`` on ``world`` spawned processes; raises if one fails or the
    whole run takes longer than ``timeout`` seconds (the processes are then killed).

    ``fn`` must be importable by name (a module-level function) for the spawned processes.
    """
    import torch.multiprocessing as mp

    from agents.ppo.selfcheck import free_port

    context = mp.start_processes(
        _entry,
        args=(world, free_port(), min(timeout, 120.0), fn, args),
        nprocs=world,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + timeout
    while not context.join(timeout=2):
        if time.monotonic() > deadline:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
            raise TimeoutError(f"{world} gloo processes did not finish within {timeout} s")
