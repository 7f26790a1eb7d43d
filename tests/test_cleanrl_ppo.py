"""The CleanRL-style PPO script: plain torch over the wrapped env, no RL library."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from script_import import load_script

pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "cleanrl_ppo.py")


@pytest.mark.train
def test_cleanrl_ppo_smoke():
    command = [
        sys.executable,
        SCRIPT,
        "--total-timesteps",
        "128",
        "--num-steps",
        "16",
        "--eval-episodes",
        "3",
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "iteration 2/2" in done.stdout and "mean_reward_uniform_random" in done.stdout


@pytest.mark.train
def test_cleanrl_ppo_learns_above_uniform_random():
    module = load_script("cleanrl_ppo")
    result = module.run(module.parse_args(["--total-timesteps", "4096", "--seed", "0"]))
    assert result["mean_reward_trained"] >= result["mean_reward_uniform_random"] + 0.3, result


def test_cleanrl_ppo_rejects_bad_arguments(capsys):
    module = load_script("cleanrl_ppo")
    with pytest.raises(SystemExit):
        module.parse_args(["--num-envs", "0"])
    assert "--num-envs must be >= 1, got 0" in capsys.readouterr().err
