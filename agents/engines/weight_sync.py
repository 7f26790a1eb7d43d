"""Moving the trainer's weights into an inference engine, one decoder layer at a time.

:func:`layer_chunks` walks the policy's parameters in order and yields them grouped by decoder
layer (embeddings, each ``model.layers.<i>``, final norm/head), each tensor cast to bf16 *on its
shard first* and only then gathered (``DTensor.full_tensor()`` under FSDP2, a collective every
rank takes in the same order). At most one layer's bf16 weights exist gathered at a time; a full
fp32 copy never exists. :class:`EngineSync` is what the trainer calls around its update:

    release()               before the update: the engine frees its KV cache (and weights)
    after_optimizer_step()  after every optimizer step: the new weights go into the engine
    resume()                before the next rollout: the engine takes its KV cache back

>>> import pytest; torch = pytest.importorskip("torch")
>>> model = torch.nn.ModuleDict({"embed": torch.nn.Embedding(4, 2)})
>>> [[(name, t.dtype) for name, t in chunk] for chunk in layer_chunks(model)]
[[('embed.weight', torch.bfloat16)]]
"""

from __future__ import annotations

import copy
import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["EngineSync", "layer_chunks", "save_bf16_checkpoint"]

_LAYER = re.compile(r"^(.*?\.layers\.\d+)\.")


def _full_bf16(tensor: Any) -> Any:
    import torch

    local = tensor.detach().to(torch.bfloat16)  # cast the shard: the gather then moves bf16
    full = getattr(local, "full_tensor", None)
    return full() if full is not None else local


def layer_chunks(model: Any) -> Iterator[list[tuple[str, Any]]]:
    """``[(name, bf16 tensor), ...]`` per decoder layer (and one chunk per run of other tensors),
    names as in the Hugging Face checkpoint (what an engine's ``load_weights`` takes)."""
    chunk: list[tuple[str, Any]] = []
    key: str | None = None
    for name, param in model.named_parameters():
        if name.startswith(("base_model.", "_orig_mod.")) or ".lora_" in name:
            raise NotImplementedError(
                f"weight sync takes a plain Hugging Face model, got parameter {name!r} (LoRA/compiled "
                "policies are not supported with an engine rollout yet)"
            )
        match = _LAYER.match(name)
        layer = match.group(1) if match else ""
        if chunk and layer != key:
            yield chunk
            chunk = []
        key = layer
        chunk.append((name, _full_bf16(param)))
    if chunk:
        yield chunk


def save_bf16_checkpoint(
    chunks: Iterator[list[tuple[str, Any]]], folder: str, config: Any, write: bool
) -> int:
    """Write ``chunks`` as a sharded bf16 safetensors checkpoint (one shard per chunk) plus the
    model's ``config.json`` into ``folder``: what a server reloads. Every rank must iterate
    (the gathers are collectives); only ``write=True`` touches the disk. Returns the shard count."""
    from safetensors.torch import save_file

    if write:
        os.makedirs(folder, exist_ok=True)
        for old in os.listdir(folder):
            if old.startswith("model-") and old.endswith(".safetensors"):
                os.remove(os.path.join(folder, old))
    weight_map: dict[str, str] = {}
    shards = 0
    for chunk in chunks:
        shards += 1
        if not write:
            continue
        name = f"model-{shards:05d}.safetensors"
        save_file(
            {k: v.contiguous().cpu() for k, v in chunk}, os.path.join(folder, name), metadata={"format": "pt"}
        )
        weight_map.update({k: name for k, _ in chunk})
    if write:
        with open(os.path.join(folder, "model.safetensors.index.json"), "w", encoding="utf-8") as handle:
            json.dump({"metadata": {}, "weight_map": weight_map}, handle, indent=1)
        if config is not None:
            config = copy.deepcopy(config)  # the trainer's own config keeps its dtype
            config.dtype = "bfloat16"
            config.save_pretrained(folder)
    return shards


class EngineSync:
    """The trainer's side of an engine: memory release during the update, weights after every
    optimizer step. Backends without ``load_weights`` (Hugging Face generate on the training
    model itself) need none of it and every call is a no-op.

    Attributes:
        syncs: weight syncs done (one per optimizer step).
        seconds: wall time spent in them.
    """

    def __init__(self, backend: Any, model: Any):
        self.backend = backend
        self.model = model
        self.active = hasattr(backend, "load_weights") and getattr(backend, "syncs_weights", True)
        self.syncs = 0
        self.seconds = 0.0

    def release(self) -> None:
        if self.active:
            self.backend.sleep()

    def after_optimizer_step(self) -> None:
        self.push()

    def push(self) -> None:
        """Load the model's current weights into the engine (after a step, or a checkpoint load)."""
        if not self.active:
            return
        start = time.perf_counter()
        self.backend.load_weights(layer_chunks(self.model))
        self.seconds += time.perf_counter() - start
        self.syncs += 1

    def resume(self) -> None:
        if self.active:
            self.backend.wake_up()
