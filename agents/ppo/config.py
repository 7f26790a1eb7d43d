"""Configuration of the masked-PPO trainer: one frozen dataclass, two presets.

``tiny-cpu`` trains the default tiny model on the small world in minutes on a laptop CPU;
``qwen2.5-7b`` carries MEM1's hyperparameters (PPO with a critic, gamma = lambda = 1, clip 0.2,
entropy 0.001, grad clip 1.0, KL 0.001 as k1 in the reward, actor lr 1e-6, critic lr 1e-5,
128 episodes per step in mini-batches of 64, temperature 1, top-p 0.95, token-level loss).

>>> config = preset("tiny-cpu", total_steps=3)
>>> config.total_steps, config.advantage
(3, 'gae')
>>> preset("qwen2.5-7b").kl_mode, preset("qwen2.5-7b").actor_lr
('k1_reward', 1e-06)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["PRESETS", "PPOConfig", "preset"]


@dataclass(frozen=True)
class PPOConfig:
    """Every setting of a training run (``scripts/train_ppo.py --help`` lists them as flags)."""

    # -- model ---------------------------------------------------------------------------------
    model: str | None = None
    """Policy checkpoint directory or hub name (None or ``"tiny"``: the default tiny model, built offline)."""
    critic: str = "value_head"
    """``"value_head"`` (a linear head on the policy), ``"separate"`` (own model) or ``"none"`` (GRPO)."""
    critic_model: str | None = None
    """Separate critic's initial weights (None: the policy's checkpoint)."""
    dtype: str = "float32"
    """``"float32"`` or ``"bfloat16"`` (autocast for the training forward, fp32 master weights)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (policy and separate critic; saves memory on long packed sequences)."""
    logprob_chunk_tokens: int = 1024
    """Loss tokens per chunk of the LM head + log-softmax/entropy (fp32 ``[chunk, V]``, recomputed in backward)."""
    attention: str = "dense"
    """Packed-forward mask: ``"dense"`` (additive float ``[B, 1, S, S]``, any attention implementation)
    or ``"flex"`` (FlexAttention ``BlockMask`` from block ids, no ``S x S`` tensor; training needs CUDA)."""
    lora_r: int = 0
    """LoRA rank through peft (0: full fine-tuning); needs ``pip install mem1-envs[lora]``."""
    lora_alpha: int = 32
    """LoRA scaling numerator."""
    # -- environment ---------------------------------------------------------------------------
    env_id: str = "MEM1-MultiQA-v0"
    """Environment id."""
    env_kwargs: tuple[tuple[str, Any], ...] = (("world", "small"), ("num_objectives", 1), ("split", "train"))
    """Keyword arguments of ``gym.make`` as pairs (a tuple keeps the config hashable)."""
    num_envs: int = 16
    """Environments stepped together per rank (one batched generation per turn)."""
    # -- rollout -------------------------------------------------------------------------------
    episodes_per_step: int = 16
    """Global batch: episodes per optimizer step (all ranks together; MEM1: 128)."""
    group_size: int = 1
    """Rollouts per prompt (GRPO/GiGPO groups; 1 for PPO)."""
    max_new_tokens: int = 48
    """Per-turn generation limit (MEM1: 1000)."""
    temperature: float = 1.0
    """Sampling temperature (MEM1: 1)."""
    top_p: float = 1.0
    """Nucleus mass (MEM1: 0.95)."""
    max_packed_tokens: int | None = None
    """Token budget of one packed episode (D7 rule: drop earliest turns, never the answer)."""
    old_logprobs: str = "auto"
    """The "old" log-probs of the ratio: ``"rollout"`` (the sampler's, as produced), ``"recompute"``
    (the scoring forward's, same precision as training) or ``"auto"``: ``"recompute"`` when the
    training precision differs from the sampling precision (``dtype="bfloat16"``: training under
    bf16 autocast, sampling with the fp32 weights), else ``"rollout"``. With mismatched precisions
    the sampler's values would make the first ratio differ from 1, and k1 KL non-zero, from
    rounding alone. See :attr:`old_logprobs_source`."""
    # -- inference engine (issue 11: agents/engines) ---------------------------------------------
    rollout: str = "hf"
    """Who generates: ``"hf"`` (``generate`` on the training model), ``"vllm"`` (a colocated vLLM
    engine, ``pip install mem1-envs[gpu]``) or ``"openai"`` (a completions server at ``engine_url``)."""
    engine_url: str | None = None
    """``rollout="openai"``: the server's base URL, e.g. ``http://127.0.0.1:8000``."""
    engine_model: str | None = None
    """``rollout="openai"``: the served model name (None: the first of ``/v1/models``)."""
    engine_logprobs: str = "auto"
    """The engine's log-prob kind: ``"auto"`` (vLLM: the mode equal to ``log_softmax(logits / T)``;
    a server: its default ``raw_logprobs``), ``"raw_logprobs"`` or ``"processed_logprobs"``."""
    engine_gpu_memory: float = 0.4
    """vLLM ``gpu_memory_utilization`` (weights + KV cache, released while the trainer updates)."""
    engine_max_model_len: int | None = None
    """vLLM ``max_model_len`` (None: the model's)."""
    engine_enforce_eager: bool = False
    """vLLM without CUDA graphs (faster start, slower decoding)."""
    engine_sleep_level: int = 2
    """vLLM sleep during the update: 2 (drop weights, they are reloaded), 1 (keep them on CPU), 0 (never)."""
    engine_weight_sync: str = "none"
    """``rollout="openai"``: ``"sglang"`` (/update_weights_from_disk), ``"vllm_reload"`` (dev-mode
    /collective_rpc reload_weights of ``engine_sync_dir``) or ``"none"``."""
    engine_sync_dir: str | None = None
    """``rollout="openai"``: folder the bf16 checkpoint is written to for the server to reload."""
    engine_timeout: float = 600.0
    """``rollout="openai"``: seconds per request."""
    engine_retries: int = 3
    """``rollout="openai"``: retries of a refused, timed-out or 5xx request."""
    tis_cap: float | None = 2.0
    """Truncated importance sampling for engine rollouts with ``old_logprobs="recompute"``: each
    token's PPO term times ``min(exp(trainer - engine log-prob), tis_cap)`` (None: off)."""
    # -- algorithm -----------------------------------------------------------------------------
    advantage: str = "gae"
    """``"gae"`` (token-level), ``"turn"`` (turn-level GAE), ``"grpo"`` or ``"gigpo"``."""
    gamma: float = 1.0
    """Discount (MEM1: 1)."""
    lam: float = 1.0
    """GAE lambda (MEM1: 1)."""
    whiten_advantages: bool = True
    """Whiten advantages over the global batch (PPO modes)."""
    gigpo_step_weight: float = 1.0
    """Weight of the step-group advantage in ``"gigpo"``."""
    clip_ratio: float = 0.2
    """Surrogate clip (MEM1: 0.2)."""
    log_ratio_clamp: float | None = 20.0
    """``log(pi / pi_old)`` is clamped to ``[-c, c]`` before ``exp`` (None: unclamped): one outlier
    token cannot make the loss infinite and stop the run."""
    dual_clip: float | None = None
    """Dual-clip PPO constant ``c > 1`` (None: off; 3 is the usual value): the loss of a token with
    a negative advantage is capped at ``-c A``."""
    value_clip: float | None = 0.5
    """Value clip range (None: unclipped)."""
    value_coef: float = 0.5
    """Value-loss weight when the critic shares the optimizer step."""
    entropy_coef: float = 0.001
    """Entropy bonus (MEM1: 0.001)."""
    kl_coef: float = 0.001
    """KL-to-reference weight (MEM1: 0.001)."""
    kl_mode: str = "k1_reward"
    """``"k1_reward"`` (MEM1: ``-beta * k1`` per token in the reward), ``"k3_loss"`` or ``"none"``."""
    ppo_epochs: int = 1
    """Passes over each batch."""
    mini_batch_episodes: int = 16
    """Episodes per optimizer step inside a batch (global; MEM1: 64)."""
    micro_batch_episodes: int = 8
    """Episodes per forward/backward per rank (gradient accumulation in between), one per row;
    used when ``max_tokens_per_microbatch`` is None."""
    max_tokens_per_microbatch: int | None = None
    """Token budget of one forward/backward per rank (None: ``micro_batch_episodes`` instead).
    Several packed episodes share a row (``concat_packed``: blocks of different episodes never
    see each other), filled first-fit by decreasing length; no micro-batch holds more real tokens
    than this (``attention="flex"`` pads the row to a multiple of 128 with masked tokens). An
    episode longer than the budget is an error: bound episodes with ``max_packed_tokens`` <= this.
    Ranks may need different numbers of micro-batches; they all run the largest number (padding
    with zero-loss micro-batches), as FSDP's collectives require."""
    # -- optimisation --------------------------------------------------------------------------
    actor_lr: float = 1e-4
    """Policy learning rate (MEM1: 1e-6)."""
    critic_lr: float = 1e-3
    """Critic learning rate (MEM1: 1e-5)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 0
    """Linear learning-rate warmup, in optimizer steps."""
    grad_clip: float = 1.0
    """Global gradient-norm clip (MEM1: 1.0)."""
    # -- run -----------------------------------------------------------------------------------
    total_steps: int = 20
    """Training steps (one rollout batch each)."""
    seed: int = 0
    """Seed of everything (episode seeds are ``seed * 10**6 + step * episodes_per_step + i``)."""
    out_dir: str = "runs/ppo"
    """Where metrics, checkpoints and the final policy go."""
    save_every: int = 10
    """Checkpoint every this many steps (and at the end)."""
    keep_checkpoints: int = 2
    """Sharded checkpoints kept in ``<out_dir>/checkpoints`` (older step folders are deleted)."""
    eval_every: int = 0
    """Evaluate on held-out seeds every this many steps (0: never)."""
    eval_episodes: int = 32
    """Held-out episodes per evaluation (``split="test"``, greedy)."""
    distributed: str = "ddp"
    """With ``torchrun``: ``"ddp"`` or ``"fsdp2"`` (meta-device build, ``fully_shard`` per decoder layer
    of policy, critic and reference, bf16 ``MixedPrecisionPolicy`` when ``dtype="bfloat16"``)."""
    reference_offload: bool = False
    """FSDP2: keep the frozen reference's shards in CPU memory (``CPUOffloadPolicy``)."""
    device: str = "auto"
    """``"auto"`` (cuda when available), ``"cpu"`` or ``"cuda"``."""
    progress: bool = True
    """Show a tqdm progress bar on rank 0."""

    def __post_init__(self) -> None:
        choices = {
            "critic": ("value_head", "separate", "none"),
            "dtype": ("float32", "bfloat16"),
            "attention": ("dense", "flex"),
            "old_logprobs": ("auto", "rollout", "recompute"),
            "advantage": ("gae", "turn", "grpo", "gigpo"),
            "kl_mode": ("k1_reward", "k3_loss", "none"),
            "distributed": ("ddp", "fsdp2"),
            "device": ("auto", "cpu", "cuda"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.rollout not in ("hf", "vllm", "openai"):
            raise ValueError(f"rollout must be one of ('hf', 'vllm', 'openai'), got {self.rollout!r}")
        if self.rollout == "openai" and not self.engine_url:
            raise ValueError("rollout='openai' needs engine_url (the completions server), got None")
        if self.rollout != "hf" and self.lora_r > 0:
            raise ValueError(
                f"rollout={self.rollout!r} with lora_r={self.lora_r} is not supported (weight sync of adapters)"
            )
        if self.engine_logprobs not in ("auto", "raw_logprobs", "processed_logprobs"):
            raise ValueError(
                f"engine_logprobs must be auto, raw_logprobs or processed_logprobs, got {self.engine_logprobs!r}"
            )
        if self.engine_weight_sync not in ("none", "sglang", "vllm_reload"):
            raise ValueError(
                f"engine_weight_sync must be none, sglang or vllm_reload, got {self.engine_weight_sync!r}"
            )
        if self.engine_sleep_level not in (0, 1, 2):
            raise ValueError(f"engine_sleep_level must be 0, 1 or 2, got {self.engine_sleep_level}")
        if not 0 < self.engine_gpu_memory <= 1:
            raise ValueError(f"engine_gpu_memory must be in (0, 1], got {self.engine_gpu_memory}")
        if self.tis_cap is not None and self.tis_cap <= 0:
            raise ValueError(f"tis_cap must be > 0 or None, got {self.tis_cap}")
        positive = ("num_envs", "episodes_per_step", "group_size", "max_new_tokens", "ppo_epochs")
        positive += ("mini_batch_episodes", "micro_batch_episodes", "total_steps", "save_every")
        positive += ("keep_checkpoints", "logprob_chunk_tokens")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.episodes_per_step % self.group_size:
            raise ValueError(
                f"episodes_per_step ({self.episodes_per_step}) must be a multiple of group_size ({self.group_size})"
            )
        if self.episodes_per_step % self.mini_batch_episodes:
            raise ValueError(
                f"episodes_per_step ({self.episodes_per_step}) must be a multiple of "
                f"mini_batch_episodes ({self.mini_batch_episodes})"
            )
        if self.advantage in ("grpo", "gigpo") and self.group_size < 2:
            raise ValueError(f"advantage={self.advantage!r} needs group_size >= 2, got {self.group_size}")
        if self.advantage in ("gae", "turn") and self.critic == "none":
            raise ValueError(f"advantage={self.advantage!r} needs a critic, got critic='none'")
        if self.advantage in ("grpo", "gigpo") and self.kl_mode == "k1_reward" and self.kl_coef > 0:
            # Per-token KL summed into the episode return before group normalisation rewards
            # short answers (fewer tokens, less penalty) and mixes KL into the group statistics.
            raise ValueError(
                f"advantage={self.advantage!r} with kl_mode='k1_reward' puts per-token KL into the "
                "episode return before group normalisation (it favours short answers); use "
                "kl_mode='k3_loss' (KL in the loss) or kl_mode='none'"
            )
        if self.max_tokens_per_microbatch is not None:
            if self.max_tokens_per_microbatch < 1:
                raise ValueError(
                    f"max_tokens_per_microbatch must be >= 1 or None, got {self.max_tokens_per_microbatch}"
                )
            if self.max_packed_tokens is not None and self.max_packed_tokens > self.max_tokens_per_microbatch:
                raise ValueError(
                    f"max_packed_tokens ({self.max_packed_tokens}) must be <= max_tokens_per_microbatch "
                    f"({self.max_tokens_per_microbatch}): an episode must fit in one micro-batch"
                )
        if self.log_ratio_clamp is not None and self.log_ratio_clamp <= 0:
            raise ValueError(f"log_ratio_clamp must be > 0 or None, got {self.log_ratio_clamp}")
        if self.dual_clip is not None and self.dual_clip <= 1.0:
            raise ValueError(f"dual_clip must be > 1 or None, got {self.dual_clip}")

    @property
    def old_logprobs_source(self) -> str:
        """``old_logprobs`` with ``"auto"`` resolved: ``"recompute"`` when training runs in another
        precision or program than sampling (bf16 autocast vs the fp32 sampler, or an inference
        engine's own kernels), else ``"rollout"``.

        >>> PPOConfig(dtype="bfloat16").old_logprobs_source, PPOConfig().old_logprobs_source
        ('recompute', 'rollout')
        >>> PPOConfig(rollout="openai", engine_url="http://127.0.0.1:8000").old_logprobs_source
        'recompute'
        """
        if self.old_logprobs != "auto":
            return self.old_logprobs
        return "recompute" if self.dtype != "float32" or self.rollout != "hf" else "rollout"

    @property
    def uses_critic(self) -> bool:
        return self.critic != "none" and self.advantage in ("gae", "turn")

    def env_options(self) -> dict[str, Any]:
        return dict(self.env_kwargs)

    def replace(self, **changes: Any) -> PPOConfig:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, PPOConfig] = {
    "tiny-cpu": PPOConfig(),
    "qwen2.5-7b": PPOConfig(
        model="Qwen/Qwen2.5-7B-Instruct",
        critic="separate",
        dtype="bfloat16",
        gradient_checkpointing=True,
        env_kwargs=(("world", "default"), ("num_objectives", 2), ("max_turns", 6), ("split", "train")),
        num_envs=64,
        episodes_per_step=128,
        max_new_tokens=1000,
        temperature=1.0,
        top_p=0.95,
        max_packed_tokens=None,
        advantage="gae",
        gamma=1.0,
        lam=1.0,
        clip_ratio=0.2,
        value_clip=0.5,
        entropy_coef=0.001,
        kl_coef=0.001,
        kl_mode="k1_reward",
        ppo_epochs=1,
        mini_batch_episodes=64,
        micro_batch_episodes=2,
        actor_lr=1e-6,
        critic_lr=1e-5,
        warmup_steps=0,
        grad_clip=1.0,
        total_steps=200,
        save_every=10,
        eval_every=20,
        eval_episodes=128,
        distributed="fsdp2",
    ),
}


def preset(name: str, **overrides: Any) -> PPOConfig:
    """A preset with fields replaced by ``overrides``."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name].replace(**overrides)
