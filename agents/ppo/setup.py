"""Trainer setup: build the policy, critic and reference, shard them, and make the optimizer.

Two layouts, chosen by ``PPOConfig.distributed`` under ``torchrun``:

- one process, or ``"ddp"``: each model loaded whole with ``from_pretrained`` (fp32 master
  weights; the frozen reference in the config's dtype), DDP around the policy + critic module;
- ``"fsdp2"`` (the 7B layout): nothing is ever materialised whole. Every model is built with its
  parameters on the meta device, ``fully_shard`` is applied per decoder layer (policy, separate
  critic trunk and reference) and then to the root, and only then does each rank allocate its own
  shards and fill them from the checkpoint, one tensor at a time (:class:`SafetensorsReader`
  reads a tensor's bytes, never a whole file). With ``dtype="bfloat16"`` a ``MixedPrecisionPolicy``
  gathers bf16 parameters for compute and reduces gradients in fp32 into fp32 master shards; the
  reference keeps bf16 shards (optionally in CPU memory, ``reference_offload``).

Rollouts never generate through the sharded policy (every decoding step would all-gather every
layer, and ranks whose episodes differ in length would wait on each other forever):
:func:`generation_copy` gathers a rank-local copy in the config's dtype once per rollout,
parameter by parameter, and the ranks then generate independently.

>>> import pytest; torch = pytest.importorskip("torch")
>>> from agents.tiny_model import default_tiny_model
>>> import os
>>> reader = SafetensorsReader(default_tiny_model())
>>> tensor = reader.read("model.embed_tokens.weight")
>>> tensor.dtype, tensor.shape[1]
(torch.float32, 64)
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from agents.ppo.config import PPOConfig
from agents.ppo.model import ActorCritic

__all__ = [
    "SafetensorsReader",
    "TrainerModels",
    "build_models",
    "build_optimizer",
    "decoder_layers",
    "gathered_parameters",
    "generation_copy",
    "meta_parameters",
    "reshard_all",
]

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


class SafetensorsReader:
    """Reads single tensors of a Hugging Face checkpoint folder (``model.safetensors`` or a sharded
    ``model.safetensors.index.json``) with plain file reads: no file is mapped or loaded whole, so
    reading a 7B checkpoint tensor by tensor never holds more than one tensor."""

    def __init__(self, folder: str):
        index = os.path.join(folder, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index, encoding="utf-8") as handle:
                files = sorted(set(json.load(handle)["weight_map"].values()))
        elif os.path.exists(os.path.join(folder, "model.safetensors")):
            files = ["model.safetensors"]
        else:
            raise ValueError(
                f"model folder {folder!r} has no model.safetensors (other formats are not supported)"
            )
        self.entries: dict[str, tuple[str, torch.dtype, list[int], int, int]] = {}
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                size = struct.unpack("<Q", handle.read(8))[0]
                header = json.loads(handle.read(size))
            for key, entry in header.items():
                if key == "__metadata__":
                    continue
                start, end = entry["data_offsets"]
                self.entries[key] = (
                    path,
                    _DTYPES[entry["dtype"]],
                    entry["shape"],
                    8 + size + start,
                    end - start,
                )

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def read(self, name: str) -> torch.Tensor:
        """The tensor ``name`` in its stored dtype, on the CPU."""
        path, dtype, shape, offset, length = self.entries[name]
        if length == 0:
            return torch.empty(shape, dtype=dtype)
        buffer = bytearray(length)
        with open(path, "rb") as handle:
            handle.seek(offset)
            handle.readinto(buffer)
        return torch.frombuffer(buffer, dtype=dtype).reshape(shape)


def resolve_model_folder(path: str) -> str:
    """A local folder for ``path`` (a folder, or a hub name resolved through the local HF cache)."""
    if os.path.isdir(path):
        return path
    from huggingface_hub import snapshot_download

    return snapshot_download(path, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"])


@contextlib.contextmanager
def meta_parameters() -> Iterator[None]:
    """Modules built inside get their parameters on the meta device and keep real buffers.

    (``with torch.device("meta")`` would also put non-persistent buffers such as rotary
    frequencies on meta, and nothing in a checkpoint could restore them.) Each parameter exists
    for a moment on the CPU before it is moved, so the peak is one tensor, not one model.
    """
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def empty_causal_lm(folder: str, dtype: torch.dtype, attention: dict[str, Any]) -> nn.Module:
    """The checkpoint's architecture with meta parameters (no weights read)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    model_config = AutoConfig.from_pretrained(folder)
    with meta_parameters():
        model = AutoModelForCausalLM.from_config(model_config, dtype=dtype, **attention)
    if os.path.exists(os.path.join(folder, "generation_config.json")):
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(folder)
    return model


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The decoder layers of a causal LM or of its bare decoder (what FSDP2 shards one by one)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else base
    return list(getattr(decoder, "layers", []))


