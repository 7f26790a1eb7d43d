"""The masked-PPO training loop, in one readable class (CleanRL's shape, named sections).

Each step::

    1. rollout   every rank plays its share of the batch's prompts (batched generation; under
                 FSDP2 on a rank-local copy gathered once, so no collective while generating)
    2. score     one exact packed forward: current log-probs (the rollout-vs-training gap),
                 values, and the frozen reference's log-probs
    3. advantage k1 KL in the reward (MEM1) or not, then GAE / turn-level / GRPO / GiGPO,
                 whitened over the global batch
    4. update    per mini-batch: micro-batches (so many episodes, or a token budget with several
                 packed episodes per row; every rank runs as many) accumulate a token-level loss
                 normalised by the global token count (so 1 rank == N ranks on the same batch),
                 one clipped optimizer step; NaN/inf stops the run with the batch saved
    5. log/save  metrics to JSONL (+TensorBoard), sharded checkpoint (DCP) with RNG states and step

Models, sharding and the optimizer are built by :mod:`agents.ppo.setup`. Run it with
``scripts/train_ppo.py`` (``torchrun --nproc_per_node=N scripts/train_ppo.py`` for data
parallel: gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.distributed as dist

import mem1_envs  # noqa: F401 - registers the env ids
from agents.engines import EngineSync, make_backend
from agents.engines.mismatch import mismatch_stats, tis_weights
from agents.llm_policy import GenerationConfig, LLMPolicy
from agents.ppo import checkpoint, evaluation, setup
from agents.ppo import losses as L
from agents.ppo.buffer import RolloutBuffer
from agents.ppo.checkpoint import rng_state, set_rng_state
from agents.ppo.config import PPOConfig
from agents.ppo.metrics import MetricsLogger
from agents.rollout import Episode, collect
from mem1_envs.trajectory import RolloutRecord

__all__ = ["PPOTrainer", "rng_state", "set_rng_state"]


class PPOTrainer:
    """Builds everything from a :class:`PPOConfig`; :meth:`train` runs the loop.

    ``policy_path`` overrides ``config.model`` (e.g. an SFT checkpoint); ``engine`` is an
    already-built engine object for ``rollout="vllm"`` (CPU tests: a fake with vLLM's shapes).
    """

    def __init__(self, config: PPOConfig, policy_path: str | None = None, *, engine: Any = None):
        from transformers import AutoTokenizer

        self.config = config
        # -- distribution ----------------------------------------------------------------------
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
        if use_cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            self.device = torch.device("cuda", local)
        else:
            self.device = torch.device("cpu")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
        prompts = config.episodes_per_step // config.group_size
        if prompts % self.world or (config.mini_batch_episodes % self.world):
            raise ValueError(
                f"prompts per step ({prompts}) and mini_batch_episodes ({config.mini_batch_episodes}) "
                f"must divide by the number of processes ({self.world})"
            )
        # -- models and optimisation (agents/ppo/setup.py) ------------------------------------
        path = policy_path or config.model
        if path in (None, "tiny"):
            from agents.tiny_model import default_tiny_model

            path = default_tiny_model()
        self.model_path = path
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        models = setup.build_models(config, path, self.device, self.world)
        self.core, self.reference, self.module, self.lora = (
            models.core,
            models.reference,
            models.module,
            models.lora,
        )
        self.optimizer, self.scheduler = setup.build_optimizer(config, self.core)
        # -- environments and sampler ----------------------------------------------------------
        self.envs = [gym.make(config.env_id, **config.env_options()) for _ in range(config.num_envs)]
        self.sampler = LLMPolicy(
            self.core.policy,
            self.tokenizer,
            protocol=dict(config.env_kwargs).get("protocol", "mem1"),
            generation=GenerationConfig(
                max_new_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p
            ),
            # -- issue 11: an inference engine (None: generate on the training model) --
            backend=make_backend(
                config,
                tokenizer=self.tokenizer,
                model_path=path,
                model_config=self.core.policy.config,
                rank=self.rank,
                engine=engine,
            ),
        )
        # Sleep/wake of the engine around the update, its weights after every optimizer step.
        self.engine_sync = EngineSync(self.sampler.backend, self.core.policy)
        self.step = 0
        self.autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if config.dtype == "bfloat16"
            else contextlib.nullcontext()
        )
        self.mask_dtype = torch.bfloat16 if config.dtype == "bfloat16" else torch.float32
        self.mask_kind = "block" if config.attention == "flex" else "dense"
        torch.manual_seed(config.seed * 1009 + self.rank)  # ranks sample different rollouts

    # -- helpers -----------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce(self, values: np.ndarray) -> np.ndarray:
        """Sum a float64 numpy array over ranks (identity on one process)."""
        if self.world == 1:
            return values
        tensor = torch.as_tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.cpu().numpy()

    def prompt_seeds(self, step: int) -> tuple[list[int], list[int]]:
        """This rank's episode seeds and group ids for ``step`` (the data position)."""
        c = self.config
        prompts = c.episodes_per_step // c.group_size
        per_rank = prompts // self.world
        first = self.rank * per_rank
        seeds, groups = [], []
        for j in range(first, first + per_rank):
            for _ in range(c.group_size):
                seeds.append(c.seed * 10**6 + step * prompts + j)
                groups.append(j)
        return seeds, groups

    # -- 1. rollout --------------------------------------------------------------------------
    def rollout(self, step: int) -> tuple[list[Episode], list[int], float]:
        """This rank's episodes of ``step``: no collective while generating (see :meth:`_generation_model`)."""
        seeds, groups = self.prompt_seeds(step)
        start = time.perf_counter()
        with self._generation_model(self.sampler):
            episodes = collect(self.envs, self.sampler, seeds)
        return episodes, groups, time.perf_counter() - start

    @contextlib.contextmanager
    def _generation_model(self, sampler: LLMPolicy) -> Any:
        """Point ``sampler`` at the model to generate with for one rollout.

        Under FSDP2 generating through the sharded policy would all-gather every layer at every
        decoding step, a collective per step: a rank with shorter episodes would reach the next
        collective while another still generates, and both would hang. Instead the shards are
        gathered once, parameter by parameter, into a rank-local copy in the config's dtype
        (:func:`agents.ppo.setup.generation_copy`; 7B in bf16: 15.2 GB while it lives), the ranks
        generate independently, and the copy is freed before the update. Otherwise the policy
        itself generates (DDP never syncs outside its own forward)."""
        self.optimizer.zero_grad(set_to_none=True)  # the last step's gradients are dead weight here
        if self.config.rollout != "hf":  # an engine generates with its own (synced) weights
            yield sampler.backend
            return
        model: Any = self.core.policy
        if self._fsdp:
            dtype = torch.bfloat16 if self.config.dtype == "bfloat16" else torch.float32
            model = setup.generation_copy(self.core.policy, dtype, self.device)
        backend = sampler.backend
        saved = sampler.model, getattr(backend, "model", None)
        sampler.model = model
        if saved[1] is not None:
            backend.model = model
        self.core.eval()
        try:
            yield model
        finally:
            self.core.train()
            sampler.model = saved[0]
            if saved[1] is not None:
                backend.model = saved[1]
            del model
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    # -- 2. score ----------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, buffer: RolloutBuffer) -> dict[str, float]:
        """Current log-probs, values and reference log-probs of every episode (no grad), in the
        same micro-batches as the update (token budget included), so scoring never needs more
        memory than training."""
        c = self.config
        micro = buffer.micro_batches(
            range(len(buffer)), episodes=c.micro_batch_episodes, max_tokens=c.max_tokens_per_microbatch
        )
        n_calls = len(micro)
        if c.max_tokens_per_microbatch is not None:  # FSDP2 forwards are collectives: equal counts
            n_calls = int(self._all_max(n_calls))
        current: dict[int, np.ndarray] = {}
        values: dict[int, np.ndarray] = {}
        reference: dict[int, np.ndarray] = {}
        self.core.eval()
        for n_micro in range(n_calls):
            dummy = n_micro >= len(micro)  # a pass whose outputs are dropped (see update())
            rows = (
                [[min(range(len(buffer)), key=lambda i: len(buffer.packed[i]))]] if dummy else micro[n_micro]
            )
            batch = buffer.collate(rows, device=self.device, dtype=self.mask_dtype, mask=self.mask_kind)
            with self.autocast:
                out = self.core(batch)
                if self.reference is not None:
                    ref = self.reference(batch)["logprobs"]
                elif self.lora and c.kl_mode != "none" and c.kl_coef > 0:
                    with self.core.policy.disable_adapter():
                        ref = self.core(batch)["logprobs"]
                else:
                    ref = out["logprobs"]
            if not dummy:
                current.update(buffer.split(out["logprobs"], rows))
                values.update(buffer.split(out["values"], rows))
                reference.update(buffer.split(ref, rows))
        self.core.train()
        current, values, reference = (
            [d[i] for i in range(len(buffer))] for d in (current, values, reference)
        )
        masks = buffer.loss_masks
        rollout = buffer.arrays["rollout_logprobs"]
        gap_sum, gap_max, gap_count = mismatch_stats(rollout, current, masks)
        # -- issue 11: log-prob semantics and TIS ------------------------------------------------
        # Engine log-probs that are not log_softmax(logits / T) (agents/engines/mismatch.py) are
        # never the PPO denominator: the trainer's recomputed ones are.
        exact = getattr(self.sampler.backend, "logprobs_exact", True)
        use_rollout = c.old_logprobs_source == "rollout" and exact
        engine_metrics: dict[str, float] = {}
        if c.rollout != "hf" and c.tis_cap is not None and exact and not use_rollout:
            weights = tis_weights(current, rollout, masks, c.tis_cap)
            buffer.arrays["tis_weights"] = weights
            kept = np.concatenate([w[m] for w, m in zip(weights, masks, strict=True)])
            tis = self.all_reduce(np.array([kept.sum(), (kept >= c.tis_cap).sum(), kept.size], np.float64))
            engine_metrics.update(
                tis_weight_mean=tis[0] / max(tis[2], 1), tis_capped_frac=tis[1] / max(tis[2], 1)
            )
        buffer.arrays["old_logprobs"] = rollout if use_rollout else current
        buffer.arrays["ref_logprobs"] = reference
        buffer.arrays["values"] = values
        k1 = np.concatenate(
            [(o - r)[m] for o, r, m in zip(buffer.arrays["old_logprobs"], reference, masks, strict=True)]
        )
        stats = self.all_reduce(np.array([gap_sum, k1.sum(), gap_count], np.float64))
        gap_mean = stats[0] / max(stats[2], 1)
        return {
            "logprob_gap": gap_mean,
            "kl": stats[1] / max(stats[2], 1),
            # issue 11: the rollout-vs-trainer gap as the engine health metric, max over all ranks
            "engine_logprob_mismatch_mean": gap_mean,
            "engine_logprob_mismatch_max": self._all_max(gap_max),
            **engine_metrics,
        }

    def _all_max(self, value: float) -> float:
        """The maximum of ``value`` over ranks (identity on one process)."""
        if self.world == 1:
            return float(value)
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor.item())

    # -- 3 + 4. advantages and update ---------------------------------------------------------
    def update(
        self, records: Sequence[RolloutRecord], group_ids: Sequence[int], *, step: int | None = None
    ) -> dict[str, float]:
        """Train on this rank's episodes of one batch (steps 2-4); returns metrics."""
        c = self.config
        step = self.step if step is None else step
        buffer = RolloutBuffer.from_records(records, group_ids, max_tokens=c.max_packed_tokens)
        self.engine_sync.release()  # issue 11: the engine's KV cache (and weights) off the GPU
        syncs_before, sync_seconds_before = self.engine_sync.syncs, self.engine_sync.seconds
        skipped = int(self.all_reduce(np.array([len(buffer.skipped)], np.float64))[0])
        if skipped and (self.world > 1 or not len(buffer)):
            # Ranks must keep equal batches (FSDP2 forwards are collectives): no silent imbalance.
            raise ValueError(
                f"max_packed_tokens={c.max_packed_tokens} cannot hold the prompt and final turn of {skipped} "
                "episode(s) of this batch (D7: the answer is never cut); raise it"
            )
        metrics = self.score(buffer)
        metrics["skipped_episodes"] = float(skipped)
        buffer.compute_advantages(
            c.advantage,
            kl_coef=c.kl_coef,
            kl_in_reward=c.kl_mode == "k1_reward",
            gamma=c.gamma,
            lam=c.lam,
            gigpo_step_weight=c.gigpo_step_weight,
        )
        if c.whiten_advantages and c.advantage in ("gae", "turn"):
            buffer.whiten("advantages", self.all_reduce)
        local_mini = c.mini_batch_episodes // self.world
        keys = ("pg", "vf", "entropy", "clipped", "dual_clipped", "approx_kl", "vf_clipped", "k3", "tokens")
        sums = dict.fromkeys(keys, 0.0)
        grad_norms: list[float] = []
        update_start = time.perf_counter()
        forwarded = 0
        calls = padding = 0
        order_rng = np.random.default_rng([c.seed, step])
        for _epoch in range(c.ppo_epochs):
            order = (
                order_rng.permutation(len(buffer))
                if c.ppo_epochs > 1 or len(buffer) > local_mini
                else np.arange(len(buffer))
            )
            for mini_start in range(0, len(buffer), local_mini):
                mini = [int(i) for i in order[mini_start : mini_start + local_mini]]
                micro = buffer.micro_batches(
                    mini, episodes=c.micro_batch_episodes, max_tokens=c.max_tokens_per_microbatch
                )
                local_tokens = sum(int(buffer.packed[i].loss_mask.sum()) for i in mini)
                global_tokens = float(self.all_reduce(np.array([local_tokens], np.float64))[0])
                # Token budgets give ranks different numbers of micro-batches, but every rank must
                # run as many forward/backward passes (FSDP gathers and reduces in each): the
                # shorter ranks add zero-loss passes over their shortest episode.
                n_calls = len(micro)
                if c.max_tokens_per_microbatch is not None:  # episode counts are equal by construction
                    n_calls = int(self._all_max(n_calls))
                padding += n_calls - len(micro)
                calls += n_calls
                # DDP averages gradients over ranks; each rank's share of the global token mean
                # is multiplied back by the world size so the sum is the one-process loss.
                denominator = global_tokens / self.world
                self.optimizer.zero_grad(set_to_none=True)
                for n_micro in range(n_calls):
                    dummy = n_micro >= len(micro)
                    rows = [[min(mini, key=lambda i: len(buffer.packed[i]))]] if dummy else micro[n_micro]
                    batch = buffer.collate(
                        rows, device=self.device, dtype=self.mask_dtype, mask=self.mask_kind
                    )
                    if dummy:
                        batch["loss_mask"] = torch.zeros_like(batch["loss_mask"])
                    forwarded += int(batch["lengths"].sum())
                    sync = contextlib.nullcontext()
                    if n_micro < n_calls - 1 and hasattr(self.module, "no_sync"):
                        sync = self.module.no_sync()
                    with sync:
                        loss, parts = self._loss(batch, denominator)
                        if not torch.isfinite(loss):
                            self._nan_stop(step, records, group_ids, f"loss is {loss.item()}")
                        loss.backward()
                    for key, value in parts.items():
                        sums[key] += float(value)
                    sums["tokens"] += float(batch["loss_mask"].sum())
                norm = torch.nn.utils.clip_grad_norm_(self.core.parameters(), c.grad_clip)
                if not torch.isfinite(norm):
                    self._nan_stop(step, records, group_ids, f"gradient norm is {float(norm)}")
                grad_norms.append(float(norm))
                self.optimizer.step()
                self.scheduler.step()
                self.engine_sync.after_optimizer_step()  # issue 11: new weights into the engine
        update_seconds = time.perf_counter() - update_start
        totals = self.all_reduce(np.array([sums[k] for k in sorted(sums)] + [forwarded, padding], np.float64))
        totals_by = dict(zip([*sorted(sums), "forwarded", "padding"], totals.tolist(), strict=True))
        tokens = max(totals_by["tokens"], 1.0)
        masks = buffer.loss_masks
        values = np.concatenate([v[m] for v, m in zip(buffer.arrays["values"], masks, strict=True)])
        returns = np.concatenate([r[m] for r, m in zip(buffer.arrays["returns"], masks, strict=True)])
        explained = float("nan")
        if self.core.value_head is not None and returns.var() > 0:
            explained = float(1.0 - np.var(returns - values) / np.var(returns))
        metrics.update(
            policy_loss=totals_by["pg"] / tokens,
            value_loss=totals_by["vf"] / tokens,
            entropy=totals_by["entropy"] / tokens,
            clipfrac=totals_by["clipped"] / tokens,
            dual_clipfrac=totals_by["dual_clipped"] / tokens,
            approx_kl=totals_by["approx_kl"] / tokens,
            value_clipfrac=totals_by["vf_clipped"] / tokens,
            kl_k3=totals_by["k3"] / tokens,
            explained_variance=explained,
            grad_norm=float(np.mean(grad_norms)),
            lr=float(self.scheduler.get_last_lr()[0]),
            train_tokens_per_s=totals_by["forwarded"] / max(update_seconds, 1e-9) / self.world,
            forwarded_tokens_per_generated_token=totals_by["forwarded"] / tokens / max(c.ppo_epochs, 1),
            micro_batches=float(calls),
            padding_micro_batches=totals_by["padding"],
        )
        self.engine_sync.resume()
        if self.engine_sync.active:
            metrics.update(
                weight_syncs=float(self.engine_sync.syncs - syncs_before),
                weight_sync_seconds=self.engine_sync.seconds - sync_seconds_before,
            )
        return metrics

    def _loss(self, batch: dict[str, Any], denominator: float) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        mask = batch["loss_mask"]
        with self.autocast:
            out = self.module(batch, need_entropy=True)
        advantages = batch["advantages"]
        if "tis_weights" in batch:
            # TIS (issue 11): a weight w > 0 times the per-token PPO term max(-A r, -A clip(r))
            # is that term with advantage w * A, so the existing loss function applies it.
            advantages = advantages * batch["tis_weights"]
        pg, pg_stats = L.policy_loss(
            out["logprobs"],
            batch["old_logprobs"],
            advantages,
            mask,
            c.clip_ratio,
            denominator,
            log_ratio_clamp=c.log_ratio_clamp,
            dual_clip=c.dual_clip,
        )
        entropy = L.masked_mean(out["entropy"], mask, denominator)
        loss = pg - c.entropy_coef * entropy
        parts = {"pg": float(pg.detach()) * denominator, "entropy": float(entropy.detach()) * denominator}
        parts.update({k: float(v) for k, v in pg_stats.items() if k != "ratio"})
        if self.core.value_head is not None:
            vf, vf_stats = L.value_loss(
                out["values"], batch["values"], batch["returns"], mask, c.value_clip, denominator
            )
            loss = loss + c.value_coef * vf
            parts["vf"] = float(vf.detach()) * denominator
            parts["vf_clipped"] = float(vf_stats["vf_clipped"])
        else:
            parts["vf"], parts["vf_clipped"] = 0.0, 0.0
        if c.kl_mode == "k3_loss" and c.kl_coef > 0:
            k3 = L.masked_mean(L.kl_k3(out["logprobs"], batch["ref_logprobs"]), mask, denominator)
            loss = loss + c.kl_coef * k3
            parts["k3"] = float(k3.detach()) * denominator
        else:
            parts["k3"] = 0.0
        return loss, parts

    def _nan_stop(
        self, step: int, records: Sequence[RolloutRecord], group_ids: Sequence[int], why: str
    ) -> None:
        path = os.path.join(self.config.out_dir, f"nan_batch_step{step}_rank{self.rank}.pkl")
        os.makedirs(self.config.out_dir, exist_ok=True)
        with open(path, "wb") as handle:
            pickle.dump(
                {"step": step, "records": list(records), "group_ids": list(group_ids), "why": why}, handle
            )
        raise FloatingPointError(f"non-finite training signal at step {step} ({why}); batch saved to {path}")

    # -- 5. checkpoints (agents/ppo/checkpoint.py) -------------------------------------------
    @property
    def checkpoint_dir(self) -> str:
        return os.path.join(self.config.out_dir, "checkpoints")

    @property
    def _fsdp(self) -> bool:
        return self.world > 1 and self.config.distributed == "fsdp2"

    def _model_state(self) -> dict[str, Any]:
        """The full model state on CPU (gathered under FSDP2, a collective): for tests/self-checks."""
        return checkpoint.full_model_state(self.core, sharded=self._fsdp)

    def save_checkpoint(self) -> str:
        """Sharded model + optimizer (DCP), scheduler, step (the data position), every rank's RNG."""
        meta = {
            "config": dataclasses.asdict(self.config),
            "model_path": self.model_path,
            "world": self.world,
            "reference": "initial policy" if self.config.kl_mode != "none" else None,
        }
        return checkpoint.save(
            self.checkpoint_dir,
            self.core,
            self.optimizer,
            self.scheduler,
            step=self.step,
            meta=meta,
            keep=self.config.keep_checkpoints,
        )

    def load_checkpoint(self, path: str | None = None) -> bool:
        """Resume from ``path`` (default: the run's latest checkpoint, else an old
        ``<out_dir>/checkpoint.pt``); False when there is none."""
        if path is None:
            path = self.checkpoint_dir
            legacy = os.path.join(self.config.out_dir, "checkpoint.pt")
            if checkpoint.latest_checkpoint(path) is None and os.path.exists(legacy):
                path = legacy
        state = checkpoint.load(path, self.core, self.optimizer, self.scheduler, sharded=self._fsdp)
        if state is None:
            return False
        self.step = int(state["step"])
        self.engine_sync.push()  # issue 11: the engine started from the initial weights
        return True

    def save_policy(self, folder: str | None = None) -> str:
        """The policy (LoRA merged) and tokenizer as a ``from_pretrained`` folder (evaluate.py).

        Under FSDP2 rank 0 writes it from parameters gathered one at a time (a collective)."""
        folder = folder or os.path.join(self.config.out_dir, "policy")
        if self._fsdp:
            if self.lora:  # before any collective, on every rank
                raise NotImplementedError("saving a merged LoRA policy under FSDP2 is not supported")
            checkpoint.save_hf_policy(self.core.policy, folder, tokenizer=self.tokenizer)
            return folder
        if self.is_main:
            policy = self.core.policy
            if self.lora:
                policy = policy.merge_and_unload()
            policy.save_pretrained(folder)
            self.tokenizer.save_pretrained(folder)
        if self.world > 1:
            dist.barrier()
        return folder

    # -- evaluation (agents/ppo/evaluation.py) ---------------------------------------------
    def evaluate(self, seeds: Sequence[int], greedy: bool = True) -> dict[str, float]:
        """Mean reward/EM/F1 on held-out episodes (:func:`agents.ppo.evaluation.evaluate`)."""
        return evaluation.evaluate(self, seeds, greedy)

    # -- the loop ----------------------------------------------------------------------------
    def train(self, *, resume: bool = False, stop_after: int | None = None) -> list[dict[str, float]]:
        """Run to ``total_steps`` (or ``stop_after`` steps of this call); returns per-step metrics."""
        c = self.config
        if resume:
            self.load_checkpoint()
        history: list[dict[str, float]] = []
        logger = MetricsLogger(c.out_dir) if self.is_main else None
        if self.is_main:
            with open(os.path.join(c.out_dir, "config.json"), "w", encoding="utf-8") as handle:
                json.dump(dataclasses.asdict(self.config), handle, indent=1, default=str)
        bar = None
        if self.is_main and c.progress:
            from tqdm import tqdm

            bar = tqdm(total=c.total_steps, initial=self.step, desc="ppo", dynamic_ncols=True)
        done_here = 0
        try:
            while self.step < c.total_steps and (stop_after is None or done_here < stop_after):
                episodes, groups, rollout_seconds = self.rollout(self.step)
                records = [e.record for e in episodes]
                metrics = self.update(records, groups, step=self.step)
                metrics.update(
                    evaluation.rollout_metrics(episodes, self.all_reduce, self.world, rollout_seconds)
                )
                metrics["tokens_per_s"] = metrics["train_tokens_per_s"]
                self.step += 1
                done_here += 1
                if c.eval_every and self.step % c.eval_every == 0:
                    metrics.update(self.evaluate(range(10**9, 10**9 + c.eval_episodes)))
                history.append(metrics)
                if logger is not None:
                    logger.log(self.step, metrics)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(reward=f"{metrics['reward']:.3f}", kl=f"{metrics['kl']:.4f}")
                if self.step % c.save_every == 0 or self.step == c.total_steps:
                    self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()
            if logger is not None:
                logger.close()
        return history

    def close(self) -> None:
        for env in self.envs:
            env.close()
