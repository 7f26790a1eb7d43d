"""Every MEM1 env id as a SkyRL-gym text env, registered in ``skyrl_gym``'s registry.

Importing this module registers ``MEM1-MultiQA-v0``, ``MEM1-WebShop-v0`` and
``MEM1-WebShop-Browser-v0`` with ``skyrl_gym.register`` (string entry points, so SkyRL's Ray
workers can rebuild them). ``skyrl_gym.make(env_id, env_config=..., extras=...)`` then gives a
:class:`MEM1TextEnv` (a ``BaseTextEnv``) with SkyRL's contract:

* ``env_config``: the Gymnasium env's ``gym.make`` keyword arguments (``world``, ``memory``, ...).
* ``extras``: one dataset row's fields: ``seed`` (or ``extra_info.seed``) picks the episode;
  ``max_turns`` (SkyRL's generator sets it) is the turn limit unless ``env_config`` has one.
* ``init(prompt)`` resets the env and returns ``([{"role": "user", "content": observation}], metadata)``:
  the env owns the prompt, the dataset's prompt is replaced.
* ``step(response)`` returns ``BaseTextEnvStepOutput``: ``reward`` (the Gymnasium reward of that
  turn), ``done`` (terminated or truncated), ``observations`` and ``metadata`` (``context``: the
  env's whole next context; ``terminated``, ``truncated``, ``info``: the Gymnasium info).

``observations`` depends on ``env_config["observation"]``:

* ``"context"`` (default): the env's whole next context, MEM1-pruned under ``memory="mem1"``. A
  generator that starts every turn from this message (one sample per turn) trains on exactly
  the bounded context. SkyRL's stock ``SkyRLGymGenerator`` instead *appends* observations to
  its conversation, so with it the model sees the earlier turns too: the memory is not bounded.
* ``"new"``: only the text the env appended to its previous context (its rendering of the
  action, then the result), for append-only generators. Needs ``memory="full"``; when the env
  rewrites its context (the shop's first search replaces the start screen) the whole context
  is sent and ``metadata["context_reset"]`` is True.

>>> import pytest; skyrl_gym = pytest.importorskip("skyrl_gym")
>>> env = skyrl_gym.make("MEM1-MultiQA-v0", env_config={"world": "small"}, extras={"seed": 3})
>>> messages, metadata = env.init([{"role": "user", "content": "ignored"}])
>>> messages[0]["content"].startswith("You") and metadata["seed"] == 3
True
>>> out = env.step("<think>x</think><answer>Oslo</answer>")
>>> out["done"], out["reward"], out["observations"]
(True, 0.0, [])
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

import mem1_envs  # noqa: F401 - registers the Gymnasium ids

try:
    from skyrl_gym.envs.base_text_env import BaseTextEnv, BaseTextEnvStepOutput
except ImportError as error:  # the class below then refuses to build; importing stays safe
    _SKYRL_ERROR: ImportError | None = error
    BaseTextEnv = object  # type: ignore[assignment,misc]
    BaseTextEnvStepOutput = dict  # type: ignore[assignment,misc]
else:
    _SKYRL_ERROR = None

__all__ = ["ENV_IDS", "MEM1TextEnv", "dataset_rows", "register_envs"]

ENV_IDS = ("MEM1-MultiQA-v0", "MEM1-WebShop-v0", "MEM1-WebShop-Browser-v0")
_OWN_KEYS = ("observation",)


def _to_dict(config: Any) -> dict[str, Any]:
    """A plain dict from None, a mapping or an omegaconf DictConfig."""
    if config is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(config, DictConfig):
            return dict(OmegaConf.to_container(config, resolve=True))  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - omegaconf comes with skyrl-gym
        pass
    if not hasattr(config, "items"):
        raise TypeError(f"env_config must be a mapping, got {type(config).__name__}: {config!r}")
    return dict(config)


class MEM1TextEnv(BaseTextEnv):  # type: ignore[misc,valid-type]
    """One MEM1 Gymnasium env behind SkyRL-gym's ``BaseTextEnv`` (see the module docstring)."""

    def __init__(self, env_config: Any = None, extras: dict[str, Any] | None = None, *, env_id: str):
        if _SKYRL_ERROR is not None:
            raise ImportError("MEM1TextEnv needs skyrl-gym: pip install 'mem1-envs[skyrl]'") from _SKYRL_ERROR
        super().__init__()
        config = _to_dict(env_config)
        extras = dict(extras or {})
        self.observation_mode = config.pop("observation", "context")
        if self.observation_mode not in ("context", "new"):
            raise ValueError(f"observation must be 'context' or 'new', got {self.observation_mode!r}")
        if self.observation_mode == "new" and config.get("memory", "mem1") != "full":
            raise ValueError(
                f"observation='new' needs memory='full' (a pruned context cannot be appended), "
                f"got memory={config.get('memory', 'mem1')!r}"
            )
        if config.get("max_turns") is None and extras.get("max_turns") is not None:
            config["max_turns"] = int(extras["max_turns"])
        info = extras.get("extra_info") or {}
        seed = extras.get("seed", info.get("seed") if hasattr(info, "get") else None)
        self.seed = None if seed is None else int(seed)
        self.env_id = env_id
        self.env = gym.make(env_id, **config)
        self.max_turns = int(self.env.unwrapped.config.turn_limit)
        self.total_reward = 0.0
        self.context = ""
        self.last_info: dict[str, Any] = {}

    def init(self, prompt: Any) -> tuple[list[dict[str, str]], dict[str, Any]]:
        """Reset on the row's seed; the env's first observation replaces the dataset prompt."""
        observation, info = self.env.reset(seed=self.seed)
        self.turns, self.total_reward = 0, 0.0
        self.context, self.last_info = observation, info
        return [{"role": "user", "content": observation}], {"seed": self.seed, "env_id": self.env_id}

    def step(self, action: str) -> BaseTextEnvStepOutput:
        """One Gymnasium step; the reward and the end of the episode are the env's own."""
        self.turns += 1
        previous = self.context
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.total_reward += float(reward)
        self.context, self.last_info = observation, info
        done = bool(terminated or truncated)
        metadata: dict[str, Any] = {
            "context": observation,
            "terminated": bool(terminated),
            "truncated": bool(truncated),
            "info": info,
        }
        content = observation
        if self.observation_mode == "new":
            metadata["context_reset"] = not observation.startswith(previous)
            if not metadata["context_reset"]:
                content = observation[len(previous) :]
        return BaseTextEnvStepOutput(
            observations=[] if done else [{"role": "user", "content": content}],
            reward=float(reward),
            done=done,
            metadata=metadata,
        )

    def get_metrics(self) -> dict[str, Any]:
        """Per-episode metrics SkyRL averages: reward, turns, EM, peak context tokens."""
        return {
            "reward": self.total_reward,
            "turns": self.turns,
            "em": float(sum(self.last_info.get("em", [0.0]))),
            "peak_context_tokens": int(self.last_info.get("peak_context_tokens", 0)),
        }

    def close(self) -> None:
        self.env.close()


