"""Per-GPU memory budget of a masked-PPO run, from the configuration alone (an estimate, no GPU).

    python scripts/memory_budget.py --model qwen2.5-7b --config qwen2.5-7b --gpus 8 --gpu-gib 80
    python scripts/memory_budget.py --model qwen2.5-3b --gpus 1 --gpu-gib 141 --tokens-per-microbatch 8192

Prints one row per item (bytes per GPU, the phase it belongs to, the arithmetic) for the FSDP2
layout of ``agents/ppo/setup.py``: fp32 master shards of the policy and critic, fp32 gradient and
AdamW shards, bf16 reference shards (none on the GPU with ``reference_offload``), the working set
of gathered bf16 layers, activations at the micro-batch token count with and without activation
checkpointing, the chunked log-softmax, and, in the rollout, the rank-local bf16 generation copy,
its KV cache and its logits. Then the peak of each phase plus a reserve (CUDA context, NCCL,
allocator fragmentation) against the GPU's memory: FITS or DOES NOT FIT (exit status 0 or 1).

Activation bytes per token per layer are counted for a Qwen2 decoder layer in bf16 with a fused
attention kernel (SDPA / FlexAttention: no ``S x S`` scores kept): ``2 * (7H + 4*KV + 4I)`` (the
layer input, norm output, q, k/v, rotated q/k, attention output, second norm input/output, and
the MLP's gate, up, activation and product); with checkpointing each layer keeps only its input
(``2H``) and one layer is recomputed at a time. Model shapes are the public Hugging Face configs.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agents.ppo.config import PRESETS, PPOConfig, preset

GIB = 2**30

MODELS: dict[str, dict[str, Any]] = {
    # config.json of Qwen/Qwen2.5-3B-Instruct and Qwen/Qwen2.5-7B-Instruct (architecture numbers).
    "qwen2.5-3b": {
        "num_hidden_layers": 36,
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    },
    "qwen2.5-7b": {
        "num_hidden_layers": 28,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
    },
}


@dataclass(frozen=True)
class Shape:
    """Parameter counts of a Qwen2-style causal LM."""

    layers: int
    hidden: int
    intermediate: int
    kv: int  # key/value width: kv heads x head dim
    vocab: int
    tied: bool

    @classmethod
    def of(cls, config: dict[str, Any]) -> Shape:
        head_dim = config["hidden_size"] // config["num_attention_heads"]
        return cls(
            config["num_hidden_layers"],
            config["hidden_size"],
            config["intermediate_size"],
            config["num_key_value_heads"] * head_dim,
            config["vocab_size"],
            bool(config["tie_word_embeddings"]),
        )

    @property
    def per_layer(self) -> int:
        h, kv = self.hidden, self.kv
        attention = (h * h + h) + 2 * (h * kv + kv) + h * h  # q (bias), k and v (bias), o
        return attention + 3 * h * self.intermediate + 2 * h  # gate/up/down, two RMSNorms

    @property
    def embedding(self) -> int:
        return self.vocab * self.hidden

    @property
    def decoder(self) -> int:
        """Embedding, layers and final norm: a separate critic's trunk."""
        return self.embedding + self.layers * self.per_layer + self.hidden

    @property
    def total(self) -> int:
        return self.decoder + (0 if self.tied else self.embedding)


@dataclass
class Item:
    name: str
    phase: str  # "resident" (whole step), "train" (update only), "rollout" (generation only)
    bytes: float
    formula: str

    @property
    def gib(self) -> float:
        return self.bytes / GIB


@dataclass
class Budget:
    items: list[Item] = field(default_factory=list)
    gpu_gib: float = 80.0
    reserve_gib: float = 4.0
    notes: list[str] = field(default_factory=list)

    def peak_gib(self, phase: str) -> float:
        return sum(i.gib for i in self.items if i.phase in ("resident", phase))

    @property
    def train_peak_gib(self) -> float:
        return self.peak_gib("train")

    @property
    def rollout_peak_gib(self) -> float:
        return self.peak_gib("rollout")

    @property
    def fits(self) -> bool:
        return max(self.train_peak_gib, self.rollout_peak_gib) + self.reserve_gib <= self.gpu_gib


