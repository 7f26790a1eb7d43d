"""The LLM rollout collector plays MEM1-WebQA-v0 to the end with the tiny model."""

from __future__ import annotations

import gymnasium as gym
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import mem1_envs  # noqa: F401
from agents.llm_policy import GenerationConfig, LLMPolicy
from agents.rollout import collect
from agents.tiny_model import default_tiny_model
from mem1_envs.webqa.actions import TAGS

pytestmark = pytest.mark.train


def test_one_episode_runs_to_the_end():
    # The webqa tag set is passed as a TagSet: its closing action tags stop a response.
    policy = LLMPolicy.from_pretrained(
        default_tiny_model(), protocol=TAGS, generation=GenerationConfig(max_new_tokens=12)
    )
    env = gym.make("MEM1-WebQA-v0", world="small", num_objectives=2, max_turns=4)
    episodes = collect([env], policy, seeds=[0], generation_seed=0)
    episode = episodes[0]
    assert episode.turns == len(episode.texts) == len(episode.record.turns) >= 1
    assert episode.info["turn"] == episode.turns  # ended by an answer, a terminating rule or the limit
    assert episode.turns == 4 or "em" in episode.info
