"""Sharded training checkpoints (``torch.distributed.checkpoint``) and the streamed HF policy folder.

A checkpoint is one folder per step under ``<out_dir>/checkpoints``::

    checkpoints/
      latest                    the name of the newest complete step folder (replaced atomically)
      step_00000020/
        .metadata, __0_0.distcp, __1_0.distcp, ...   model + optimizer, DCP: each rank writes
                                                      and later reads only its own shards
        rng_rank0.pt, rng_rank1.pt, ...               every rank's RNG states
        trainer_state.pt                              step (the data position), scheduler, config

Model and optimizer state come from ``get_state_dict`` with the default (sharded) options: under
FSDP2 they are DTensors and each rank holds only its shards, so no rank ever gathers the full
model or optimizer to save or resume; one process uses the same calls and the same format.
``latest`` is written last (after a barrier), so a run killed while saving resumes from the
previous complete step. The old single-file ``checkpoint.pt`` still loads (:func:`load`).

:func:`save_hf_policy` writes the policy for ``from_pretrained``: rank 0 writes safetensors
shards from parameters gathered one at a time, so no rank holds the whole model at once.

>>> import pytest; torch = pytest.importorskip("torch")
>>> import tempfile
>>> model = torch.nn.Linear(2, 2); optimizer = torch.optim.AdamW(model.parameters())
>>> scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda n: 1.0)
>>> folder = tempfile.mkdtemp()
>>> os.path.basename(save(folder, model, optimizer, scheduler, step=3))
'step_00000003'
>>> load(folder, torch.nn.Linear(2, 2), None, None)["step"]
3
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "full_model_state",
    "latest_checkpoint",
    "load",
    "rng_state",
    "save",
    "save_hf_policy",
    "set_rng_state",
]

_STEP = re.compile(r"^step_(\d+)$")


def rng_state() -> dict[str, Any]:
    """This process's torch, numpy, python (and CUDA) RNG states."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _single() -> bool:
    """No process group: DCP saves and loads in this process alone (same files)."""
    return not (dist.is_available() and dist.is_initialized())


@contextlib.contextmanager
def _quiet_single_process() -> Iterator[None]:
    """DCP warns on every single-process save/load that it assumes one process: that is intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="torch.distributed is disabled, unavailable or uninitialized"
        )
        yield


def _barrier() -> None:
    if _distributed()[1] > 1:
        dist.barrier()


def full_model_state(model: torch.nn.Module, sharded: bool) -> dict[str, torch.Tensor]:
    """The whole model's state dict on CPU (under FSDP2 gathered: a collective on every rank).

    For tests and small models only: it is one full copy of the model.
    """
    if sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def latest_checkpoint(root: str) -> str | None:
    """The step folder named by ``<root>/latest``, or None when there is no complete checkpoint."""
    marker = os.path.join(root, "latest")
    if not os.path.exists(marker):
        return None
    with open(marker, encoding="utf-8") as handle:
        name = handle.read().strip()
    folder = os.path.join(root, name)
    return folder if os.path.isdir(folder) else None


def save(
    root: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    *,
    step: int,
    meta: dict[str, Any] | None = None,
    keep: int = 2,
) -> str:
    """Write step ``step`` into ``<root>/step_<step>`` and point ``latest`` at it (a collective).

    Every rank calls it; each writes its own shards and RNG states, rank 0 the trainer state and
    the marker. Only the newest ``keep`` step folders are kept. Returns the step folder.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    rank, _ = _distributed()
    name = f"step_{step:08d}"
    folder = os.path.join(root, name)
    if rank == 0:
        # A folder of the same step left by a run killed while saving: start it afresh.
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
    _barrier()
    model_state, optimizer_state = get_state_dict(model, optimizer)
    with _quiet_single_process():
        dcp.save(
            {"model": model_state, "optimizer": optimizer_state}, checkpoint_id=folder, no_dist=_single()
        )
    torch.save(rng_state(), os.path.join(folder, f"rng_rank{rank}.pt"))
    if rank == 0:
        state = {"step": int(step), "scheduler": scheduler.state_dict(), **(meta or {})}
        torch.save(state, os.path.join(folder, "trainer_state.pt"))
    _barrier()  # every rank's files are complete before the marker names the folder
    if rank == 0:
        marker = os.path.join(root, "latest")
        with open(marker + ".tmp", "w", encoding="utf-8") as handle:
            handle.write(name)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(marker + ".tmp", marker)
        steps = sorted((int(m.group(1)), n) for n in os.listdir(root) if (m := _STEP.match(n)))
        for _, old in steps[: max(len(steps) - keep, 0)]:
            if old != name:
                shutil.rmtree(os.path.join(root, old), ignore_errors=True)
    _barrier()
    return folder


