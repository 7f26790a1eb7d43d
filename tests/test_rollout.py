"""The rollout collector: exact context ids, generated ids kept as produced, prompt split."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import mem1_envs  # noqa: E402, F401
from agents.llm_policy import GenerationConfig, LLMPolicy  # noqa: E402
from agents.rollout import collect  # noqa: E402
from agents.tiny_model import default_tiny_model  # noqa: E402

pytestmark = pytest.mark.train

KWARGS = {"world": "small", "max_turns": 3, "invalid_action": "penalize"}


@pytest.fixture(scope="module")
def policy() -> LLMPolicy:
    return LLMPolicy.from_pretrained(default_tiny_model(), generation=GenerationConfig(max_new_tokens=10))


class Recorder:
    """Wraps a policy and keeps every batch it was asked for and what it returned."""

    def __init__(self, policy):
        self.policy, self.calls = policy, []

    def encode(self, prompt, observation):
        return self.policy.encode(prompt, observation)

    def generate(self, inputs):
        outputs = self.policy.generate(inputs)
        self.calls.append((inputs, outputs))
        return outputs


def test_records_hold_exactly_what_the_model_saw_and_produced(policy):
    envs = [gym.make("MEM1-MultiQA-v0", **KWARGS) for _ in range(3)]
    recorder = Recorder(policy)
    episodes = collect(envs, recorder, seeds=[4, 5, 6], generation_seed=0)
    assert [e.seed for e in episodes] == [4, 5, 6]
    assert all(e.turns == 3 for e in episodes)  # a random model's actions are invalid: penalised, goes on
    assert [len(inputs) for inputs, _ in recorder.calls] == [3, 3, 3]  # one batched generation per turn
    for k, (inputs, outputs) in enumerate(recorder.calls):
        for row, episode in enumerate(episodes):
            turn = episode.record.turns[k]
            prompt_ids, context_ids = inputs[row]
            assert np.array_equal(episode.record.prompt_ids, prompt_ids)  # one shared prefix
            assert np.array_equal(turn.context_ids, context_ids)
            assert np.array_equal(turn.generated_ids, outputs[row].token_ids)  # never re-tokenized
            assert np.array_equal(turn.old_logprobs, outputs[row].logprobs)
            assert episode.texts[k] == outputs[row].text
            assert turn.reward == pytest.approx(-0.1)
    # Replaying the env with the recorded texts gives back the contexts the ids were made from.
    env = gym.make("MEM1-MultiQA-v0", **KWARGS)
    first, info = env.reset(seed=5)
    prompt = info["prompt"]
    for k, text in enumerate(episodes[1].texts[:-1]):
        observation, *_ = env.step(text)
        assert np.array_equal(
            policy.encode(prompt, observation)[1], episodes[1].record.turns[k + 1].context_ids
        )
    assert episodes[1].peak_model_tokens == max(
        len(episodes[1].record.prompt_ids) + len(t.context_ids) + len(t.generated_ids)
        for t in episodes[1].record.turns
    )


def test_collect_accepts_a_sync_vector_env_and_runs_in_waves(policy):
    vector = gym.vector.SyncVectorEnv([lambda: gym.make("MEM1-MultiQA-v0", world="small", max_turns=1)] * 2)
    episodes = collect(vector, policy, seeds=[0, 1, 2])
    assert len(episodes) == 3 and all(e.turns == 1 for e in episodes)
    vector.close()
    with pytest.raises(ValueError, match="at least one environment"):
        collect([], policy, seeds=[0])


def test_webshop_with_the_instruction_only_first_plays_to_the_end(policy):
    # The prompt every observation starts with leaves the instruction out; the first context has it.
    kwargs = {"n_products": 300, "instruction": "first", "max_turns": 3}
    envs = [gym.make("MEM1-WebShop-v0", **kwargs) for _ in range(2)]
    episodes = collect(envs, policy, seeds=[0, 1], generation_seed=0)
    assert [e.turns for e in episodes] == [3, 3]  # a random model never buys: truncated at the limit
    assert all(e.info["turn"] == 3 for e in episodes)
    text = policy.tokenizer.decode(episodes[0].record.turns[0].context_ids)
    assert "Instruction" in text
    assert "Instruction" not in policy.tokenizer.decode(episodes[0].record.prompt_ids)
    assert "Instruction" not in policy.tokenizer.decode(episodes[0].record.turns[1].context_ids)
    # The LLM agent (one env) reads the same prompt from info.
    env = gym.make("MEM1-WebShop-v0", **kwargs)
    agent = policy.as_agent()
    observation, info = env.reset(seed=0)
    done = False
    while not done:
        observation, _, terminated, truncated, info = env.step(agent.act(observation, info))
        done = terminated or truncated
    assert info["turn"] == 3
