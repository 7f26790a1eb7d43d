"""2 gloo processes: ranks generate independently (episodes of 1 and 3 turns, an odd number of
evaluation seeds), the update equals one process's, and under FSDP2 every model is sharded."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from agents.ppo.selfcheck import FIXED_TURNS_ID, run_step_check, toy_config  # noqa: E402

pytestmark = pytest.mark.train

EVAL_SEEDS = [10**9, 10**9 + 1, 10**9 + 2]  # odd: rank 0 plays two, rank 1 one


@pytest.mark.parametrize("kind", ["fsdp2", "ddp"])
def test_ranks_with_different_turns_never_wait_and_match_one_process(tmp_path, kind):
    from agents.ppo.trainer import PPOTrainer

    # Seeds 0, 1 (rank 0) play 1 turn, seeds 2, 3 (rank 1) play 3: under a per-step collective
    # rank 0 would reach the update's all_reduce while rank 1 still generates.
    config = toy_config(
        env_id=FIXED_TURNS_ID,
        env_kwargs=(("turns", (1, 1, 3, 3)),),
        critic="separate",  # every model kind: policy, critic trunk, reference
        gradient_checkpointing=True,
        actor_lr=1e-3,
        out_dir=str(tmp_path),
        distributed=kind,
    )
    ranks = run_step_check(config, EVAL_SEEDS, world=2)
    assert [r["turns"] for r in ranks] == [[1, 1], [3, 3]]
    for r in ranks:
        assert r["seconds"] < 60, r["seconds"]  # the process group's timeout is 60 s
    # One process, the same batch (both ranks' episodes in rank order) and the same seeds.
    records = ranks[0]["records"] + ranks[1]["records"]
    groups = ranks[0]["groups"] + ranks[1]["groups"]
    one = PPOTrainer(config.replace(distributed="ddp"))
    evaluation = one.evaluate(EVAL_SEEDS)
    metrics = one.update(records, groups, step=0)
    state = {k: v.detach() for k, v in one.core.state_dict().items()}
    one.close()
    for r in ranks:
        assert r["evaluation"] == pytest.approx(evaluation, abs=1e-12)
    moved = 0.0
    for name, value in state.items():
        # The tolerance of tests/test_ppo_distributed.py (Adam's near-zero entries, see there).
        assert torch.allclose(value, ranks[0]["state"][name], atol=1e-5, rtol=0), (kind, name)
    for name in ("policy_loss", "value_loss", "entropy", "logprob_gap", "kl", "grad_norm"):
        assert metrics[name] == pytest.approx(ranks[0]["metrics"][name], rel=1e-4, abs=1e-7), (kind, name)
    assert metrics["grad_norm"] > 0 and moved == 0.0
    if kind == "fsdp2":
        for r in ranks:
            report = r["sharding"]
            assert set(report) == {"policy", "critic", "reference"}
            for name, model in report.items():
                assert model["layers"] > 0 and model["fsdp_layers"] == model["layers"], name
                assert (
                    abs(model["local_bytes"] - model["total_bytes"] / 2) <= 0.1 * model["total_bytes"] / 2
                ), (
                    name,
                    model,
                )
