"""GPU check of the masked-PPO trainer (run through ``scripts/gpu_check.sh``).

On a CUDA machine: a randomly initialised model of Qwen2.5-0.5B's shape (``--shape``
``qwen2.5-3b`` for the 5,000 tokens/s/GPU bar) in bf16 autocast, then

1. a few full PPO steps on ``MEM1-MultiQA-v0`` (rollout + score + update) to show the loop runs;
2. training throughput: PPO updates on synthetic packed episodes of a realistic shape (prompt,
   4 turns of context + response), timed after a warm-up step: forwarded tokens / s / GPU;
3. forward-only throughput (the scoring forward, no grad);
4. peak GPU memory;
5. exact packed forward vs per-turn replay: max |log-prob difference| in bf16 and in fp32.

Without CUDA the same steps run on CPU with the tiny default model and short episodes (the path
CI tests). Every figure printed is measured in this run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import torch

SHAPES = {
    "qwen2.5-0.5b": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
    ),
    "qwen2.5-3b": dict(
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
    ),
}


def random_model_folder(shape: str, tokenizer_folder: str, folder: str) -> str:
    """A randomly initialised Qwen2 model of ``shape`` with Qwen2.5's vocabulary size, saved."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    config = Qwen2Config(
        vocab_size=151936,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **SHAPES[shape],
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def synthetic_records(
    n: int, prompt: int, turns: int, context: int, generated: int, vocab: int, seed: int = 0
):
    from mem1_envs.trajectory import RolloutRecord, TurnRecord

    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        turn_list = [
            TurnRecord(
                rng.integers(3, vocab, 0 if k == 0 else context),
                rng.integers(3, vocab, generated),
                old_logprobs=np.full(generated, -5.0, np.float32),
            )
            for k in range(turns)
        ]
        records.append(RolloutRecord(rng.integers(3, vocab, prompt), turn_list, reward=float(i % 2)))
    return records


