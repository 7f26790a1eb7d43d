"""Entity renaming for behaviour cloning: every invented name becomes a word the policy writes.

A generated world's held-out questions ask about entities that no training question names, so
in scripted training episodes those names are read (in documents) but never written. A small
model trained from scratch then learns to write only names it has written before: asked about
an unseen entity, it searches for a memorised one. Renaming the invented words of an episode,
consistently in every token of it (prompt, observations, states, actions), to words drawn from
the whole vocabulary of invented words keeps the episode's logic intact (what to search, what to
copy where) while making every name a target somewhere and a memorised fact worthless. It uses
the worlds' names only, never a held-out question or answer. (Measured on the tiny reference
model, it did not raise held-out EM within a 20-minute budget: BENCHMARKS.md, issue 16.)

>>> from mem1_envs.trajectory import RolloutRecord, TurnRecord
>>> record = RolloutRecord([5, 7], [TurnRecord([7], [8, 5])])
>>> renamed = rename_record(record, np.array([5, 6, 8, 9]), np.random.default_rng(0))
>>> renamed.prompt_ids[0] == renamed.turns[0].generated_ids[1], renamed.prompt_ids[1]
(np.True_, np.int64(7))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np

from mem1_envs.trajectory import RolloutRecord

__all__ = ["episode_tokens", "invented_words", "name_token_ids", "rename_record"]


def invented_words(entity_names: Iterable[str]) -> set[str]:
    """The invented words of entity names: their words less the fixed ones (``The``,
    ``University``, company suffixes, film nouns).

    >>> sorted(invented_words(["The Vorla Gate", "Kesh Group", "Ama Ruun", "Tisk University"]))
    ['Ama', 'Kesh', 'Ruun', 'Tisk', 'Vorla']
    """
    from mem1_envs.qa.world import COMPANY_SUFFIXES, FILM_NOUNS

    fixed = {"The", "University", *COMPANY_SUFFIXES, *FILM_NOUNS}
    return {word for name in entity_names for word in name.split() if word not in fixed}


def name_token_ids(tokenizer: Any, entity_names: Iterable[str]) -> np.ndarray:
    """Sorted ids of the invented words that ``tokenizer`` writes as one token (the others,
    split into pieces, are left as they are)."""
    pieces = [
        tokenizer.encode(word, add_special_tokens=False) for word in sorted(invented_words(entity_names))
    ]
    return np.array(sorted({ids[0] for ids in pieces if len(ids) == 1}), dtype=np.int64)


def episode_tokens(record: RolloutRecord) -> np.ndarray:
    """Every token of ``record`` in order: the prompt, then each turn's context and response."""
    turns = [ids for turn in record.turns for ids in (turn.context_ids, turn.generated_ids)]
    return np.concatenate([record.prompt_ids, *turns])


def rename_record(record: RolloutRecord, name_ids: np.ndarray, rng: np.random.Generator) -> RolloutRecord:
    """``record`` with each of its ``name_ids`` tokens replaced by a distinct random one of
    ``name_ids``, the same replacement wherever the token stands (one token per name)."""
    present = np.intersect1d(episode_tokens(record), name_ids)
    replacements = rng.choice(name_ids, size=present.size, replace=False)
    mapping = dict(zip(present.tolist(), replacements.tolist(), strict=True))

    def renamed(ids: np.ndarray) -> np.ndarray:
        return np.array([mapping.get(token, token) for token in ids.tolist()], dtype=ids.dtype)

    turns = [
        dataclasses.replace(
            turn, context_ids=renamed(turn.context_ids), generated_ids=renamed(turn.generated_ids)
        )
        for turn in record.turns
    ]
    return dataclasses.replace(record, prompt_ids=renamed(record.prompt_ids), turns=tuple(turns))
