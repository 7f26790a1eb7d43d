"""GPU check of the masked-PPO trainer and its inference engine (run through ``scripts/gpu_check.sh``).

On a CUDA machine: a randomly initialised model of Qwen2.5-0.5B's shape (``--shape``
``qwen2.5-3b`` for the bars) in bf16 autocast, with a colocated vLLM engine for rollouts, then

1. one rollout of MEM1-style episodes through vLLM and the same prompts through Hugging Face
   ``generate`` (on a bf16 copy of the policy): rollout tokens/s of each, and their ratio;
2. a few full PPO steps on ``MEM1-MultiQA-v0`` with the engine (rollout + score + update + a
   weight sync after every optimizer step): sync seconds, engine/trainer log-prob mismatch;
3. training throughput: PPO updates on synthetic packed episodes of a realistic shape (prompt,
   4 turns of context + response), timed after a warm-up step: forwarded tokens / s / GPU
   (weight sync time excluded, and printed with it);
4. forward-only throughput (the scoring forward, no grad) and peak GPU memory;
5. exact packed forward vs per-turn replay: max |log-prob difference| in bf16 and in fp32;

and one verdict line per bar (vLLM >= 10x HF generate; >= 5,000 training tokens/s/GPU at the 3B
shape; mismatch mean < 0.02 nats in bf16). Without CUDA the same steps run on CPU with the
tiny default model, short episodes and the fake engine of :mod:`agents.engines.fake` in vLLM's
place (the path CI tests); no bar is judged there. Every figure printed is measured in this run.
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
    model.to(torch.bfloat16).save_pretrained(folder)  # half the bytes to write; loaders cast
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


def rollout_rate(envs, policy, seeds, cuda: bool) -> tuple[float, int, float]:
    """Generated tokens / s of one :func:`agents.rollout.collect` over ``seeds`` (and its parts)."""
    from agents.rollout import collect

    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    episodes = collect(envs, policy, seeds, generation_seed=0)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = sum(e.generated_tokens for e in episodes)
    return tokens / max(seconds, 1e-9), tokens, seconds


def verdict(cuda: bool, judged: bool, ok: bool) -> str:
    if not cuda:
        return "not judged (CPU fallback, fake engine)"
    if not judged:
        return "not judged at this shape (use --shape qwen2.5-3b)"
    return "meets it" if ok else "misses it"


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", default="qwen2.5-0.5b", choices=sorted(SHAPES))
    parser.add_argument(
        "--ppo-steps", type=int, default=None, help="full env PPO steps (default 2 GPU, 1 CPU)"
    )
    parser.add_argument(
        "--timed-updates", type=int, default=None, help="timed synthetic updates (3 GPU, 2 CPU)"
    )
    parser.add_argument(
        "--rollout-episodes",
        type=int,
        default=None,
        help="episodes of the vLLM-vs-HF rollout (64 GPU, 2 CPU)",
    )
    parser.add_argument("--engine-eager", action="store_true", help="vLLM without CUDA graphs (faster start)")
    parser.add_argument("--cpu", action="store_true", help="force the CPU fallback")
    args = parser.parse_args(argv)

    import gymnasium as gym

    from agents.llm_policy import LLMPolicy
    from agents.ppo.config import preset
    from agents.ppo.trainer import PPOTrainer
    from agents.tiny_model import default_tiny_model

    cuda = torch.cuda.is_available() and not args.cpu
    scratch = tempfile.mkdtemp(prefix="gpu-check-")
    tiny = default_tiny_model()
    engine = None
    if cuda:
        device_name = torch.cuda.get_device_name()
        model_path = random_model_folder(args.shape, tiny, os.path.join(scratch, "model"))
        shape = dict(prompt=256, turns=4, context=512, generated=128)
        episodes, micro = 16, 4
        ppo_steps, timed = args.ppo_steps or 2, args.timed_updates or 3
        rollout_episodes, new_tokens = args.rollout_episodes or 64, 128
        label = f"{args.shape} (random init)"
    else:
        from agents.engines.fake import FakeLLM

        device_name = "cpu"
        model_path = tiny
        shape = dict(prompt=64, turns=3, context=48, generated=16)
        episodes, micro = 4, 2
        ppo_steps, timed = args.ppo_steps or 1, args.timed_updates or 2
        rollout_episodes, new_tokens = args.rollout_episodes or 2, 8
        label = "tiny default model (CPU fallback)"
        engine = FakeLLM(model_path)  # vLLM's API shapes, decoding with the tiny model itself
    print(f"device: {device_name}; model: {label}; torch {torch.__version__}")
    env_kwargs = (("world", "small"), ("num_objectives", 1), ("max_turns", 2), ("invalid_action", "penalize"))
    config = preset(
        "tiny-cpu",
        model=model_path,
        device="cuda" if cuda else "cpu",
        dtype="bfloat16",
        gradient_checkpointing=cuda and args.shape != "qwen2.5-0.5b",
        env_kwargs=env_kwargs,
        num_envs=episodes,
        episodes_per_step=episodes,
        mini_batch_episodes=episodes,
        micro_batch_episodes=micro,
        max_new_tokens=new_tokens,
        total_steps=ppo_steps,
        # The 3B shape leaves out the frozen reference copy (12 GiB in fp32) to fit one 80 GB GPU.
        kl_mode="none" if args.shape == "qwen2.5-3b" and cuda else "k1_reward",
        actor_lr=1e-6,
        critic_lr=1e-5,
        out_dir=os.path.join(scratch, "run"),
        progress=False,
        save_every=10**6,
        rollout="vllm",
        old_logprobs="recompute",
        engine_gpu_memory=0.25,
        engine_max_model_len=4096,
        engine_enforce_eager=args.engine_eager,
    )
    start = time.perf_counter()
    trainer = PPOTrainer(config, engine=engine)
    results: dict[str, float] = {"setup_seconds": time.perf_counter() - start}
    print(f"trainer + engine built in {results['setup_seconds']:.1f} s")
    # 1. the same prompts through the engine and through Hugging Face generate
    envs = [gym.make(config.env_id, **dict(env_kwargs)) for _ in range(rollout_episodes)]
    seeds = list(range(10**8, 10**8 + rollout_episodes))
    rollout_rate(envs[:2], trainer.sampler, seeds[:2], cuda)  # warm-up (CUDA graphs, caches)
    engine_rate, engine_tokens, _ = rollout_rate(envs, trainer.sampler, seeds, cuda)
    if cuda:  # HF generate on a bf16 copy: the same precision as the engine's weights
        from transformers import AutoModelForCausalLM

        hf_model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16).to("cuda")
    else:
        hf_model = trainer.core.policy
    hf_policy = LLMPolicy(hf_model, trainer.tokenizer, generation=trainer.sampler.generation)
    hf_rate, hf_tokens, _ = rollout_rate(envs, hf_policy, seeds, cuda)
    del hf_policy, hf_model
    if cuda:
        torch.cuda.empty_cache()
    results.update(engine_rollout_tokens_per_s=engine_rate, hf_rollout_tokens_per_s=hf_rate)
    results["rollout_speedup"] = engine_rate / max(hf_rate, 1e-9)
    engine_name = "vLLM" if cuda else "fake engine"
    print(
        f"rollout ({rollout_episodes} episodes, same prompts): {engine_name} {engine_rate:.0f} tokens/s "
        f"({engine_tokens} tokens), HF generate {hf_rate:.0f} tokens/s ({hf_tokens} tokens): "
        f"{results['rollout_speedup']:.2f}x"
    )
    # 2. full PPO steps on the environment, through the engine, with weight syncs
    start = time.perf_counter()
    history = trainer.train(stop_after=ppo_steps)
    results["ppo_steps"] = len(history)
    results["ppo_step_seconds"] = (time.perf_counter() - start) / max(len(history), 1)
    results["env_logprob_gap_bf16"] = float(np.mean([h["logprob_gap"] for h in history]))
    results["mismatch_mean"] = float(np.mean([h["engine_logprob_mismatch_mean"] for h in history]))
    results["mismatch_max"] = float(np.max([h["engine_logprob_mismatch_max"] for h in history]))
    sync = trainer.engine_sync
    results["weight_sync_seconds"] = sync.seconds / max(sync.syncs, 1)
    print(
        f"env PPO steps: {len(history)} in {results['ppo_step_seconds']:.2f} s/step, "
        f"reward {history[-1]['reward']:.3f}"
    )
    print(
        f"weight sync: {results['weight_sync_seconds']:.3f} s per sync ({sync.syncs} syncs, one per optimizer "
        "step, per decoder layer in bf16)"
    )
    print(
        f"engine/trainer log-prob mismatch (bf16, generated tokens): mean {results['mismatch_mean']:.2e}, "
        f"max {results['mismatch_max']:.2e} nats"
    )
    # 3. training throughput on synthetic episodes of a realistic shape
    vocab = trainer.core.policy.config.vocab_size
    records = synthetic_records(episodes, vocab=min(vocab, 2000), **shape)
    groups = list(range(episodes))
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    trainer.update(records, groups, step=0)  # warm-up (allocations, kernels)
    tokens_per_update = sum(len(r.pack()) for r in records)
    seconds, sync_seconds = [], []
    for i in range(timed):
        if cuda:
            torch.cuda.synchronize()
        before = sync.seconds
        t0 = time.perf_counter()
        trainer.update(records, groups, step=i + 1)
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
        sync_seconds.append(sync.seconds - before)
    # update() = scoring forward + forward/backward/step (+ the engine's weight sync, reported apart).
    training = [s - w for s, w in zip(seconds, sync_seconds, strict=True)]
    results["train_tokens_per_s_per_gpu"] = tokens_per_update / float(np.median(training))
    results["train_tokens_per_s_per_gpu_with_sync"] = tokens_per_update / float(np.median(seconds))
    # 4. forward-only throughput (the scoring pass)
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
        f"{tokens_per_update} packed tokens, score + forward/backward + step; "
        f"{results['train_tokens_per_s_per_gpu_with_sync']:.0f} with the weight sync)"
    )
    print(f"forward only: {results['forward_tokens_per_s_per_gpu']:.0f} tokens/s/{unit}")
    if cuda:
        print(f"peak GPU memory: {results['peak_gpu_memory_gib']:.2f} GiB (trainer; the engine sleeps then)")
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
    at_3b = args.shape == "qwen2.5-3b"
    print(
        "bar: vLLM rollout >= 10x HF generate tokens/s: "
        + verdict(cuda, True, results["rollout_speedup"] >= 10)
        + f" ({results['rollout_speedup']:.2f}x)"
    )
    print(
        "bar: >= 5,000 training tokens/s/GPU at the 3B shape: "
        + verdict(cuda, at_3b, results["train_tokens_per_s_per_gpu"] >= 5000)
        + f" ({results['train_tokens_per_s_per_gpu']:.0f})"
    )
    print(
        "bar: engine/trainer log-prob mismatch mean < 0.02 nats in bf16: "
        + verdict(cuda, True, results["mismatch_mean"] < 0.02)
        + f" ({results['mismatch_mean']:.2e})"
    )
    print("GPU_CHECK_OK" if cuda else "GPU_CHECK_CPU_FALLBACK_OK")
    return results


if __name__ == "__main__":
    main()
