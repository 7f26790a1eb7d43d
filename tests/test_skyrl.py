"""SkyRL-gym: every env id through skyrl_gym's own make/init/step gives the Gymnasium env's rewards."""

from __future__ import annotations

import gymnasium as gym
import pytest

skyrl_gym = pytest.importorskip("skyrl_gym")

from skyrl_gym.envs.base_text_env import BaseTextEnv  # noqa: E402

import mem1_envs  # noqa: E402, F401
import wrappers.skyrl  # noqa: E402 - registers the ids with skyrl_gym
from agents.scripted import MultiQAScriptedAgent  # noqa: E402
from agents.scripted_shop import WebShopScriptedAgent  # noqa: E402

CASES = [
    ("MEM1-MultiQA-v0", {"world": "small", "num_objectives": 2}, MultiQAScriptedAgent),
    ("MEM1-MultiQA-v0", {"world": "small", "num_objectives": 1, "memory": "full"}, MultiQAScriptedAgent),
    ("MEM1-WebShop-v0", {"n_products": 200}, WebShopScriptedAgent),
]


def _gym_episode(env_id, kwargs, agent, seed):
    env = gym.make(env_id, **kwargs)
    observation, info = env.reset(seed=seed)
    agent.reset(seed=seed)
    responses, rewards, observations, done = [], [], [observation], False
    while not done:
        responses.append(agent.act(observation, info))
        observation, reward, terminated, truncated, info = env.step(responses[-1])
        rewards.append(float(reward))
        observations.append(observation)
        done = terminated or truncated
    env.close()
    return responses, rewards, observations


@pytest.mark.parametrize(("env_id", "kwargs", "agent_class"), CASES)
def test_skyrl_episode_matches_the_gymnasium_env(env_id, kwargs, agent_class):
    assert env_id in skyrl_gym.registry
    for seed in (0, 1, 2):
        responses, rewards, observations = _gym_episode(env_id, kwargs, agent_class(), seed)
        env = skyrl_gym.make(env_id, env_config=dict(kwargs), extras={"extra_info": {"seed": seed}})
        assert isinstance(env, BaseTextEnv) and env.spec.id == env_id
        messages, metadata = env.init([{"role": "user", "content": "the dataset prompt"}])
        assert messages == [{"role": "user", "content": observations[0]}] and metadata["seed"] == seed
        # The scripted agent reads the observations skyrl_gym hands out, turn by turn.
        agent, observation, info = agent_class(), messages[-1]["content"], {}
        agent.reset(seed=seed)
        got, done = [], False
        while not done:
            response = agent.act(observation, info)
            assert response == responses[len(got)]
            out = env.step(response)
            assert set(out) >= {"observations", "reward", "done", "metadata"}
            got.append(out["reward"])
            done, info = out["done"], out["metadata"]["info"]
            assert out["metadata"]["context"] == observations[len(got)]
            if not done:
                observation = out["observations"][-1]["content"]
                assert observation == observations[len(got)]
            else:
                assert out["observations"] == []
        assert got == rewards and sum(got) > 0  # the scripted agent scores on these seeds
        assert env.get_metrics()["reward"] == sum(rewards) and env.get_metrics()["turns"] == len(rewards)
        env.close()


def test_dataset_rows_feed_init():
    rows = wrappers.skyrl.dataset_rows("MEM1-MultiQA-v0", [4, 5], world="small")
    assert [r["seed"] for r in rows] == [4, 5] and {r["env_class"] for r in rows} == {"MEM1-MultiQA-v0"}
    row = rows[1]
    env = skyrl_gym.make(row["env_class"], env_config={"world": "small"}, extras={"seed": row["seed"]})
    assert env.init(row["prompt"])[0] == row["prompt"]


def test_append_mode_sends_only_the_new_text():
    kwargs = {"world": "small", "num_objectives": 2, "memory": "full"}
    responses, rewards, observations = _gym_episode("MEM1-MultiQA-v0", kwargs, MultiQAScriptedAgent(), 1)
    env = skyrl_gym.make("MEM1-MultiQA-v0", env_config={**kwargs, "observation": "new"}, extras={"seed": 1})
    conversation, _ = env.init([])
    for k, response in enumerate(responses[:-1]):
        out = env.step(response)
        assert out["reward"] == rewards[k] and not out["metadata"]["context_reset"]
        conversation += out["observations"]
    # Appending the new texts rebuilds the env's whole (full-memory) context.
    assert "".join(m["content"] for m in conversation) == observations[len(responses) - 1]
    # SkyRL's generator passes its max_turns in extras: it is the turn limit unless env_config sets one.
    assert skyrl_gym.make("MEM1-MultiQA-v0", env_config=kwargs, extras={"max_turns": 9}).max_turns == 9
    assert (
        skyrl_gym.make(
            "MEM1-MultiQA-v0", env_config={**kwargs, "max_turns": 3}, extras={"max_turns": 9}
        ).max_turns
        == 3
    )
    with pytest.raises(ValueError, match="needs memory='full'"):
        skyrl_gym.make("MEM1-MultiQA-v0", env_config={"world": "small", "observation": "new"}, extras={})
