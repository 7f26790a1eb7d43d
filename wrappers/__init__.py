"""Gymnasium wrappers that plug mem1-envs into numeric RL libraries (stable-baselines3, CleanRL, ...).

- :class:`TokenizeObservation`: text observation -> fixed-shape token ids + attention mask.
- :class:`CandidateActions`: ``Discrete(K)`` actions over candidate responses, ``action_masks()``.
- :class:`HistoryMode`: switch a running env between the ``mem1``, ``window`` and ``full`` contexts.
- :class:`RecordMemoryStatistics`: peak/mean context tokens and dependency per episode.

Stack them text-side first: ``TokenizeObservation(CandidateActions(env))``.
"""

from __future__ import annotations

from wrappers.candidate_actions import CandidateActions
from wrappers.candidates_multiqa import Candidate, MultiQACandidates
from wrappers.candidates_shop import WebShopCandidates
from wrappers.history_mode import HistoryMode
from wrappers.memory_statistics import RecordMemoryStatistics
from wrappers.tokenize_observation import TokenizeObservation
from wrappers.tokenizer import ByteTokenizer, WordTokenizer, default_tokenizer

__all__ = [
    "ByteTokenizer",
    "Candidate",
    "CandidateActions",
    "HistoryMode",
    "MultiQACandidates",
    "RecordMemoryStatistics",
    "TokenizeObservation",
    "WebShopCandidates",
    "WordTokenizer",
    "default_tokenizer",
]
