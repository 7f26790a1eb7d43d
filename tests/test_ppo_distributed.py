"""2 gloo processes (DDP, and FSDP2) make the same update as one process on the same global batch."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from agents.ppo.selfcheck import run_ddp_update, run_single_update, toy_batch, toy_config  # noqa: E402

pytestmark = pytest.mark.train


def test_two_gloo_processes_equal_one_process(tmp_path):
    config = toy_config(actor_lr=1e-3, out_dir=str(tmp_path))
    records, groups = toy_batch(config, [1.0, 0.0, 0.5, 0.0])
    one = run_single_update(config, records, groups)
    moved = max(float((one["state"][k] - v).abs().max()) for k, v in one["initial"].items())
    assert moved > 1e-4  # the update did something
    for kind in ("ddp", "fsdp2"):
        two = run_ddp_update(dataclasses.replace(config, distributed=kind), records, groups, world=2)
        # Adam divides by sqrt(v): float-order noise in a near-zero gradient entry (FSDP2 reduces
        # in shards) shows up as ~1e-3 of the 1e-3 step, seen up to 1.3e-6; 1e-5 is 1% of a step.
        for name, value in one["state"].items():
            assert torch.allclose(value, two["state"][name], atol=1e-5, rtol=0), (kind, name)
        # Adam is scale-invariant, so the gradient norm is what shows a rank-averaging mistake.
        for name in ("policy_loss", "value_loss", "entropy", "clipfrac", "logprob_gap", "kl", "grad_norm"):
            assert one["metrics"][name] == pytest.approx(two["metrics"][name], rel=1e-4, abs=1e-7), (
                kind,
                name,
            )


@pytest.mark.parametrize("kind", ["ddp", "fsdp2"])
def test_torchrun_two_processes_train_checkpoint_and_resume(tmp_path, kind):
    """The whole loop under torchrun (gloo): rollouts per rank, metrics, checkpoint, resume."""
    import json
    import os
    import subprocess
    import sys

    from agents.ppo.selfcheck import free_port

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
    ]
    args = [os.path.join(root, "scripts", "train_ppo.py"), "--config", "tiny-cpu", "--out-dir", str(tmp_path)]
    args += ["--progress", "false", "--env-kwargs", "world=small,max_turns=2,invalid_action=penalize"]
    args += [
        "--num-envs",
        "2",
        "--episodes-per-step",
        "4",
        "--mini-batch-episodes",
        "4",
        "--micro-batch-episodes",
        "1",
    ]
    args += ["--max-new-tokens", "8", "--save-every", "1", "--distributed", kind]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for steps, extra in ((2, []), (3, ["--resume"])):
        command = [*torchrun, f"--master_port={free_port()}", *args, "--total-steps", str(steps), *extra]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [line["step"] for line in lines] == [1, 2, 3]  # the resumed run went on from step 2
    step = tmp_path / "checkpoints" / "step_00000003"
    assert (tmp_path / "checkpoints" / "latest").read_text() == step.name
    assert torch.load(step / "trainer_state.pt", weights_only=False)["step"] == 3
    assert all((step / f"rng_rank{r}.pt").exists() for r in range(2))  # one RNG state per rank
    assert (tmp_path / "policy" / "model.safetensors").exists()
