"""Kill-and-resume: 4 steps straight equal 2 steps, a fresh process resuming, then 2 more."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from agents.ppo.config import preset  # noqa: E402
from agents.ppo.trainer import PPOTrainer  # noqa: E402

pytestmark = pytest.mark.train


def _config(out_dir):
    return preset(
        "tiny-cpu",
        env_kwargs=(("world", "small"), ("max_turns", 2), ("invalid_action", "penalize")),
        num_envs=2,
        episodes_per_step=2,
        mini_batch_episodes=2,
        micro_batch_episodes=2,
        max_new_tokens=8,
        total_steps=4,
        save_every=1,
        warmup_steps=3,  # the scheduler's position must survive the restart too
        actor_lr=1e-3,
        out_dir=str(out_dir),
        progress=False,
    )


def test_resume_continues_exactly(tmp_path):
    straight = PPOTrainer(_config(tmp_path / "a"))
    history = straight.train()
    final = {k: v.detach().clone() for k, v in straight.core.state_dict().items()}
    straight.close()

    first = PPOTrainer(_config(tmp_path / "b"))
    first.train(stop_after=2)
    first.close()
    del first  # the "killed" process: nothing but the checkpoint survives
    second = PPOTrainer(_config(tmp_path / "b"))
    assert second.load_checkpoint() and second.step == 2
    second.step = 0  # train(resume=True) must restore it from the checkpoint again
    resumed_history = second.train(resume=True)
    assert second.step == 4 and len(resumed_history) == 2
    for name, value in second.core.state_dict().items():
        assert torch.allclose(value, final[name], atol=1e-6, rtol=0), name
    for a, b in zip(history[2:], resumed_history, strict=True):
        assert a["reward"] == b["reward"] and a["lr"] == b["lr"]
        assert a["policy_loss"] == pytest.approx(b["policy_loss"], abs=1e-6)
    second.close()


def _dcp_config(out_dir):
    return _config(out_dir).replace(episodes_per_step=2, num_envs=1, total_steps=3, distributed="fsdp2")


def _record_rollouts(trainer, log):
    """Keep the generated ids of every rollout (the batch each step trains on)."""
    rollout = trainer.rollout

    def recorded(step):
        episodes, groups, seconds = rollout(step)
        log[step] = [[t.generated_ids.tolist() for t in e.record.turns] for e in episodes]
        return episodes, groups, seconds

    trainer.rollout = recorded


def _local_state(trainer):
    """This rank's own shards of every parameter (FSDP2 DTensors)."""
    from torch.distributed.tensor import DTensor

    return {
        k: (v.to_local() if isinstance(v, DTensor) else v).detach().clone()
        for k, v in trainer.core.state_dict().items()
    }


def _dcp_worker(rank, world, phase, root):
    import os

    import torch.distributed as dist

    if phase == "first":
        straight = PPOTrainer(_dcp_config(os.path.join(root, "a")))
        log = {}
        _record_rollouts(straight, log)
        history = straight.train()
        torch.save(
            {"rollouts": log, "history": history, "local": _local_state(straight)},
            os.path.join(root, f"straight{rank}.pt"),
        )
        straight.close()
        killed = PPOTrainer(_dcp_config(os.path.join(root, "b")))
        killed.train(stop_after=2)
        if rank == 0:  # a crash while saving step 3: a partial folder that "latest" never names
            os.makedirs(os.path.join(root, "b", "checkpoints", "step_00000003"))
            open(os.path.join(root, "b", "checkpoints", "step_00000003", "__0_0.distcp"), "wb").close()
        dist.barrier()
        os._exit(0)  # killed: no clean-up, only the files survive
    resumed = PPOTrainer(_dcp_config(os.path.join(root, "b")))
    log = {}
    _record_rollouts(resumed, log)
    history = resumed.train(resume=True)
    folder = resumed.save_policy()  # rank 0 writes it from parameters gathered one at a time
    from agents.ppo.checkpoint import save_hf_policy

    sharded = save_hf_policy(resumed.core.policy, os.path.join(root, "sharded"), max_shard_bytes=100_000)
    full = resumed._model_state()
    torch.save(
        {"rollouts": log, "history": history, "local": _local_state(resumed), "full": full, "policy": folder},
        os.path.join(root, f"resumed{rank}.pt"),
    )
    assert sharded
    resumed.close()


def test_dcp_kill_and_resume_under_two_fsdp2_processes(tmp_path):
    """Sharded checkpoints: 3 steps straight == 2 steps, killed, a fresh pair of processes resumes."""
    import os

    from gloo_spawn import run_gloo
    from transformers import AutoModelForCausalLM

    run_gloo(_dcp_worker, "first", str(tmp_path), world=2, timeout=300)
    run_gloo(_dcp_worker, "second", str(tmp_path), world=2, timeout=300)
    root = tmp_path / "b" / "checkpoints"
    assert (root / "latest").read_text() == "step_00000003"
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("step_")) == [
        "step_00000002",
        "step_00000003",
    ]
    step3 = root / "step_00000003"
    shards = [(step3 / f"__{r}_0.distcp").stat().st_size for r in range(2)]
    assert max(shards) < 0.75 * sum(shards)  # each rank wrote its own half, not the whole model
    assert (step3 / "rng_rank0.pt").exists() and (step3 / "rng_rank1.pt").exists()
    for rank in range(2):
        straight = torch.load(tmp_path / f"straight{rank}.pt", weights_only=False)
        resumed = torch.load(tmp_path / f"resumed{rank}.pt", weights_only=False)
        assert list(resumed["rollouts"]) == [2]
        assert resumed["rollouts"][2] == straight["rollouts"][2], rank  # the same next batch
        assert len(resumed["history"]) == 1
        a, b = straight["history"][2], resumed["history"][0]
        assert a["reward"] == b["reward"] and a["lr"] == b["lr"]
        assert a["policy_loss"] == pytest.approx(b["policy_loss"], abs=1e-6)
        for name, value in straight["local"].items():
            assert torch.allclose(resumed["local"][name], value, atol=1e-6, rtol=0), (rank, name)
    # The saved policies are plain from_pretrained folders holding the gathered parameters.
    full = torch.load(tmp_path / "resumed0.pt", weights_only=False)["full"]
    assert len(list((tmp_path / "sharded").glob("model-*-of-*.safetensors"))) > 1
    for folder in (tmp_path / "b" / "policy", tmp_path / "sharded"):
        model = AutoModelForCausalLM.from_pretrained(str(folder))
        for name, value in model.state_dict().items():
            assert torch.equal(value, full["policy." + name]), (folder, name)
    assert os.path.exists(tmp_path / "b" / "policy" / "tokenizer.json")


def test_an_old_single_file_checkpoint_still_loads(tmp_path):
    from agents.ppo import checkpoint

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda n: 0.5)
    old = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": 7,
        "rng": [checkpoint.rng_state()],
    }
    torch.save(old, tmp_path / "checkpoint.pt")
    expected = torch.rand(3)
    fresh = torch.nn.Linear(3, 2)
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    state = checkpoint.load(str(tmp_path / "checkpoint.pt"), fresh, fresh_optimizer, None)
    assert state["step"] == 7 and torch.equal(torch.rand(3), expected)  # the RNG is restored too
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters(), strict=True))
    assert torch.equal(
        fresh_optimizer.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
    )
