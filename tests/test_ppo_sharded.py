"""2 gloo processes: ranks generate independently (episodes of 1 and 3 turns, an odd number of
evaluation seeds), the update equals one process's, under FSDP2 every model is sharded, and no
full fp32 copy of a model is ever resident on a rank.

All checks run in one pair of processes (``run_checks``): starting processes is the slow part.
"""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from agents.ppo.selfcheck import FIXED_TURNS_ID, run_checks, toy_config  # noqa: E402

pytestmark = pytest.mark.train

EVAL_SEEDS = [10**9, 10**9 + 1, 10**9 + 2]  # odd: rank 0 plays two, rank 1 one
KINDS = ("fsdp2", "ddp")


def _step_config(out_dir, kind):
    # Seeds 0, 1 (rank 0) play 1 turn, seeds 2, 3 (rank 1) play 3: under a per-step collective
    # rank 0 would reach the update's all_reduce while rank 1 still generates (60 s timeout).
    return toy_config(
        env_id=FIXED_TURNS_ID,
        env_kwargs=(("turns", (1, 1, 3, 3)),),
        critic="separate",  # every model kind: policy, critic trunk, reference
        gradient_checkpointing=True,
        actor_lr=1e-3,
        out_dir=str(out_dir),
        distributed=kind,
        reference_offload=True,  # FSDP2: the reference's shards in CPU memory (ignored by DDP)
    )


def _memory_config(out_dir):
    from agents.tiny_model import default_tiny_model

    # 71M parameters: 284 MB in fp32, large enough for the resident size to show a whole copy.
    path = default_tiny_model(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=8,
        num_attention_heads=12,
        num_key_value_heads=4,
    )
    return toy_config(
        model=path,
        env_id=FIXED_TURNS_ID,
        env_kwargs=(("turns", (1,)),),
        critic="separate",
        dtype="bfloat16",
        episodes_per_step=2,
        mini_batch_episodes=2,
        max_new_tokens=4,
        out_dir=str(out_dir),
        distributed="fsdp2",
    )


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux /proc to read peak memory")
    folder = tmp_path_factory.mktemp("sharded")
    configs = {kind: _step_config(folder / kind, kind) for kind in KINDS}
    jobs = [("memory", _memory_config(folder / "memory"))]
    jobs += [("step", configs[kind], EVAL_SEEDS) for kind in KINDS]
    results = run_checks(jobs, world=2)
    return {"memory": results[0], "configs": configs, **dict(zip(KINDS, results[1:], strict=True))}


@pytest.mark.parametrize("kind", KINDS)
def test_ranks_with_different_turns_never_wait_and_match_one_process(checks, kind):
    from agents.ppo.trainer import PPOTrainer

    ranks = checks[kind]
    assert [r["turns"] for r in ranks] == [[1, 1], [3, 3]]
    for r in ranks:
        assert r["seconds"] < 60, r["seconds"]  # rollout + evaluation + update, each rank
    # One process, the same batch (both ranks' episodes in rank order) and the same seeds.
    records = ranks[0]["records"] + ranks[1]["records"]
    groups = ranks[0]["groups"] + ranks[1]["groups"]
    one = PPOTrainer(checks["configs"][kind].replace(distributed="ddp"))
    evaluation = one.evaluate(EVAL_SEEDS)
    metrics = one.update(records, groups, step=0)
    state = {k: v.detach() for k, v in one.core.state_dict().items()}
    one.close()
    assert evaluation["eval_reward"] > 0  # the reward depends on the generated text
    for r in ranks:
        assert r["evaluation"] == pytest.approx(evaluation, abs=1e-12)
    for name, value in state.items():
        # The tolerance of tests/test_ppo_distributed.py (Adam's near-zero entries, see there).
        assert torch.allclose(value, ranks[0]["state"][name], atol=1e-5, rtol=0), (kind, name)
    for name in ("policy_loss", "value_loss", "entropy", "logprob_gap", "kl", "grad_norm"):
        assert metrics[name] == pytest.approx(ranks[0]["metrics"][name], rel=1e-4, abs=1e-7), (kind, name)
    assert metrics["grad_norm"] > 0


def test_every_decoder_layer_of_every_model_is_sharded(checks):
    for r in checks["fsdp2"]:
        report = r["sharding"]
        assert set(report) == {"policy", "critic", "reference"}
        for name, model in report.items():
            assert model["layers"] > 0 and model["fsdp_layers"] == model["layers"], name
            half = model["total_bytes"] / 2
            assert abs(model["local_bytes"] - half) <= 0.1 * half, (name, model)


def test_no_full_fp32_copy_of_any_model_is_resident_on_a_rank(checks):
    """Building policy + separate critic + reference under FSDP2 costs each rank about its shards
    (one checkpoint tensor at a time), and a rollout about one bf16 copy, never a full fp32 one."""
    for rank in checks["memory"]:
        report = rank["sharding"]
        fp32_model = report["policy"]["total_bytes"]  # the policy's parameters are fp32 master weights
        assert fp32_model > 250e6
        local = sum(model["local_bytes"] for model in report.values())
        assert local < 0.55 * sum(model["total_bytes"] for model in report.values())
        # Measured at 2 ranks: build ~ local + 50 MB, rollout ~ 0.5 x fp32 + 40-60 MB.
        assert rank["build_peak"] < local + 0.5 * fp32_model, (rank["build_peak"], local, fp32_model)
        assert rank["rollout_peak"] < fp32_model, (rank["rollout_peak"], fp32_model)