def budget(
    model: dict[str, Any],
    config: PPOConfig,
    *,
    gpus: int,
    gpu_gib: float,
    tokens_per_microbatch: int | None = None,
    episode_tokens: int = 8192,
    context_tokens: int = 3000,
    reserve_gib: float = 4.0,
) -> Budget:
    """The per-GPU budget of ``config`` on ``gpus`` GPUs of ``gpu_gib`` each (FSDP2 layout;
    with one GPU nothing is sharded). ``tokens_per_microbatch`` defaults to the config's
    ``max_tokens_per_microbatch`` when it has one, else ``micro_batch_episodes x episode_tokens``."""
    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    s = Shape.of(model)
    g = gpus
    out = Budget(gpu_gib=gpu_gib, reserve_gib=reserve_gib)
    half = 2 if config.dtype == "bfloat16" else 4  # compute / generation / reference dtype bytes
    critic = config.uses_critic and config.critic == "separate"
    pc = s.decoder + s.hidden + 1 if critic else (s.hidden + 1 if config.uses_critic else 0)
    trained = s.total + pc
    add = out.items.append
    add(
        Item(
            "policy parameters (fp32 master shards)",
            "resident",
            s.total * 4 / g,
            f"{s.total:.4g} x 4 B / {g}",
        )
    )
    if pc:
        add(Item("critic parameters (fp32 master shards)", "resident", pc * 4 / g, f"{pc:.4g} x 4 B / {g}"))
    add(Item("AdamW moments (fp32 shards)", "resident", trained * 8 / g, f"{trained:.4g} x 2 x 4 B / {g}"))
    reference = config.kl_mode != "none" and config.kl_coef > 0 and config.lora_r == 0
    if reference:
        where = "CPU (offloaded)" if config.reference_offload else f"{half} B shards"
        ref_bytes = 0.0 if config.reference_offload else s.total * half / g
        add(Item(f"reference parameters ({where})", "resident", ref_bytes, f"{s.total:.4g} x {half} B / {g}"))
    # -- update ---------------------------------------------------------------------------------
    add(Item("gradients (fp32 shards)", "train", trained * 4 / g, f"{trained:.4g} x 4 B / {g}"))
    roots = s.total - s.layers * s.per_layer + (s.embedding if critic else 0)
    working = roots * half + 2 * s.per_layer * (2 * half + 4)
    add(
        Item(
            "gathered params: roots + 2 layers (+ fp32 grad buffer)",
            "train",
            working,
            f"{roots:.4g} x {half} B + 2 x {s.per_layer:.4g} x ({2 * half}+4) B",
        )
    )
    tokens = tokens_per_microbatch or getattr(config, "max_tokens_per_microbatch", None)
    tokens = tokens or config.micro_batch_episodes * episode_tokens
    per_token_layer = 2 * (7 * s.hidden + 4 * s.kv + 4 * s.intermediate)
    trunks = 2 if critic else 1
    full = trunks * s.layers * tokens * per_token_layer
    checkpointed = trunks * (s.layers * tokens * 2 * s.hidden) + tokens * per_token_layer
    chosen_name = "with" if config.gradient_checkpointing else "without"
    for name, value, formula in (
        (
            "with",
            checkpointed,
            f"{trunks} x {s.layers} x {tokens} x {2 * s.hidden} + {tokens} x {per_token_layer} B",
        ),
        ("without", full, f"{trunks} x {s.layers} x {tokens} x {per_token_layer} B"),
    ):
        phase = "train" if name == chosen_name else "(not used)"
        add(Item(f"activations {name} checkpointing, {tokens} tokens", phase, value, formula))
    chunk = config.logprob_chunk_tokens
    add(
        Item(
            f"log-softmax chunk ({chunk} tokens)",
            "train",
            chunk * s.vocab * (4 * 4 + half),
            f"{chunk} x {s.vocab} x (4 fp32 copies x 4 B + {half} B)",
        )
    )
    if config.attention == "dense":
        rows = config.micro_batch_episodes
        width = tokens / rows
        add(
            Item(
                "dense additive mask",
                "train",
                rows * width * width * half,
                f"{rows} x {width:.0f}^2 x {half} B",
            )
        )
    # -- rollout --------------------------------------------------------------------------------
    add(Item(f"generation copy ({half} B)", "rollout", s.total * half, f"{s.total:.4g} x {half} B"))
    rows = config.num_envs
    context = context_tokens + config.max_new_tokens
    kv = rows * context * 2 * s.layers * s.kv * half
    add(Item("KV cache", "rollout", kv, f"{rows} rows x {context} tok x 2 x {s.layers} x {s.kv} x {half} B"))
    add(Item("generation logits", "rollout", rows * s.vocab * 4 * 3, f"{rows} x {s.vocab} x 4 B x 3 copies"))
    out.notes.append(
        f"{s.total / 1e9:.2f}B parameters; {tokens} training tokens per micro-batch; rollout: {rows} rows of "
        f"{context_tokens} context + {config.max_new_tokens} generated tokens (assumed context)"
    )
    return out


def render(result: Budget, title: str) -> str:
    lines = [f"### {title}", "", "| item | phase | GiB per GPU | arithmetic |", "|---|---|---:|---|"]
    for item in result.items:
        lines.append(f"| {item.name} | {item.phase} | {item.gib:.2f} | {item.formula} |")
    lines += [
        f"| **update peak** | train | **{result.train_peak_gib:.2f}** | resident + train rows |",
        f"| **rollout peak** | rollout | **{result.rollout_peak_gib:.2f}** | resident + rollout rows |",
        f"| reserve (CUDA context, NCCL, fragmentation) | | {result.reserve_gib:.2f} | assumed |",
        "",
        *result.notes,
        "",
        f"verdict: {'FITS' if result.fits else 'DOES NOT FIT'} in {result.gpu_gib:g} GiB "
        f"(peak {max(result.train_peak_gib, result.rollout_peak_gib) + result.reserve_gib:.1f} GiB with the reserve)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="qwen2.5-7b", choices=sorted(MODELS))
    parser.add_argument("--config", default="qwen2.5-7b", choices=sorted(PRESETS), help="preset")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--gpu-gib", type=float, default=80.0)
    parser.add_argument("--tokens-per-microbatch", type=int, default=None)
    parser.add_argument("--episode-tokens", type=int, default=8192, help="packed tokens per episode")
    parser.add_argument("--context-tokens", type=int, default=3000, help="rollout input tokens per row")
    parser.add_argument("--reserve-gib", type=float, default=4.0)
    parser.add_argument("--reference-offload", action="store_true")
    args = parser.parse_args(argv)
    config = preset(args.config)
    if args.reference_offload:
        config = config.replace(reference_offload=True)
    result = budget(
        MODELS[args.model],
        config,
        gpus=args.gpus,
        gpu_gib=args.gpu_gib,
        tokens_per_microbatch=args.tokens_per_microbatch,
        episode_tokens=args.episode_tokens,
        context_tokens=args.context_tokens,
        reserve_gib=args.reserve_gib,
    )
    title = f"{args.model}, preset {args.config}, {args.gpus} x {args.gpu_gib:g} GiB (estimate)"
    print(render(result, title))
    return 0 if result.fits else 1


if __name__ == "__main__":
    raise SystemExit(main())
