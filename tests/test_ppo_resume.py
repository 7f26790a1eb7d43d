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
