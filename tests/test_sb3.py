"""stable-baselines3 and sb3-contrib on the wrapped envs: checker, vector envs, learning, the script."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile

import gymnasium as gym
import numpy as np
import pytest
from script_import import load_script

import mem1_envs  # noqa: F401
from wrappers import CandidateActions, HistoryMode, RecordMemoryStatistics, TokenizeObservation

pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_wrapped(num_objectives: int = 1, memory: str = "mem1") -> gym.Env:
    env = gym.make("MEM1-MultiQA-v0", world="small", num_objectives=num_objectives)
    env = RecordMemoryStatistics(HistoryMode(env, mode=memory))
    return TokenizeObservation(CandidateActions(env, num_candidates=12), max_length=128)


@pytest.mark.parametrize(("num_objectives", "memory"), [(1, "mem1"), (3, "full")])
def test_sb3_check_env_passes(num_objectives, memory):
    from stable_baselines3.common.env_checker import check_env

    check_env(make_wrapped(num_objectives, memory), warn=True)


def test_sb3_check_env_passes_on_the_shop():
    from stable_baselines3.common.env_checker import check_env

    env = RecordMemoryStatistics(gym.make("MEM1-WebShop-v0", n_products=500))
    check_env(TokenizeObservation(CandidateActions(env, num_candidates=24), max_length=512), warn=True)


def test_maskable_ppo_reads_masks_through_the_wrappers():
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = DummyVecEnv([functools.partial(make_wrapped, 2)] * 2)
    assert is_masking_supported(venv)
    venv.reset()
    masks = get_action_masks(venv)
    assert masks.shape == (2, 12) and masks[:, 0].all() and not masks.all()


@pytest.mark.slow
def test_sb3_subproc_vec_env_runs_four_wrapped_envs():
    from stable_baselines3.common.vec_env import SubprocVecEnv

    venv = SubprocVecEnv([functools.partial(make_wrapped, 1)] * 4, start_method="spawn")
    try:
        observations = venv.reset()
        assert observations["input_ids"].shape == (4, 128)
        finished = 0
        for _ in range(4):
            masks = np.stack(venv.env_method("action_masks"))
            observations, rewards, dones, infos = venv.step(np.where(masks[:, 1], 1, 0))
            finished += int(dones.sum())
        assert finished >= 4  # every env answered (1 or 2 hops) and was reset
        assert all("episode_memory" in info for info, done in zip(infos, dones, strict=True) if done)
    finally:
        venv.close()


@pytest.mark.slow
def test_sb3_subproc_vec_env_runs_four_text_envs():
    """SB3's vector env carries the unwrapped text env too (no SB3 algorithm can learn on Text)."""
    from stable_baselines3.common.vec_env import SubprocVecEnv

    # "module:id" makes a spawned worker import mem1_envs (which registers the id) itself.
    make = functools.partial(gym.make, "mem1_envs:MEM1-MultiQA-v0", world="small")
    venv = SubprocVecEnv([make] * 4, start_method="spawn")
    try:
        observations = venv.reset()
        assert len(observations) == 4 and "Answer the following questions" in observations[0]
        actions = np.array(["<think></think><search>born</search>"] * 4, dtype=object)
        observations, rewards, dones, infos = venv.step(actions)
        assert all("<information>[HINT]" in o for o in observations) and not dones.any()
        assert all(info["searches"] == 1 for info in infos)
    finally:
        venv.close()


@pytest.mark.train
def test_maskable_ppo_learns_above_uniform_random():
    """1 objective, small world, 4096 steps: the trained policy beats random candidates clearly."""
    train_sb3 = load_script("train_sb3")
    result = train_sb3.train(train_sb3.parse_args(["--timesteps", "4096", "--seed", "0", "--no-progress"]))
    assert result["eval_episodes"] == 100
    assert result["mean_reward_uniform_random"] < 0.5
    assert result["mean_reward_trained"] >= result["mean_reward_uniform_random"] + 0.3, result


@pytest.mark.train
def test_train_sb3_script_smoke_both_algos(tmp_path, monkeypatch):
    temp = tmp_path / "tmp"  # this test's temp dir (the subprocess inherits TMPDIR)
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # torch's own cache
    train_sb3 = load_script("train_sb3")
    path = tmp_path / "model.zip"
    tiny = ["--timesteps", "64", "--n-steps", "16", "--batch-size", "16", "--eval-episodes", "3"]
    result = train_sb3.main([*tiny, "--algo", "maskable_ppo", "--save", str(path), "--num-objectives", "2"])
    assert path.exists() and result["model_path"] == str(path)
    assert 0.0 <= result["mean_reward_trained"] <= 2.0
    shop = ["--env", "MEM1-WebShop-v0", "--num-candidates", "24", "--max-length", "512", "--no-progress"]
    result = train_sb3.main([*tiny, *shop])
    assert -1.5 <= result["mean_reward_trained"] <= 1.0  # invalid clicks cost 0.1 each, 15 turns
    # Plain PPO from the command line, on SB3's SubprocVecEnv and the raw-ids MLP policy.
    command = [sys.executable, os.path.join(ROOT, "scripts", "train_sb3.py"), *tiny, "--algo", "ppo"]
    command += ["--vec-env", "subproc", "--n-envs", "2", "--policy", "mlp", "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"algo": "ppo"' in done.stdout and "mean_reward_uniform_random" in done.stdout
    assert list(temp.iterdir()) == []  # no SB3-<date> log folder, no unsaved model left behind


def test_train_sb3_script_rejects_bad_arguments(capsys):
    train_sb3 = load_script("train_sb3")
    with pytest.raises(SystemExit):
        train_sb3.parse_args(["--algo", "dqn"])
    assert "--algo must be one of ('maskable_ppo', 'ppo'), got 'dqn'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_sb3.parse_args(["--timesteps", "0"])
    assert "--timesteps must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_sb3.parse_args(["--env", "CartPole-v1"])  # registered in Gymnasium, not one of the suite's
    assert "--env must be one of ['MEM1-MultiQA-v0'," in capsys.readouterr().err
    shop = train_sb3.parse_args(["--env", "MEM1-WebShop-v0", "--n-products", "300"])
    assert train_sb3.env_kwargs(shop, "train") == {"n_products": 300}  # the shop has no world or split
