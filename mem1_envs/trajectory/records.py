"""Rollout records: what the collector fills, one per episode (:class:`RolloutRecord` of
:class:`TurnRecord`), the segment kinds of their tokens, and packing a batch of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mem1_envs.trajectory.packed import IdsLike, PackedTrajectory, _ids
from mem1_envs.trajectory.packing import EpisodeTooLongError, pack_exact

__all__ = [
    "KIND_ACTION",
    "KIND_OBSERVATION",
    "KIND_OTHER",
    "KIND_STATE",
    "RolloutRecord",
    "TurnRecord",
    "kind_spans",
    "pack_records",
]

# Segment kinds of a token inside a turn (context or generated).
KIND_OTHER = 0  # separators, chat-template tokens: anything the protocol does not name
KIND_STATE = 1  # internal state (<think>/<IS> block)
KIND_ACTION = 2  # action (<search>/<answer> block)
KIND_OBSERVATION = 3  # observation written by the environment (<information> block)


@dataclass(frozen=True, eq=False)
class TurnRecord:
    """One turn of a rollout, as token ids.

    Attributes:
        context_ids: the tokens that followed the prompt in this turn's model input.
        generated_ids: the tokens the model generated this turn.
        context_kinds: a ``KIND_*`` per context token (None: all ``KIND_OTHER``).
        generated_kinds: a ``KIND_*`` per generated token (None: all ``KIND_ACTION``).
        old_logprobs: the sampler's log-prob of each generated token (None: unknown).
        reward: a per-turn reward, placed on this turn's last generated token.
    """

    context_ids: np.ndarray
    generated_ids: np.ndarray
    context_kinds: np.ndarray | None = None
    generated_kinds: np.ndarray | None = None
    old_logprobs: np.ndarray | None = None
    reward: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "context_ids", _ids(self.context_ids, "context_ids"))
        object.__setattr__(self, "generated_ids", _ids(self.generated_ids, "generated_ids"))
        if self.generated_ids.size == 0:
            raise ValueError("generated_ids must hold at least one token, got 0")
        for name, ids in (("context_kinds", self.context_ids), ("generated_kinds", self.generated_ids)):
            kinds = getattr(self, name)
            if kinds is not None:
                kinds = np.asarray(kinds, dtype=np.int8)
                if kinds.shape != ids.shape:
                    raise ValueError(f"{name} must have shape {ids.shape}, got {kinds.shape}")
                object.__setattr__(self, name, kinds)
        if self.old_logprobs is not None:
            logprobs = np.asarray(self.old_logprobs, dtype=np.float32)
            if logprobs.shape != self.generated_ids.shape:
                raise ValueError(
                    f"old_logprobs must have shape {self.generated_ids.shape}, got {logprobs.shape}"
                )
            object.__setattr__(self, "old_logprobs", logprobs)

    def kinds(self) -> tuple[np.ndarray, np.ndarray]:
        """Context and generated kinds with the defaults filled in."""
        context = self.context_kinds
        if context is None:
            context = np.full(self.context_ids.shape, KIND_OTHER, np.int8)
        generated = self.generated_kinds
        if generated is None:
            generated = np.full(self.generated_ids.shape, KIND_ACTION, np.int8)
        return context, generated


def kind_spans(kinds: IdsLike) -> list[tuple[int, int, int]]:
    """``(kind, start, end)`` runs of equal kinds.

    >>> kind_spans([1, 1, 2, 3, 3])
    [(1, 0, 2), (2, 2, 3), (3, 3, 5)]
    """
    kinds = np.asarray(kinds)
    spans: list[tuple[int, int, int]] = []
    start = 0
    for index in range(1, kinds.size + 1):
        if index == kinds.size or kinds[index] != kinds[start]:
            spans.append((int(kinds[start]), start, index))
            start = index
    return spans


@dataclass(frozen=True, eq=False)
class RolloutRecord:
    """One finished episode as the rollout collector saw it.

    Attributes:
        prompt_ids: the task prompt's tokens (the start of every turn's input).
        turns: the turns in order.
        reward: the task reward, placed on the episode's last generated token.

    >>> record = RolloutRecord([7, 8], [TurnRecord([], [1, 2]), TurnRecord([1, 2, 9], [3])], reward=1.0)
    >>> packed = record.pack()
    >>> packed.rewards.tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    """

    prompt_ids: np.ndarray
    turns: tuple[TurnRecord, ...]
    reward: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt_ids", _ids(self.prompt_ids, "prompt_ids"))
        object.__setattr__(self, "turns", tuple(self.turns))
        if not self.turns:
            raise ValueError("a rollout record needs at least one turn, got 0")

    def pack(self, max_tokens: int | None = None) -> PackedTrajectory:
        """The exact packing of this episode (see :func:`pack_exact`)."""
        return pack_exact(
            self.prompt_ids,
            [(turn.context_ids, turn.generated_ids) for turn in self.turns],
            max_tokens=max_tokens,
            turn_rewards=[turn.reward for turn in self.turns],
            final_reward=self.reward,
            old_logprobs=[turn.old_logprobs for turn in self.turns],
        )

    def mem1_steps(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(state, action, observation)`` ids per turn, for :func:`pack_mem1`.

        Needs MEM1-shaped contexts: turn k+1's context is turn k's generated tokens followed by
        turn k's observation (separators count as part of the observation). The state is the
        leading ``KIND_STATE`` run of the generated tokens. The last turn's observation is empty.
        """
        steps = []
        for index, turn in enumerate(self.turns):
            if index == 0 and turn.context_ids.size:
                raise ValueError(
                    f"turn 0 of a MEM1 episode has no context, got {turn.context_ids.size} tokens"
                )
            _, kinds = turn.kinds()
            state_len = int(np.argmin(kinds == KIND_STATE)) if (kinds != KIND_STATE).any() else kinds.size
            observation = np.zeros(0, np.int64)
            if index + 1 < len(self.turns):
                following = self.turns[index + 1].context_ids
                size = turn.generated_ids.size
                if following.size < size or not np.array_equal(following[:size], turn.generated_ids):
                    raise ValueError(
                        f"turn {index + 1}'s context does not start with turn {index}'s generated tokens: "
                        "not a MEM1-shaped episode"
                    )
                observation = following[size:]
            steps.append((turn.generated_ids[:state_len], turn.generated_ids[state_len:], observation))
        return steps


def pack_records(
    records: Sequence[RolloutRecord], max_tokens: int | None = None
) -> tuple[list[PackedTrajectory], list[int]]:
    """Pack records exactly under the D7 rule; returns ``(packed, skipped)`` where ``skipped``
    lists the indices of records whose prompt plus final turn exceed ``max_tokens`` (report them).

    >>> record = RolloutRecord([1] * 5, [TurnRecord([], [2, 3])])
    >>> packed, skipped = pack_records([record, RolloutRecord([1], [TurnRecord([], [2])])], max_tokens=4)
    >>> len(packed), skipped
    (1, [0])
    """
    packed, skipped = [], []
    for index, record in enumerate(records):
        try:
            packed.append(record.pack(max_tokens=max_tokens))
        except EpisodeTooLongError:
            skipped.append(index)
    return packed, skipped