def load(
    path: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
    *,
    sharded: bool = False,
) -> dict[str, Any] | None:
    """Restore model, optimizer, scheduler and this rank's RNG states; returns the trainer state
    (``step``, ...) or None when ``path`` holds no checkpoint.

    ``path`` is a checkpoints root (its ``latest`` step is loaded), a step folder, or an old
    single-file ``checkpoint.pt`` (full state dicts; ``sharded``: the model is FSDP2-wrapped).
    Every rank calls it with the same ``path``: loading is a collective.
    """
    if os.path.isfile(path):
        return _load_full(path, model, optimizer, scheduler, sharded)
    folder = path if os.path.exists(os.path.join(path, ".metadata")) else latest_checkpoint(path)
    if folder is None:
        return None
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_state_dict,
        set_model_state_dict,
        set_state_dict,
    )

    rank, _ = _distributed()
    if optimizer is None:
        model_state = get_model_state_dict(model)
        with _quiet_single_process():
            dcp.load({"model": model_state}, checkpoint_id=folder, no_dist=_single())
        set_model_state_dict(model, model_state)
    else:
        # The current (sharded) state dicts are the templates: DCP reads into them only the
        # pieces this rank owns, whatever the world size that wrote the checkpoint.
        model_state, optimizer_state = get_state_dict(model, optimizer)
        with _quiet_single_process():
            dcp.load(
                {"model": model_state, "optimizer": optimizer_state},
                checkpoint_id=folder,
                no_dist=_single(),
            )
        set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state)
    state = torch.load(os.path.join(folder, "trainer_state.pt"), map_location="cpu", weights_only=False)
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    rng_path = os.path.join(folder, f"rng_rank{rank}.pt")
    if not os.path.exists(rng_path):  # resumed on more ranks than saved: rank 0's stream
        rng_path = os.path.join(folder, "rng_rank0.pt")
    set_rng_state(torch.load(rng_path, weights_only=False))
    return state


def _load_full(
    path: str, model: torch.nn.Module, optimizer: Any, scheduler: Any, sharded: bool
) -> dict[str, Any]:
    """The old single-file format: full model and optimizer state dicts, all ranks' RNG states."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if sharded:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True)
        set_model_state_dict(model, payload["model"], options=options)
        if optimizer is not None:
            set_optimizer_state_dict(model, optimizer, payload["optimizer"], options=options)
    else:
        model.load_state_dict(payload["model"])
        if optimizer is not None:
            optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(payload["scheduler"])
    rank, _ = _distributed()
    set_rng_state(payload["rng"][rank if len(payload["rng"]) > rank else 0])
    return payload


def _unique_tensors(module: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """State-dict entries, each tensor once (tied weights keep their first name, as HF saves)."""
    seen: set[int] = set()
    for name, value in module.state_dict(keep_vars=True).items():
        if id(value) in seen:
            continue
        seen.add(id(value))
        yield name, value


def save_hf_policy(
    policy: Any, folder: str, *, tokenizer: Any = None, max_shard_bytes: int = 5 * 2**30
) -> str:
    """Write ``policy`` (a Hugging Face model, possibly FSDP2-sharded) as a ``from_pretrained``
    folder: config, generation config, tokenizer and safetensors shards (with the HF index when
    there is more than one). A collective when sharded: every rank calls it.

    Each parameter is gathered alone (``DTensor.full_tensor``) and only rank 0 keeps it, until
    its shard file is written: rank 0 holds at most one shard (``max_shard_bytes``) of the model.
    """
    from safetensors.torch import save_file
    from torch.distributed.tensor import DTensor

    rank, _ = _distributed()
    entries = list(_unique_tensors(policy))
    # Plan the shards from the (global) shapes first, so files can be named "-of-N" as HF does.
    shards: list[list[str]] = [[]]
    size = 0
    total = 0
    for name, value in entries:
        nbytes = value.numel() * value.element_size()
        total += nbytes
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    files = (
        ["model.safetensors"]
        if len(shards) == 1
        else [f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors" for k in range(len(shards))]
    )
    shard_of = {name: k for k, names in enumerate(shards) for name in names}
    if rank == 0:
        os.makedirs(folder, exist_ok=True)
    pending: dict[str, torch.Tensor] = {}
    for name, value in entries:
        tensor = value.detach()
        if isinstance(tensor, DTensor):
            tensor = tensor.full_tensor()  # every rank takes part; only rank 0 keeps it
        if rank == 0:
            pending[name] = tensor.cpu().contiguous()
            k = shard_of[name]
            if name == shards[k][-1]:
                save_file(pending, os.path.join(folder, files[k]), metadata={"format": "pt"})
                pending = {}
        del tensor
    if rank == 0:
        if len(shards) > 1:
            index = {
                "metadata": {"total_size": total},
                "weight_map": {name: files[shard_of[name]] for name, _ in entries},
            }
            with open(os.path.join(folder, "model.safetensors.index.json"), "w", encoding="utf-8") as handle:
                json.dump(index, handle, indent=1)
        policy.config.save_pretrained(folder)
        if getattr(policy, "generation_config", None) is not None:
            policy.generation_config.save_pretrained(folder)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
    _barrier()
    return folder
