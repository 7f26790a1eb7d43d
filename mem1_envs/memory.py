"""Context policies: what the agent sees each turn, and how many tokens that costs.

A policy turns the task prompt and the turns so far into the agent's next context::

    mem1   (bounded, default)  prompt | state(t-1) action(t-1) | observation(t-1)
    window (last k turns)      prompt | turn t-k ... turn t-1
    full   (ReAct history)     prompt | turn 0 ... turn t-1

where a turn is the agent's canonical response (internal state + action) followed by the
environment's observation. Under ``mem1`` the context is held under a token budget: when it
does not fit, the internal state is cut first (keeping it compact is the agent's job, and the
signal RL trains on), then the observation; the prompt and the action are never cut.

Token counting is pluggable (:func:`make_token_counter`). The default counter is
deterministic and needs nothing installed: one token per word (a run of letters, digits or
``_``) and one per other non-space character. It counts roughly like a BPE tokenizer on
English text.

>>> count = make_token_counter(None)
>>> count("Doc 1(Title: Oslo) is a city.")
11
>>> policy = ContextPolicy("mem1", max_tokens=64)
>>> context = policy.build("Answer: q1?", [Turn("<think>s</think>", "<search>q</search>", "<info>d</info>")])
>>> context.text
'Answer: q1?\\n<think>s</think>\\n<search>q</search>\\n<info>d</info>'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mem1_envs.validation import show

TokenCounter = Callable[[str], int]

POLICIES = ("mem1", "window", "full")

_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """The default token count: words and single punctuation characters."""
    return len(_TOKEN.findall(text))


def make_token_counter(counter: Any) -> TokenCounter:
    """Turn ``None`` (default counter), a callable, or a tokenizer with ``encode`` into a counter."""
    if counter is None:
        return count_tokens
    if isinstance(counter, str | bytes):  # str.encode is no tokenizer: load the tokenizer first
        raise TypeError(
            f"token_counter must be None, a callable or a tokenizer object, got {show(counter, True)}"
        )
    encode = getattr(counter, "encode", None)
    if callable(encode):

        def count_with_tokenizer(text: str) -> int:
            try:
                return len(encode(text, add_special_tokens=False))
            except TypeError:
                return len(encode(text))

        return count_with_tokenizer
    if callable(counter):
        return counter
    raise TypeError(
        f"token_counter must be None, a callable or a tokenizer with encode(), got {show(counter, True)}"
    )


def truncate_to_tokens(text: str, max_tokens: int, counter: TokenCounter = count_tokens) -> str:
    """The longest prefix of ``text`` that counts at most ``max_tokens`` tokens.

    Exact for the default counter; for any other counter a binary search over prefix lengths
    (log2(len(text)) calls), which is exact for counters that grow with the prefix.

    >>> truncate_to_tokens("one two three", 2)
    'one two'
    """
    if max_tokens <= 0:
        return ""
    if counter is count_tokens:
        for index, match in enumerate(_TOKEN.finditer(text)):
            if index == max_tokens:
                return text[: match.start()].rstrip()
        return text
    if counter(text) <= max_tokens:
        return text
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if counter(text[:middle]) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return text[:low]


@dataclass(frozen=True)
class Turn:
    """One finished turn: the agent's canonical state and action, and the observation."""

    state: str
    action: str
    observation: str

    @property
    def response(self) -> str:
        return self.state + "\n" + self.action


@dataclass(frozen=True)
class Context:
    """A built context: its text, token count, and what had to be cut to fit."""

    text: str
    tokens: int
    cut: tuple[str, ...] = field(default_factory=tuple)


def _join(parts: Sequence[str]) -> str:
    return "\n".join(part for part in parts if part)


@dataclass(frozen=True)
class ContextPolicy:
    """Build the agent's context from the prompt and the finished turns.

    Attributes:
        name: ``"mem1"``, ``"window"`` or ``"full"``.
        max_tokens: token budget of the whole context under ``mem1`` (None: unbounded).
        window: how many past turns ``window`` keeps.
        counter: token counter (see :func:`make_token_counter`).
    """

    name: str = "mem1"
    max_tokens: int | None = None
    window: int = 1
    counter: TokenCounter = count_tokens

    def __post_init__(self) -> None:
        if self.name not in POLICIES:
            raise ValueError(f"memory policy must be one of {POLICIES}, got {self.name!r}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 or None, got {self.max_tokens}")

    def kept_turns(self, turns: Sequence[Turn]) -> Sequence[Turn]:
        """The turns this policy keeps in the next context."""
        if self.name == "full":
            return turns
        keep = 1 if self.name == "mem1" else self.window
        return turns[-keep:]

    def build(self, prompt: str, turns: Sequence[Turn]) -> Context:
        kept = self.kept_turns(turns)
        parts = [prompt]
        for turn in kept:
            parts += [turn.state, turn.action, turn.observation]
        text = _join(parts)
        tokens = self.counter(text)
        if self.name != "mem1" or self.max_tokens is None or tokens <= self.max_tokens or not kept:
            return Context(text, tokens)
        return self._fit(prompt, kept[-1])

    def _fit(self, prompt: str, turn: Turn) -> Context:
        """Cut the state, then the observation, until prompt + turn fits ``max_tokens``."""
        assert self.max_tokens is not None
        parts = {"state": turn.state, "observation": turn.observation, "action": turn.action}
        cut = []
        for name in ("state", "observation", "action"):  # the action only when it alone is huge
            over = self.counter(_join([prompt, parts["state"], parts["action"], parts["observation"]]))
            over -= self.max_tokens
            if over <= 0:
                break
            parts[name] = _cut_inside_tags(parts[name], over, self.counter)
            cut.append(name)
        text = _join([prompt, parts["state"], parts["action"], parts["observation"]])
        return Context(text, self.counter(text), tuple(cut))


_WRAPPED = re.compile(r"^(<[^<>]+>)(.*)(</[^<>]+>)$", re.DOTALL)


def _cut_inside_tags(block: str, over: int, counter: TokenCounter) -> str:
    """Drop about ``over`` tokens from the end of a block's content, keeping its tags."""
    match = _WRAPPED.match(block)
    head, body, tail = match.groups() if match else ("", block, "")
    keep = max(0, counter(body) - over - 1)
    return head + truncate_to_tokens(body, keep, counter) + tail
