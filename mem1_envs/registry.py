"""What the tools need per env, registered once by env id: candidate generators, scripted agents.

The wrappers, agents and scripts find an env's pieces here instead of testing its class name,
so a new env registers them once (next to ``gym.register``). A piece is a factory called with
the (unwrapped) env, given as a callable or as ``"module:attribute"`` (imported on first use,
so registering costs no import of ``wrappers`` or ``agents``):

* ``candidates(env, num_candidates) -> generator``: for ``wrappers.CandidateActions``;
* ``scripted_agent(env) -> Agent``: a reference agent (:mod:`agents.base`) for evaluation,
  SFT data and benchmarks.

Scripts also list the envs and their arguments from here rather than by hand: :func:`env_ids`
(every id this package registers), :func:`env_fields` (an id's config dataclass fields and
defaults), :func:`env_kwargs` (the values an env takes, out of a script's options) and
:func:`parse_env_args` (``KEY=VALUE`` options checked against the config).

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

import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
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


# -- env ids and their arguments ----------------------------------------------------------------
def env_ids() -> list[str]:
    """The Gymnasium ids of this suite: every env of this package (registered by ``import
    mem1_envs``) and every other registered id with pieces here (:func:`register_parts`).

    >>> import mem1_envs
    >>> env_ids()
    ['MEM1-MultiQA-v0', 'MEM1-WebQA-Browser-v0', 'MEM1-WebQA-v0', 'MEM1-WebShop-Browser-v0', 'MEM1-WebShop-v0']
    """
    import gymnasium as gym

    return sorted(
        env_id
        for env_id, spec in gym.registry.items()
        if env_id in PARTS
        or (isinstance(spec.entry_point, str) and spec.entry_point.startswith("mem1_envs."))
    )


def env_config_class(env_id: str) -> type:
    """The config dataclass of ``env_id`` (its env class's ``config_class``).

    Importing the env's module imports none of its heavy extras (they load when an env is made).
    """
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    ids = env_ids()
    if env_id not in ids:
        raise ValueError(f"env_id must be one of {ids}, got {env_id!r}")
    entry_point = gym.spec(env_id).entry_point
    creator = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    config_class = getattr(creator, "config_class", None)
    if not (isinstance(config_class, type) and dataclasses.is_dataclass(config_class)):
        raise TypeError(f"{entry_point} has no config_class dataclass (the mem1_envs.base_env contract)")
    return config_class


def env_fields(env_id: str) -> dict[str, Any]:
    """``{field: default}`` of the config dataclass of ``env_id``.

    >>> env_fields("MEM1-WebShop-v0")["n_products"]
    10000
    """
    return {
        f.name: None if f.default is dataclasses.MISSING else f.default
        for f in dataclasses.fields(env_config_class(env_id))
    }


def env_kwargs(env_id: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The items of ``options`` that ``env_id`` takes (its config fields), leaving out None values.

    A script passes every option it has; each env takes the ones it knows.

    >>> env_kwargs("MEM1-WebShop-v0", {"n_products": 500, "world": "small", "max_turns": None})
    {'n_products': 500}
    """
    known = env_fields(env_id)
    return {name: value for name, value in options.items() if name in known and value is not None}


def parse_env_args(env_id: str, items: Sequence[str], reserved: Sequence[str] = ()) -> dict[str, Any]:
    """``KEY=VALUE`` items as env kwargs: keys are config fields, values parsed by the field's default.

    A bool field takes ``true``/``false``, an int or float field a number, a field without a
    default (None) a number when the text is one, ``none`` for None; the config then checks the
    values as the env would. ``reserved`` names fields a script sets with its own flags.

    >>> parse_env_args("MEM1-WebShop-v0", ["n_items=2", "instruction=first"])
    {'n_items': 2, 'instruction': 'first'}
    >>> parse_env_args("MEM1-WebShop-v0", ["n_items=0"])
    Traceback (most recent call last):
    ...
    ValueError: n_items must be >= 1, got 0
    """
    known = env_fields(env_id)
    kwargs: dict[str, Any] = {}
    for item in items:
        key, equals, text = str(item).partition("=")
        key = key.strip()
        if not equals or key not in known:
            raise ValueError(
                f"env argument must be KEY=VALUE with KEY one of {sorted(known)} ({env_id}), got {item!r}"
            )
        if key in reserved:
            raise ValueError(f"env argument {key!r} has its own option in this script, got {item!r}")
        kwargs[key] = _parse_value(key, text.strip(), known[key])
    env_config_class(env_id)(**kwargs)  # the env's own checks ("X must be Y, got Z"), early
    return kwargs


def _parse_value(key: str, text: str, default: Any) -> Any:
    if isinstance(default, bool):
        if text.lower() not in ("true", "false"):
            raise ValueError(f"{key} must be true or false, got {text!r}")
        return text.lower() == "true"
    if default is None and text.lower() == "none":
        return None
    for parse in (int, float):
        if isinstance(default, parse) or default is None:
            try:
                return parse(text)
            except ValueError:
                if default is not None:
                    raise ValueError(f"{key} must be {parse.__name__}, got {text!r}") from None
    return text
