"""Entity renaming for training: every invented name becomes a word the policy must copy.

A generated world's held-out questions ask about entities that no training question names, so
in scripted training episodes those names are read (in documents) but never written. A small
model trained from scratch then learns to write only names it has written before: asked about
an unseen entity, it searches for a memorised one. Renaming the invented words of an episode
consistently, each to another word of the same role (a city to another city, a surname to
another surname: :func:`name_roles`), keeps the episode's logic intact (what to search, what to
copy where) while making every name a target somewhere and a memorised fact worthless. It uses
the worlds' names only, never a held-out question or answer. Two forms: :func:`rename_record`
renames a scripted episode's tokens for behaviour cloning, :class:`RenamedNames` renames what
an env shows (and maps actions back) for reinforcement learning. (Measured on the tiny
reference model, neither raised held-out EM within the 20-minute budgets: BENCHMARKS.md, issue 16.)

>>> from mem1_envs.trajectory import RolloutRecord, TurnRecord
>>> record = RolloutRecord([5, 7], [TurnRecord([7], [8, 5])])
>>> renamed = rename_record(record, [np.array([5, 6, 8, 9])], np.random.default_rng(0))
>>> renamed.prompt_ids[0] == renamed.turns[0].generated_ids[1], renamed.prompt_ids[1]
(np.True_, np.int64(7))
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from mem1_envs.trajectory import RolloutRecord

__all__ = [
    "RenamedNames",
    "episode_tokens",
    "name_roles",
    "name_token_ids",
    "rename_record",
]

_CAPITALISED_WORD = re.compile(r"\b[A-Z][a-z]+\b")


def name_roles(worlds: Iterable[Any]) -> list[list[str]]:
    """The invented words of the worlds' entity names, grouped by the role they play (a
    country, a city, a person's first name, a surname, a company...), each group sorted.
    Renaming within a group keeps what kind of thing a word names and changes only which one;
    a word that plays two roles (in two worlds) stays in the first.

    >>> from mem1_envs.qa.world import WORLD_SIZES, generate_world
    >>> roles = name_roles([generate_world(WORLD_SIZES["small"], 0)])
    >>> len(roles), sum(map(len, roles))
    (7, 890)
    """
    groups: dict[tuple[str, int], list[str]] = {}
    seen: set[str] = set()
    for world in worlds:
        for kind, items in world.entities.items():
            for item in items:
                for position, word in enumerate(_invented(item["name"])):
                    if word not in seen:
                        seen.add(word)
                        groups.setdefault((kind, position), []).append(word)
    return [sorted(words) for _, words in sorted(groups.items())]


def _invented(name: str) -> list[str]:
    """The invented words of an entity name: its words less the fixed ones (``The``,
    ``University``, company suffixes, film nouns).

    >>> _invented("The Vorla Gate"), _invented("Ama Ruun")
    (['Vorla'], ['Ama', 'Ruun'])
    """
    from mem1_envs.qa.world import COMPANY_SUFFIXES, FILM_NOUNS

    fixed = {"The", "University", *COMPANY_SUFFIXES, *FILM_NOUNS}
    return [word for word in name.split() if word not in fixed]


def name_token_ids(tokenizer: Any, words: Iterable[str]) -> np.ndarray:
    """Sorted ids of those of ``words`` (one role of :func:`name_roles`) that ``tokenizer``
    writes as one token (the others, split into pieces, are left as they are)."""
    pieces = [tokenizer.encode(word, add_special_tokens=False) for word in sorted(words)]
    return np.array(sorted({ids[0] for ids in pieces if len(ids) == 1}), dtype=np.int64)


def episode_tokens(record: RolloutRecord) -> np.ndarray:
    """Every token of ``record`` in order: the prompt, then each turn's context and response."""
    turns = [ids for turn in record.turns for ids in (turn.context_ids, turn.generated_ids)]
    return np.concatenate([record.prompt_ids, *turns])