def dataset_rows(env_id: str, seeds: list[int], **env_kwargs: Any) -> list[dict[str, Any]]:
    """SkyRL dataset rows, one per episode seed: ``prompt`` (the first observation, which ``init``
    rebuilds from the seed anyway; SkyRL filters rows by its length), ``env_class`` and ``seed``.

    Write them with ``pandas.DataFrame(rows).to_parquet(path)`` for SkyRL's ``data.train_data``.
    """
    if len(seeds) == 0:
        raise ValueError("seeds must not be empty, got 0 seeds")
    env = gym.make(env_id, **env_kwargs)
    rows = [
        {
            "data_source": "mem1-envs",
            "prompt": [{"role": "user", "content": env.reset(seed=int(seed))[0]}],
            "env_class": env_id,
            "seed": int(seed),
        }
        for seed in seeds
    ]
    env.close()
    return rows


def register_envs(env_ids: tuple[str, ...] = ENV_IDS) -> list[str]:
    """Register ``env_ids`` with ``skyrl_gym`` (ids already there are left alone); returns them."""
    import skyrl_gym

    for env_id in env_ids:
        if env_id not in gym.registry:
            raise ValueError(f"env_id must be a registered Gymnasium id, got {env_id!r}")
        if env_id not in skyrl_gym.registry:
            skyrl_gym.register(id=env_id, entry_point=f"{__name__}:MEM1TextEnv", kwargs={"env_id": env_id})
    return list(env_ids)


if _SKYRL_ERROR is None:
    register_envs()
