"""2 gloo processes (DDP, and FSDP2) make the same update as one process on the same global batch."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from agents.ppo.config import preset  # noqa: E402
from agents.ppo.selfcheck import run_ddp_update, run_single_update, toy_batch  # noqa: E402

pytestmark = pytest.mark.train


def test_two_gloo_processes_equal_one_process(tmp_path):
    config = preset(
        "tiny-cpu",
        env_kwargs=(("world", "small"), ("max_turns", 2), ("invalid_action", "penalize")),
        num_envs=1,
        episodes_per_step=4,
        mini_batch_episodes=4,
        micro_batch_episodes=1,  # 4 accumulated micro-batches in one process, 2 per rank in two
        max_new_tokens=8,
        actor_lr=1e-3,
        out_dir=str(tmp_path),
        progress=False,
    )
    records, groups = toy_batch(config, [1.0, 0.0, 0.5, 0.0])
    one = run_single_update(config, records, groups)
    moved = max(float((one["state"][k] - v).abs().max()) for k, v in one["initial"].items())
    assert moved > 1e-4  # the update did something
    for kind in ("ddp", "fsdp2"):
        two = run_ddp_update(dataclasses.replace(config, distributed=kind), records, groups, world=2)
        for name, value in one["state"].items():
            assert torch.allclose(value, two["state"][name], atol=1e-6, rtol=0), (kind, name)
        for name in ("policy_loss", "value_loss", "entropy", "clipfrac", "logprob_gap", "kl"):
            assert one["metrics"][name] == pytest.approx(two["metrics"][name], rel=1e-4, abs=1e-7), (
                kind,
                name,
            )