def rename_record(
    record: RolloutRecord, groups: Sequence[np.ndarray], rng: np.random.Generator
) -> RolloutRecord:
    """``record`` with each token of a group of ``groups`` (disjoint arrays of name token ids,
    one per role: see :func:`name_roles`) replaced by a distinct random one of the same group,
    the same replacement wherever the token stands (one token per name)."""
    tokens = episode_tokens(record)
    mapping = {}
    for group in groups:
        present = np.intersect1d(tokens, group)
        replacements = rng.choice(group, size=present.size, replace=False)
        mapping.update(zip(present.tolist(), replacements.tolist(), strict=True))

    def renamed(ids: np.ndarray) -> np.ndarray:
        return np.array([mapping.get(token, token) for token in ids.tolist()], dtype=ids.dtype)

    turns = [
        dataclasses.replace(
            turn, context_ids=renamed(turn.context_ids), generated_ids=renamed(turn.generated_ids)
        )
        for turn in record.turns
    ]
    return dataclasses.replace(record, prompt_ids=renamed(record.prompt_ids), turns=tuple(turns))


class RenamedNames(gym.Wrapper):
    """``env`` played with its invented names renamed, for reinforcement learning: the policy
    sees a renamed world, the env scores the original one.

    Each reset draws, from ``(salt, seed)``, whether the episode is renamed (probability
    ``share``) and a random permutation of each group of ``groups`` (see :func:`name_roles`);
    observations and ``info["prompt"]`` show every word of a group through it, and each action
    is mapped back before the env reads it. The mapping is a bijection, so the env's rules,
    searches and rewards are untouched: a renamed answer earns exactly what the original would.
    A policy that recalls a memorised fact about a name is then wrong, and one that copies from
    the documents is right. The same seed gives the same renaming (a GRPO group shares its
    question and its names).

    >>> import mem1_envs
    >>> from mem1_envs.qa.world import WORLD_SIZES, generate_world
    >>> env = gym.make("MEM1-MultiQA-v0", world="small")
    >>> renamed = RenamedNames(env, name_roles([generate_world(WORLD_SIZES["small"], 0)]))
    >>> observation, info = renamed.reset(seed=3)
    >>> original, _ = env.reset(seed=3)
    >>> observation != original, len(observation.split()) == len(original.split())
    (True, True)
    """

    def __init__(self, env: gym.Env, groups: Iterable[Iterable[str]], share: float = 1.0, salt: int = 0):
        super().__init__(env)
        if not 0 <= share <= 1:
            raise ValueError(f"share must be in [0, 1], got {share}")
        self.groups: list[list[str]] = [sorted(set(group)) for group in groups]
        words = [word for group in self.groups for word in group]
        if len(words) != len(set(words)):
            raise ValueError("groups must not share a word (the renaming would not be a bijection)")
        self.share, self.salt = share, salt
        self.shown: dict[str, str] = {}
        self.hidden: dict[str, str] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        rng = np.random.default_rng(None if seed is None else [self.salt, seed])
        self.shown = {}
        if rng.random() < self.share:
            for group in self.groups:
                self.shown.update(zip(group, [group[i] for i in rng.permutation(len(group))], strict=True))
        self.hidden = {new: old for old, new in self.shown.items()}
        observation, info = self.env.reset(seed=seed, options=options)
        return self._show(observation), self._show_info(info)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        original = _map_words(action, self.hidden) if isinstance(action, str) else action
        observation, reward, terminated, truncated, info = self.env.step(original)
        return self._show(observation), reward, terminated, truncated, self._show_info(info)

    def _show(self, observation: Any) -> Any:
        return _map_words(observation, self.shown) if isinstance(observation, str) else observation

    def _show_info(self, info: dict) -> dict:
        return {**info, "prompt": self._show(info["prompt"])} if "prompt" in info else info


def _map_words(text: str, mapping: dict[str, str]) -> str:
    if not mapping:
        return text
    return _CAPITALISED_WORD.sub(lambda match: mapping.get(match.group(), match.group()), text)