def replay_error(trainer, record, dtype) -> float:
    """max |packed forward log-prob - per-turn replay log-prob| over the record's generated tokens."""
    from agents.ppo.buffer import RolloutBuffer

    device = trainer.device
    buffer = RolloutBuffer.from_records([record])
    batch = buffer.collate([0], device=device, dtype=dtype)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
    worst = 0.0
    with torch.no_grad(), autocast:
        packed = trainer.core(batch)["logprobs"][0].float()
        p = buffer.packed[0]
        for k, turn in enumerate(record.turns):
            ids = torch.as_tensor(np.concatenate([record.prompt_ids, turn.context_ids, turn.generated_ids]))
            ids = ids[None].to(device)
            logits = trainer.core.policy(ids).logits[0].float()
            start = len(record.prompt_ids) + len(turn.context_ids)
            replay = torch.log_softmax(logits[start - 1 : -1], -1).gather(-1, ids[0, start:, None])[:, 0]
            where = torch.as_tensor(np.flatnonzero(p.loss_mask & (p.turn_index == k)), device=device)
            worst = max(worst, float((packed[where] - replay).abs().max()))
    return worst


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", default="qwen2.5-0.5b", choices=sorted(SHAPES))
    parser.add_argument(
        "--ppo-steps", type=int, default=None, help="full env PPO steps (default 3 GPU, 1 CPU)"
    )
    parser.add_argument(
        "--timed-updates", type=int, default=None, help="timed synthetic updates (3 GPU, 2 CPU)"
    )
    parser.add_argument("--cpu", action="store_true", help="force the CPU fallback")
    args = parser.parse_args(argv)

    from agents.ppo.config import preset
    from agents.ppo.trainer import PPOTrainer
    from agents.tiny_model import default_tiny_model

    cuda = torch.cuda.is_available() and not args.cpu
    scratch = tempfile.mkdtemp(prefix="gpu-check-")
    tiny = default_tiny_model()
    if cuda:
        device_name = torch.cuda.get_device_name()
        model_path = random_model_folder(args.shape, tiny, os.path.join(scratch, "model"))
        shape = dict(prompt=256, turns=4, context=512, generated=128)
        episodes, micro = 16, 4
        ppo_steps, timed = args.ppo_steps or 3, args.timed_updates or 3
        label = f"{args.shape} (random init)"
    else:
        device_name = "cpu"
        model_path = tiny
        shape = dict(prompt=64, turns=3, context=48, generated=16)
        episodes, micro = 4, 2
        ppo_steps, timed = args.ppo_steps or 1, args.timed_updates or 2
        label = "tiny default model (CPU fallback)"
    print(f"device: {device_name}; model: {label}; torch {torch.__version__}")
    config = preset(
        "tiny-cpu",
        model=model_path,
        device="cuda" if cuda else "cpu",
        dtype="bfloat16",
        gradient_checkpointing=cuda and args.shape != "qwen2.5-0.5b",
        env_kwargs=(
            ("world", "small"),
            ("num_objectives", 1),
            ("max_turns", 2),
            ("invalid_action", "penalize"),
        ),
        num_envs=episodes,
        episodes_per_step=episodes,
        mini_batch_episodes=episodes,
        micro_batch_episodes=micro,
        max_new_tokens=32 if cuda else 8,
        total_steps=ppo_steps,
        # The 3B shape leaves out the frozen reference copy (12 GiB in fp32) to fit one 80 GB GPU.
        kl_mode="none" if args.shape == "qwen2.5-3b" and cuda else "k1_reward",
        actor_lr=1e-6,
        critic_lr=1e-5,
        out_dir=os.path.join(scratch, "run"),
        progress=False,
        save_every=10**6,
    )
    trainer = PPOTrainer(config)
    results: dict[str, float] = {}
    # 1. full PPO steps on the environment
    start = time.perf_counter()
    history = trainer.train(stop_after=ppo_steps)
    results["ppo_steps"] = len(history)
    results["ppo_step_seconds"] = (time.perf_counter() - start) / max(len(history), 1)
    results["env_logprob_gap_bf16"] = float(np.mean([h["logprob_gap"] for h in history]))
    print(
        f"env PPO steps: {len(history)} in {results['ppo_step_seconds']:.2f} s/step, "
        f"reward {history[-1]['reward']:.3f}, rollout-vs-training log-prob gap (bf16 autocast) "
        f"{results['env_logprob_gap_bf16']:.2e}"
    )
    # 2. training throughput on synthetic episodes of a realistic shape
    vocab = trainer.core.policy.config.vocab_size
    records = synthetic_records(episodes, vocab=min(vocab, 2000), **shape)
    groups = list(range(episodes))
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    trainer.update(records, groups, step=0)  # warm-up (allocations, kernels)
    tokens_per_update = sum(len(r.pack()) for r in records)
    seconds = []
    for i in range(timed):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer.update(records, groups, step=i + 1)
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
    # update() = scoring forward + forward/backward/step: count what the optimizer step trains on.
    results["train_tokens_per_s_per_gpu"] = tokens_per_update / float(np.median(seconds))
    # 3. forward-only throughput (the scoring pass)
    from agents.ppo.buffer import RolloutBuffer

    buffer = RolloutBuffer.from_records(records, groups)
    fwd = []
    for _ in range(max(timed, 2)):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer.score(buffer)
        if cuda:
            torch.cuda.synchronize()
        fwd.append(time.perf_counter() - t0)
    results["forward_tokens_per_s_per_gpu"] = tokens_per_update / float(np.median(fwd))
    results["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    unit = "GPU" if cuda else "CPU process"
    print(
        f"training: {results['train_tokens_per_s_per_gpu']:.0f} tokens/s/{unit} (median of {timed} updates of "
        f"{tokens_per_update} packed tokens, score + forward/backward + step)"
    )
    print(f"forward only: {results['forward_tokens_per_s_per_gpu']:.0f} tokens/s/{unit}")
    if cuda:
        print(f"peak GPU memory: {results['peak_gpu_memory_gib']:.2f} GiB")
    else:
        print("peak GPU memory: n/a (CPU fallback)")
    # 5. exact packed forward vs per-turn replay
    probe = synthetic_records(1, vocab=min(vocab, 2000), seed=1, **shape)[0]
    results["replay_error_bf16"] = replay_error(trainer, probe, torch.bfloat16)
    trainer.core.float()
    results["replay_error_fp32"] = replay_error(trainer, probe, torch.float32)
    print(
        f"packed vs per-turn replay max |log-prob error|: bf16 {results['replay_error_bf16']:.2e}, "
        f"fp32 {results['replay_error_fp32']:.2e}"
    )
    trainer.close()
    if cuda and args.shape == "qwen2.5-3b":
        verdict = "meets" if results["train_tokens_per_s_per_gpu"] >= 5000 else "misses"
        print(f"bar: >= 5,000 training tokens/s/GPU for a 3B-shaped model on an H100: {verdict} it")
    print("GPU_CHECK_OK" if cuda else "GPU_CHECK_CPU_FALLBACK_OK")
    return results


if __name__ == "__main__":
    main()
