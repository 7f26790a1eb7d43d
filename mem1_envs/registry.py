"""What the tools need per env, registered once by env id: candidate generators, scripted agents.

The wrappers, agents and scripts find an env's pieces here instead of testing its class name,
so a new env registers them once (next to ``gym.register``). A piece is a factory called with
the (unwrapped) env, given as a callable or as ``"module:attribute"`` (imported on first use,
so registering costs no import of ``wrappers`` or ``agents``):

* ``candidates(env, num_candidates) -> generator``: for ``wrappers.CandidateActions``;
* ``scripted_agent(env) -> Agent``: a reference agent (:mod:`agents.base`) for evaluation,
  SFT data and benchmarks.

An env is looked up by its class's ``env_id`` along the class hierarchy, so a subclass (the
browser shop) gets its parent's pieces unless it registers its own.

>>> register_parts("Toy-v0", scripted_agent="agents.scripted:MultiQAScriptedAgent")
>>> class Toy:
...     env_id = "Toy-v0"
>>> find_part(Toy(), "scripted_agent").__name__
'MultiQAScriptedAgent'
>>> find_part(Toy(), "candidates")
Traceback (most recent call last):
...
LookupError: no candidates registered for Toy (env ids tried: ['Toy-v0']); register one with mem1_envs.registry.register_parts
>>> del PARTS["Toy-v0"]
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

PART_NAMES = ("candidates", "scripted_agent")

PARTS: dict[str, dict[str, Callable[..., Any] | str]] = {}
"""env id -> {part name: factory or "module:attribute"}."""


def register_parts(env_id: str, **parts: Callable[..., Any] | str | None) -> None:
    """Register (or replace) pieces of ``env_id``: ``candidates=``, ``scripted_agent=``."""
    unknown = sorted(set(parts) - set(PART_NAMES))
    if unknown:
        raise TypeError(f"unknown parts {unknown}; known: {list(PART_NAMES)}")
    for name, factory in parts.items():
        if (
            factory is not None
            and not callable(factory)
            and not (isinstance(factory, str) and ":" in factory)
        ):
            raise TypeError(f"{name} must be a callable or a 'module:attribute' string, got {factory!r}")
    PARTS.setdefault(env_id, {}).update({k: v for k, v in parts.items() if v is not None})


def _env_ids(env: Any) -> list[str]:
    base = getattr(env, "unwrapped", env)
    ids = [getattr(cls, "env_id", "") for cls in type(base).__mro__]
    return list(dict.fromkeys(i for i in ids if i))


def find_part(env: Any, part: str) -> Callable[..., Any]:
    """The factory of ``part`` for ``env`` (LookupError naming the env when there is none)."""
    if part not in PART_NAMES:
        raise ValueError(f"part must be one of {PART_NAMES}, got {part!r}")
    ids = _env_ids(env)
    for env_id in ids:
        factory = PARTS.get(env_id, {}).get(part)
        if factory is None:
            continue
        if isinstance(factory, str):
            module, _, attribute = factory.partition(":")
            factory = importlib.import_module(module)
            for name in attribute.split("."):  # "Class.for_env" too
                factory = getattr(factory, name)
        return factory
    name = type(getattr(env, "unwrapped", env)).__name__
    raise LookupError(
        f"no {part} registered for {name} (env ids tried: {ids}); "
        "register one with mem1_envs.registry.register_parts"
    )