def _local(param: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    return param.to_local() if isinstance(param, DTensor) else param


def _fill_from_checkpoint(module: nn.Module, reader: SafetensorsReader, prefix: str = "") -> None:
    """Copy each parameter's local shard from the checkpoint tensor ``prefix + name``."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    for name, param in module.named_parameters():
        key = prefix + name
        if key not in reader:
            raise ValueError(f"checkpoint has no tensor {key!r} for parameter {name!r}")
        full = reader.read(key).to(param.dtype)
        if isinstance(param, DTensor):
            # src_data_rank=None: every rank read the same file, so each just keeps its chunk.
            full = distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None).to_local()
        with torch.no_grad():
            _local(param).copy_(full)


def _shard(
    model: nn.Module,
    layers: list[nn.Module],
    *,
    param_dtype: torch.dtype | None,
    offload: bool = False,
    pin: bool = False,
) -> None:
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    options: dict[str, Any] = {
        "mp_policy": MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32),
        "offload_policy": CPUOffloadPolicy(pin_memory=pin) if offload else OffloadPolicy(),
    }
    for layer in layers:
        fully_shard(layer, **options)
    fully_shard(model, **options)


def _materialise(model: nn.Module, device: torch.device) -> None:
    """Allocate the (sharded) meta parameters on ``device``; buffers keep their values."""
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    model.to_empty(device=device)
    with torch.no_grad():
        for name, value in buffers.items():
            model.get_buffer(name).copy_(value)


def reshard_all(module: nn.Module) -> None:
    """Reshard every FSDP2 module under ``module`` (a forward leaves the root's parameters gathered)."""
    from torch.distributed.fsdp import FSDPModule

    for sub in module.modules():
        if isinstance(sub, FSDPModule):
            sub.reshard()


def gathered_parameters(
    module: nn.Module, dtype: torch.dtype | None = None
) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, full tensor)`` of each parameter in turn, gathered from FSDP2 shards (cast to
    ``dtype`` before the all-gather). A collective: every rank iterates to the end, together.
    Only one gathered parameter is alive at a time unless the caller keeps them."""
    from torch.distributed.tensor import DTensor

    reshard_all(module)
    for name, param in module.named_parameters():
        value = param.detach()
        if dtype is not None:
            value = value.to(dtype)
        yield name, value.full_tensor() if isinstance(value, DTensor) else value


def generation_copy(policy: nn.Module, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """A rank-local, unsharded copy of a (sharded) causal LM in ``dtype`` for generation.

    Built with meta parameters and filled with the gathered parameters one at a time (never a
    full fp32 copy when ``dtype`` is bf16); tied parameters stay tied. Costs one copy of the
    model in ``dtype`` while it lives (7B in bf16: 15.2 GB); free it after the rollout.
    """
    from transformers import AutoModelForCausalLM

    with meta_parameters():
        copy = AutoModelForCausalLM.from_config(policy.config, dtype=dtype)
    for sub in copy.modules():  # buffers (rotary frequencies) are real: move them
        for key, buffer in list(sub._buffers.items()):
            if buffer is not None:
                sub._buffers[key] = buffer.to(device)
    by_id: dict[int, nn.Parameter] = {}
    for name, value in gathered_parameters(policy, dtype):
        old = copy.get_parameter(name)
        by_id[id(old)] = nn.Parameter(value.to(device=device, dtype=dtype), requires_grad=False)
    for sub in copy.modules():
        for key, param in list(sub._parameters.items()):
            if param is not None and id(param) in by_id:
                sub._parameters[key] = by_id[id(param)]
    missing = [name for name, param in copy.named_parameters() if param.device.type == "meta"]
    if missing:
        raise ValueError(f"generation copy: no gathered value for {missing[:3]}")
    copy.generation_config = policy.generation_config
    return copy.eval()


@dataclass
class TrainerModels:
    """What :func:`build_models` returns."""

    core: ActorCritic
    """Policy + critic (sharded under FSDP2)."""
    reference: ActorCritic | None
    """Frozen reference policy (None without a KL term, or with LoRA: the adapter-less policy)."""
    module: nn.Module
    """What the training forward calls: ``core``, or DDP around it."""
    lora: bool


def _model_dtype(config: PPOConfig) -> torch.dtype:
    return torch.bfloat16 if config.dtype == "bfloat16" else torch.float32


def build_models(config: PPOConfig, path: str, device: torch.device, world: int) -> TrainerModels:
    """Policy (+ LoRA), critic and reference for ``config``, in the layout of ``config.distributed``."""
    attention = {"attn_implementation": "flex_attention"} if config.attention == "flex" else {}
    lora = config.lora_r > 0
    needs_reference = config.kl_mode != "none" and config.kl_coef > 0 and not lora
    separate = config.uses_critic and config.critic == "separate"
    torch.manual_seed(config.seed)  # identical value-head init on every rank
    if world > 1 and config.distributed == "fsdp2":
        if lora:
            raise ValueError(f"lora_r={config.lora_r} is not supported with distributed='fsdp2'; use 'ddp'")
        return _build_sharded(config, path, device, attention, needs_reference, separate)
    from transformers import AutoModelForCausalLM

    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **attention)
    if lora:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as error:  # pragma: no cover - depends on the install
            raise ImportError("LoRA needs peft: pip install mem1-envs[lora]") from error
        policy = get_peft_model(
            policy, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, target_modules="all-linear")
        )
    critic_model = None
    if separate:
        critic_model = AutoModelForCausalLM.from_pretrained(config.critic_model or path, dtype=torch.float32)
    _checkpointing(config, policy, critic_model)
    core = _actor_critic(config, policy, critic_model).to(device)
    reference = None
    if needs_reference:
        ref_model = AutoModelForCausalLM.from_pretrained(path, dtype=_model_dtype(config), **attention)
        reference = ActorCritic(
            ref_model,
            critic="none",
            temperature=config.temperature,
            logprob_chunk=config.logprob_chunk_tokens,
        ).to(device)
        reference.eval().requires_grad_(False)
    module: nn.Module = core
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        module = DistributedDataParallel(core, device_ids=[device] if device.type == "cuda" else None)
    return TrainerModels(core, reference, module, lora)


def _checkpointing(config: PPOConfig, *models: Any) -> None:
    """Activation checkpointing of every trained model (policy and separate critic)."""
    if not config.gradient_checkpointing:
        return
    for model in models:
        if model is None:
            continue
        # transformers 5 renamed it; older versions only have gradient_checkpointing_enable.
        enable = (
            getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        )
        enable()
        model.config.use_cache = False


def _actor_critic(config: PPOConfig, policy: Any, critic_model: Any) -> ActorCritic:
    return ActorCritic(
        policy,
        critic=config.critic if config.uses_critic else "none",
        critic_model=critic_model,
        temperature=config.temperature,
        logprob_chunk=config.logprob_chunk_tokens,
    )


def _build_sharded(
    config: PPOConfig,
    path: str,
    device: torch.device,
    attention: dict[str, Any],
    needs_reference: bool,
    separate: bool,
) -> TrainerModels:
    """The FSDP2 layout: meta build, shard per decoder layer, allocate shards, fill from the files."""
    folder = resolve_model_folder(path)
    mixed = torch.bfloat16 if config.dtype == "bfloat16" else None
    policy = empty_causal_lm(folder, torch.float32, attention)  # fp32 master shards
    critic_model, critic_folder = None, None
    if separate:
        critic_folder = resolve_model_folder(config.critic_model or path)
        critic_model = empty_causal_lm(critic_folder, torch.float32, {})
    _checkpointing(config, policy, critic_model)
    core = _actor_critic(config, policy, critic_model)
    layers = decoder_layers(policy) + (
        decoder_layers(core.critic_trunk) if core.critic_trunk is not None else []
    )
    _shard(core, layers, param_dtype=mixed)
    _materialise(core, device)
    _fill_from_checkpoint(core.policy, SafetensorsReader(folder))
    if core.critic_trunk is not None and critic_folder is not None:
        _fill_from_checkpoint(core.critic_trunk, SafetensorsReader(critic_folder), prefix="model.")
    if core.value_head is not None:
        with torch.no_grad():  # zero-initialised, as ActorCritic does on a real device
            for param in core.value_head.parameters():
                _local(param).zero_()
    reference = None
    if needs_reference:
        ref_dtype = _model_dtype(config)
        ref_model = empty_causal_lm(folder, ref_dtype, attention)
        reference = ActorCritic(
            ref_model,
            critic="none",
            temperature=config.temperature,
            logprob_chunk=config.logprob_chunk_tokens,
        )
        offload = config.reference_offload
        _shard(
            reference,
            decoder_layers(ref_model),
            param_dtype=ref_dtype,
            offload=offload,
            pin=offload and device.type == "cuda",
        )
        # Offloaded shards live in CPU memory; FSDP2 copies each layer to the device to compute.
        _materialise(reference, torch.device("cpu") if offload else device)
        _fill_from_checkpoint(reference.policy, SafetensorsReader(folder))
        reference.eval().requires_grad_(False)
    return TrainerModels(core, reference, core, False)


def build_optimizer(config: PPOConfig, core: nn.Module) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW with the actor's and the critic's learning rates, and the warmup schedule."""
    critic_params = [p for n, p in core.named_parameters() if not n.startswith("policy.") and p.requires_grad]
    actor_params = [p for n, p in core.named_parameters() if n.startswith("policy.") and p.requires_grad]
    groups = [{"params": actor_params, "lr": config.actor_lr}]
    if critic_params:
        groups.append({"params": critic_params, "lr": config.critic_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    warmup = max(config.warmup_steps, 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda n: min(1.0, (n + 1) / warmup) if warmup else 1.0
    )
    return optimizer, scheduler
