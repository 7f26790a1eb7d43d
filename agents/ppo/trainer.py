"""The masked-PPO training loop, in one readable class (CleanRL's shape, named sections).

Each step::

    1. rollout   every rank plays its share of the batch's prompts (batched generation)
    2. score     one exact packed forward: current log-probs (the rollout-vs-training gap),
                 values, and the frozen reference's log-probs
    3. advantage k1 KL in the reward (MEM1) or not, then GAE / turn-level / GRPO / GiGPO,
                 whitened over the global batch
    4. update    per mini-batch: micro-batches accumulate a token-level loss normalised by the
                 global token count (so 1 rank == N ranks on the same batch), one clipped
                 optimizer step; NaN/inf stops the run with the batch saved
    5. log/save  metrics to JSONL (+TensorBoard), checkpoint with RNG states and step

Run it with ``scripts/train_ppo.py`` (``torchrun --nproc_per_node=N scripts/train_ppo.py`` for
data parallel: gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import random
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
from agents.ppo import losses as L
from agents.ppo.buffer import RolloutBuffer
from agents.ppo.config import PPOConfig
from agents.ppo.metrics import MetricsLogger
from agents.ppo.model import ActorCritic
from agents.rollout import Episode, collect
from mem1_envs.trajectory import RolloutRecord

__all__ = ["PPOTrainer", "rng_state", "set_rng_state"]


def rng_state() -> dict[str, Any]:
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


class PPOTrainer:
    """Builds everything from a :class:`PPOConfig`; :meth:`train` runs the loop.

    ``policy_path`` overrides ``config.model`` (e.g. an SFT checkpoint); ``engine`` is an
    already-built engine object for ``rollout="vllm"`` (CPU tests: a fake with vLLM's shapes).
    """

    def __init__(self, config: PPOConfig, policy_path: str | None = None, *, engine: Any = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

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
        # -- models ----------------------------------------------------------------------------
        path = policy_path or config.model
        if path in (None, "tiny"):
            from agents.tiny_model import default_tiny_model

            path = default_tiny_model()
        self.model_path = path
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        torch.manual_seed(config.seed)  # identical value-head init on every rank
        attention = {"attn_implementation": "flex_attention"} if config.attention == "flex" else {}
        policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **attention)
        self.lora = config.lora_r > 0
        if self.lora:
            try:
                from peft import LoraConfig, get_peft_model
            except ImportError as error:  # pragma: no cover - depends on the install
                raise ImportError("LoRA needs peft: pip install mem1-envs[lora]") from error
            policy = get_peft_model(
                policy, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, target_modules="all-linear")
            )
        if config.gradient_checkpointing:
            # transformers 5 renamed it; older versions only have gradient_checkpointing_enable.
            enable = (
                getattr(policy, "activation_checkpointing_enable", None)
                or policy.gradient_checkpointing_enable
            )
            enable()
            policy.config.use_cache = False
        critic_model = None
        if config.uses_critic and config.critic == "separate":
            critic_model = AutoModelForCausalLM.from_pretrained(
                config.critic_model or path, dtype=torch.float32
            )
        self.core = ActorCritic(
            policy,
            critic=config.critic if config.uses_critic else "none",
            critic_model=critic_model,
            temperature=config.temperature,
        ).to(self.device)
        self.reference: ActorCritic | None = None
        if config.kl_mode != "none" and config.kl_coef > 0 and not self.lora:
            reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **attention)
            # The same selective packed forward as the policy's (LM head on loss positions only).
            self.reference = ActorCritic(reference, critic="none", temperature=config.temperature).to(
                self.device
            )
            self.reference.eval().requires_grad_(False)
        self.module: torch.nn.Module = self.core
        if self.world > 1:
            if config.distributed == "ddp":
                from torch.nn.parallel import DistributedDataParallel

                self.module = DistributedDataParallel(
                    self.core, device_ids=[self.device] if use_cuda else None
                )
            else:
                from torch.distributed.fsdp import fully_shard

                for layer in getattr(self.core.policy.get_decoder(), "layers", []):
                    fully_shard(layer)
                fully_shard(self.core)
                # One tiny forward through the root initialises FSDP's state as a whole; otherwise
                # generate() (which calls the layers, not the root) makes each layer its own root.
                from mem1_envs.trajectory import pack_exact
                from mem1_envs.trajectory_torch import collate

                with torch.no_grad():
                    self.core(collate([pack_exact([0], [([], [0])])], device=self.device))
                self.core.reshard()  # the root stays gathered after a forward: the optimizer needs the shards
        # -- optimisation ----------------------------------------------------------------------
        critic_params = [
            p for n, p in self.core.named_parameters() if not n.startswith("policy.") and p.requires_grad
        ]
        actor_params = [
            p for n, p in self.core.named_parameters() if n.startswith("policy.") and p.requires_grad
        ]
        groups = [{"params": actor_params, "lr": config.actor_lr}]
        if critic_params:
            groups.append({"params": critic_params, "lr": config.critic_lr})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        warmup = max(config.warmup_steps, 0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda n: min(1.0, (n + 1) / warmup) if warmup else 1.0
        )
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
        seeds, groups = self.prompt_seeds(step)
        start = time.perf_counter()
        self.core.eval()
        with self._gathered():
            episodes = collect(self.envs, self.sampler, seeds)
        self.core.train()
        return episodes, groups, time.perf_counter() - start

    @contextlib.contextmanager
    def _gathered(self) -> Any:
        """Under FSDP2, ``generate`` bypasses the root module's forward hooks: gather the root's
        own parameters (embeddings, final norm, head) for it; decoder layers gather themselves."""
        sharded = self.world > 1 and self.config.distributed == "fsdp2"
        if sharded:
            self.core.unshard()
        try:
            yield
        finally:
            if sharded:
                self.core.reshard()

    # -- 2. score ----------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, buffer: RolloutBuffer) -> dict[str, float]:
        """Current log-probs, values and reference log-probs of every episode (no grad)."""
        c = self.config
        current, values, reference = [], [], []
        self.core.eval()
        for start in range(0, len(buffer), c.micro_batch_episodes):
            indices = list(range(start, min(start + c.micro_batch_episodes, len(buffer))))
            batch = buffer.collate(indices, device=self.device, dtype=self.mask_dtype, mask=self.mask_kind)
            with self.autocast:
                out = self.core(batch)
                if self.reference is not None:
                    ref = self.reference(batch)["logprobs"]
                elif self.lora and c.kl_mode != "none" and c.kl_coef > 0:
                    with self.core.policy.disable_adapter():
                        ref = self.core(batch)["logprobs"]
                else:
                    ref = out["logprobs"]
            for row, i in enumerate(indices):
                n = len(buffer.packed[i])
                current.append(out["logprobs"][row, :n].float().cpu().numpy())
                values.append(out["values"][row, :n].float().cpu().numpy())
                reference.append(ref[row, :n].float().cpu().numpy())
        self.core.train()
        masks = buffer.loss_masks
        rollout = buffer.arrays["rollout_logprobs"]
        gap_sum, gap_max, gap_count = mismatch_stats(rollout, current, masks)
        # -- issue 11: log-prob semantics and TIS ------------------------------------------------
        # Engine log-probs that are not log_softmax(logits / T) (agents/engines/mismatch.py) are
        # never the PPO denominator: the trainer's recomputed ones are.
        exact = getattr(self.sampler.backend, "logprobs_exact", True)
        use_rollout = c.old_logprobs == "rollout" and exact
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
        sums = {k: 0.0 for k in ("pg", "vf", "entropy", "clipped", "approx_kl", "vf_clipped", "k3", "tokens")}
        grad_norms: list[float] = []
        update_start = time.perf_counter()
        forwarded = 0
        order_rng = np.random.default_rng([c.seed, step])
        for _epoch in range(c.ppo_epochs):
            order = (
                order_rng.permutation(len(buffer))
                if c.ppo_epochs > 1 or len(buffer) > local_mini
                else np.arange(len(buffer))
            )
            for mini_start in range(0, len(buffer), local_mini):
                mini = [int(i) for i in order[mini_start : mini_start + local_mini]]
                local_tokens = sum(int(buffer.packed[i].loss_mask.sum()) for i in mini)
                global_tokens = float(self.all_reduce(np.array([local_tokens], np.float64))[0])
                # DDP averages gradients over ranks; each rank's share of the global token mean
                # is multiplied back by the world size so the sum is the one-process loss.
                denominator = global_tokens / self.world
                self.optimizer.zero_grad(set_to_none=True)
                micro_starts = list(range(0, len(mini), c.micro_batch_episodes))
                for n_micro, micro_start in enumerate(micro_starts):
                    indices = mini[micro_start : micro_start + c.micro_batch_episodes]
                    batch = buffer.collate(
                        indices, device=self.device, dtype=self.mask_dtype, mask=self.mask_kind
                    )
                    forwarded += int(batch["lengths"].sum())
                    last = n_micro == len(micro_starts) - 1
                    sync = contextlib.nullcontext()
                    if not last and hasattr(self.module, "no_sync"):
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
        totals = self.all_reduce(np.array([sums[k] for k in sorted(sums)] + [forwarded], np.float64))
        totals_by = dict(zip([*sorted(sums), "forwarded"], totals.tolist(), strict=True))
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
            approx_kl=totals_by["approx_kl"] / tokens,
            value_clipfrac=totals_by["vf_clipped"] / tokens,
            kl_k3=totals_by["k3"] / tokens,
            explained_variance=explained,
            grad_norm=float(np.mean(grad_norms)),
            lr=float(self.scheduler.get_last_lr()[0]),
            train_tokens_per_s=totals_by["forwarded"] / max(update_seconds, 1e-9) / self.world,
            forwarded_tokens_per_generated_token=totals_by["forwarded"] / tokens / max(c.ppo_epochs, 1),
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
            out["logprobs"], batch["old_logprobs"], advantages, mask, c.clip_ratio, denominator
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

    # -- 5. checkpoints ----------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.config.out_dir, "checkpoint.pt")

    def _model_state(self) -> dict[str, Any]:
        if self.world > 1 and self.config.distributed == "fsdp2":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            return get_model_state_dict(
                self.core, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
            )
        return {k: v.detach().cpu() for k, v in self.core.state_dict().items()}

    @property
    def _fsdp(self) -> bool:
        return self.world > 1 and self.config.distributed == "fsdp2"

    def _optimizer_state(self) -> dict[str, Any]:
        """The optimizer state; under FSDP2 gathered in full (a collective), as the model's."""
        if self._fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            return get_optimizer_state_dict(
                self.core, self.optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
            )
        return self.optimizer.state_dict()

    def save_checkpoint(self) -> None:
        """Model, optimizer, scheduler, step (the data position) and every rank's RNG states."""
        states: list[Any] = [rng_state()]
        if self.world > 1:
            states = [None] * self.world
            dist.all_gather_object(states, rng_state())
        model_state = self._model_state()
        optimizer_state = self._optimizer_state()
        if self.is_main:
            os.makedirs(self.config.out_dir, exist_ok=True)
            payload = {
                "model": model_state,
                "optimizer": optimizer_state,
                "scheduler": self.scheduler.state_dict(),
                "step": self.step,
                "rng": states,
                "config": dataclasses.asdict(self.config),
                "model_path": self.model_path,
                "reference": "initial policy" if self.config.kl_mode != "none" else None,
            }
            tmp = self.checkpoint_path + ".tmp"
            torch.save(payload, tmp)
            os.replace(tmp, self.checkpoint_path)
        if self.world > 1:
            dist.barrier()

    def load_checkpoint(self, path: str | None = None) -> bool:
        """Resume from ``path`` (default: the run's checkpoint); False when there is none."""
        path = path or self.checkpoint_path
        if not os.path.exists(path):
            return False
        payload = torch.load(path, map_location="cpu", weights_only=False)
        if self._fsdp:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_model_state_dict,
                set_optimizer_state_dict,
            )

            options = StateDictOptions(full_state_dict=True)
            set_model_state_dict(self.core, payload["model"], options=options)
            set_optimizer_state_dict(self.core, self.optimizer, payload["optimizer"], options=options)
        else:
            self.core.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.step = int(payload["step"])
        set_rng_state(payload["rng"][self.rank if len(payload["rng"]) > self.rank else 0])
        self.engine_sync.push()  # issue 11: the engine started from the initial weights
        return True

    def save_policy(self, folder: str | None = None) -> str:
        """``save_pretrained`` the policy (LoRA merged) and tokenizer: loadable by evaluate.py."""
        folder = folder or os.path.join(self.config.out_dir, "policy")
        if self.world > 1 and self.config.distributed == "fsdp2":
            full = self._model_state()  # a collective: every rank gathers, rank 0 writes
            if self.is_main:
                if self.lora:
                    raise NotImplementedError("saving a merged LoRA policy under FSDP2 is not supported")
                state = {k[len("policy.") :]: v for k, v in full.items() if k.startswith("policy.")}
                self.core.policy.save_pretrained(folder, state_dict=state)
                self.tokenizer.save_pretrained(folder)
        elif self.is_main:
            policy = self.core.policy
            if self.lora:
                policy = policy.merge_and_unload()
            policy.save_pretrained(folder)
            self.tokenizer.save_pretrained(folder)
        if self.world > 1:
            dist.barrier()
        return folder

    # -- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, seeds: Sequence[int], greedy: bool = True) -> dict[str, float]:
        """Mean reward/EM/F1 on held-out (``split="test"``) episodes; RNG state left untouched."""
        c = self.config
        kwargs = {**c.env_options(), "split": "test"}
        envs = [gym.make(c.env_id, **kwargs) for _ in range(min(c.num_envs, len(seeds)))]
        policy = LLMPolicy(
            self.core.policy,
            self.tokenizer,
            protocol=kwargs.get("protocol", "mem1"),
            generation=GenerationConfig(
                max_new_tokens=c.max_new_tokens,
                temperature=c.temperature,
                top_p=c.top_p,
                do_sample=not greedy,
            ),
            backend=self.sampler.backend,  # issue 11: the same engine as the rollouts
        )
        saved = rng_state()
        self.core.eval()
        with self._gathered():
            episodes = collect(envs, policy, list(seeds), generation_seed=c.seed)
        self.core.train()
        set_rng_state(saved)
        return {
            "eval_reward": float(np.mean([e.reward for e in episodes])),
            "eval_em": float(np.mean([e.em for e in episodes])),
            "eval_f1": float(np.mean([e.f1 for e in episodes])),
        }

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
                generated = sum(e.generated_tokens for e in episodes)
                stats = self.all_reduce(
                    np.array(
                        [
                            sum(e.reward for e in episodes),
                            sum(e.em for e in episodes),
                            sum(e.f1 for e in episodes),
                            sum(e.turns for e in episodes),
                            max(e.peak_model_tokens for e in episodes),
                            generated,
                            len(episodes),
                        ],
                        np.float64,
                    )
                )
                n = max(stats[6], 1.0)
                metrics.update(
                    reward=stats[0] / n,
                    em=stats[1] / n,
                    f1=stats[2] / n,
                    turns=stats[3] / n,
                    peak_context_tokens=stats[4] / self.world,  # mean over ranks of each rank's max
                    rollout_tokens_per_s=stats[5] / max(rollout_seconds, 1e-9) / self.world,
                    tokens_per_s=metrics["train_tokens_per_s"],
                )
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
