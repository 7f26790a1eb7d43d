"""TRL GRPOTrainer on MEM1-MultiQA-v0 through wrappers.trl: two CPU steps with the tiny model."""

from __future__ import annotations

import json
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
from script_import import load_script

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
trl = pytest.importorskip("trl")

import mem1_envs  # noqa: E402, F401
from agents.tiny_model import default_tiny_model  # noqa: E402
from wrappers.trl import EpisodeRollout, prompt_for  # noqa: E402

pytestmark = pytest.mark.train

ENV_ID = "MEM1-MultiQA-v0"
# Penalised invalid actions keep a random model's episodes going for both turns.
ENV = {"world": "small", "num_objectives": 1, "max_turns": 2, "invalid_action": "penalize"}


def higher_token_ids(completion_ids, **_):
    """A stand-in signal (mean token id) so a random model's groups have non-zero advantages."""
    return [float(np.mean(ids)) / 2048.0 for ids in completion_ids]


def _replay(seed, texts):
    """The Gymnasium env's summed reward for these responses on this seed."""
    env = gym.make(ENV_ID, **ENV)
    env.reset(seed=seed)
    total, done = 0.0, False
    for text in texts:
        assert not done
        _, reward, terminated, truncated, _ = env.step(text)
        total += float(reward)
        done = terminated or truncated
    assert done
    return total


def test_two_grpo_steps_train_on_the_exact_turn_samples(tmp_path):
    # The example script builds the trainer; three slots for two-turn episodes, so every
    # episode also fills a padding slot; one prompt and two episodes per step.
    argv = [
        "--output_dir", str(tmp_path), "--env_kwargs", json.dumps(ENV), "--turn_slots", "3",
        "--episodes_per_prompt", "2", "--per_device_train_batch_size", "6", "--num_seeds", "4",
        "--first_seed", "3", "--max_completion_length", "8", "--max_steps", "2", "--learning_rate", "1e-2",
        "--logging_steps", "1", "--report_to", "none", "--use_cpu", "--bf16", "False", "--save_strategy", "no",
        "--seed", "0",
    ]  # fmt: skip
    trainer, rollout = load_script("train_trl_grpo").build(argv, extra_rewards=(higher_token_ids,))
    T = rollout.turn_slots
    assert T == 3 and trainer.num_generations == 6
    captured = []
    generate_and_score = trainer._generate_and_score_completions

    def spy(inputs):
        out = generate_and_score(inputs)
        captured.append(out)
        return out

    trainer._generate_and_score_completions = spy
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.train()
    changed = [k for k, v in trainer.model.named_parameters() if not torch.equal(before[k], v.detach())]
    assert changed, "no parameter moved"

    assert len(captured) == len(rollout.calls) == 2
    padding = 0
    logs = [entry for entry in trainer.state.log_history if "rewards/env_reward/mean" in entry]
    assert len(logs) == 2
    for call, out, log in zip(rollout.calls, captured, logs, strict=True):
        assert len(call.episodes) == 2 and len(call.rows) == 2 * T
        # The env's own rewards: each episode's responses replayed through a fresh Gymnasium env.
        for episode in call.episodes:
            assert episode.reward == pytest.approx(_replay(episode.seed, episode.texts))
        env_mean = float(np.mean([e.reward for e in call.episodes]))
        assert log["rewards/env_reward/mean"] == pytest.approx(env_mean, abs=1e-6)
        # Each training row: prompt ids == the turn's recorded context ids, completion == generated ids.
        for i, row in enumerate(call.rows):
            prompt = out["prompt_ids"][i][out["prompt_mask"][i].bool()].tolist()
            completion = out["completion_ids"][i][out["completion_mask"][i].bool()].tolist()
            assert prompt == row.prompt_ids and completion == row.completion_ids
            episode = call.episodes[i // T]
            loss_mask = out["completion_mask"][i] * out["tool_mask"][i]  # what TRL's loss counts
            if row.turn >= 0:
                turn = episode.record.turns[row.turn]
                assert prompt == [*episode.record.prompt_ids.tolist(), *turn.context_ids.tolist()]
                assert completion == turn.generated_ids.tolist()
                assert loss_mask[: len(completion)].all()
            else:  # a padding slot never reaches the loss
                assert not loss_mask.any()
                padding += 1
        # The two episodes of one group share a seed; turn rows of one episode share its group id.
        assert len({row.seed for row in call.rows}) == 1
        ids = [row.episode_id for row in call.rows]
        assert ids == [ids[0]] * T + [ids[T]] * T and ids[0] != ids[T]
    assert padding >= 4  # at least one per episode
    rollout.close()


def test_rollout_checks_the_batch_layout_and_pads_collective_calls():
    """The vLLM path against a stand-in with TRL's VLLMGeneration.generate shapes (no vLLM on CPU)."""
    from transformers import AutoTokenizer

    folder = default_tiny_model()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    rollout = EpisodeRollout(ENV_ID, {**ENV, "max_turns": 3})
    stop = tokenizer.encode("</search>", add_special_tokens=False)
    body = tokenizer.encode("<think>x</think><search>Oslo", add_special_tokens=False)

    class FakeVLLM:
        def __init__(self):
            self.calls = []

        def generate(self, prompts, images, num_generations):
            self.calls.append(len(prompts))
            # Sampled past the stop tag: the rollout must cut after it.
            ids = [body + stop + body for _ in prompts]
            return prompts, ids, [[[-0.5]] * len(row) for row in ids], None

    fake = FakeVLLM()
    trainer = SimpleNamespace(
        num_generations=3,
        processing_class=tokenizer,
        use_vllm=True,
        vllm_generation=fake,
        model=None,
        args=SimpleNamespace(max_completion_length=16, temperature=1.0, top_p=1.0),
        accelerator=SimpleNamespace(num_processes=2, process_index=0),
    )
    out = rollout([prompt_for(5, "x")] * 3, trainer)
    assert out["completion_ids"][0] == body + stop and out["logprobs"][0] == [-0.5] * len(body + stop)
    # Every turn searched, so the episode used all 3 slots; 2 processes: exactly 3 collective calls.
    assert out["turn"] == [0, 1, 2] and len(fake.calls) == 3
    with pytest.raises(ValueError, match="num_generations must be a multiple of turn_slots=3"):
        rollout([prompt_for(5, "x")] * 3, SimpleNamespace(**{**vars(trainer), "num_generations": 4}))
    with pytest.raises(ValueError, match="multiple of turn_slots=3, got 4 prompts"):
        rollout([prompt_for(5, "x")] * 4, trainer)
    with pytest.raises(ValueError, match="must start with 'episode seed"):
        rollout(["no seed"] * 3, trainer)
    hf = SimpleNamespace(**{**vars(trainer), "use_vllm": False})
    hf.args = SimpleNamespace(**{**vars(trainer.args), "top_k": 5})
    with pytest.raises(
        ValueError, match="top_k is not supported by the transformers rollout path, got top_k=5"
    ):
        rollout([prompt_for(5, "x")] * 3, hf)
    with pytest.raises(ValueError, match="turn_slots must be >= the env's turn limit 2, got 1"):
        EpisodeRollout(ENV_ID, ENV, turn_slots=1)
    rollout.close()
