"""Context policies: what the agent sees each turn, and how many tokens that costs.

A policy turns the task prompt and the turns so far into the agent's next context::

    mem1   (bounded, default)  prompt | state(t-1) action(t-1) | observation(t-1)
    window (last k turns)      prompt | turn t-k ... turn t-1
    full   (ReAct history)     prompt | turn 0 ... turn t-1

where a turn is the agent's canonical response (internal state + action) followed by the
environment's observation. Under ``mem1`` the context is held under a token budget: when it
does not fit, the internal state is cut first (keeping it compact is the agent's job, and the
signal RL trains on), then the observation; the prompt is never cut, the action only when the
prompt and the action alone overflow the budget.

A policy is an object (:class:`ContextPolicy`) with one method, ``build(prompt, turns)``;
``memory=`` of every env takes a registered name (:data:`POLICIES`) or an instance.

Token counting is pluggable (:func:`make_token_counter`). The default counter is
deterministic and needs nothing installed: one token per word (a run of letters, digits or
``_``) and one per other non-space character. It counts roughly like a BPE tokenizer on
English text.

>>> count = make_token_counter(None)
>>> count("Doc 1(Title: Oslo) is a city.")
11
>>> policy = make_policy("mem1", max_tokens=64)
>>> context = policy.build("Answer: q1?", [Turn("<think>s</think>", "<search>q</search>", "<info>d</info>")])
>>> context.text
'Answer: q1?\\n<think>s</think>\\n<search>q</search>\\n<info>d</info>'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from mem1_envs.validation import check_choice, show

TokenCounter = Callable[[str], int]

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


POLICIES: dict[str, type[ContextPolicy]] = {}
"""The registered context policies by name (what ``memory="name"`` and the scripts' choices list)."""


def register_policy(cls: type[ContextPolicy]) -> type[ContextPolicy]:
    """Class decorator: make a policy available by its ``name`` (``memory="name"``, scripts)."""
    if not cls.name or not isinstance(cls.name, str):
        raise ValueError(f"a registered policy needs a non-empty name, got {cls.name!r}")
    POLICIES[cls.name] = cls
    return cls


@dataclass(frozen=True)
class ContextPolicy:
    """What the agent sees: build the next context from the prompt and the finished turns.

    A subclass sets ``name`` and implements :meth:`build`; ``@register_policy`` makes it
    available by name. Here is a new policy, one that keeps every action but only the last
    observation, passed to an env as an instance:

    >>> @dataclass(frozen=True)
    ... class Actions(ContextPolicy):
    ...     name: ClassVar[str] = "actions"
    ...
    ...     def build(self, prompt: str, turns: Sequence[Turn]) -> Context:
    ...         parts = [prompt, *(t.action for t in turns), *(t.observation for t in turns[-1:])]
    ...         return self.context(_join(parts))
    >>> import gymnasium as gym, mem1_envs
    >>> env = gym.make("MEM1-MultiQA-v0", world="small", memory=Actions())
    >>> observation, info = env.reset(seed=0)
    >>> for query in ("Oslo", "Bergen"):
    ...     observation, *_ = env.step(f"<think>s</think><search>{query}</search>")
    >>> "<search>Oslo</search>" in observation, observation.count("[HINT]")
    (True, 1)

    Attributes:
        max_tokens: token budget of the whole context (None: unbounded; only ``mem1`` uses it).
        window: how many past turns ``window`` keeps.
        counter: token counter (see :func:`make_token_counter`); an env replaces it by its own.
    """

    name: ClassVar[str] = ""
    max_tokens: int | None = None
    window: int = 1
    counter: TokenCounter = count_tokens

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 or None, got {self.max_tokens}")

    def build(self, prompt: str, turns: Sequence[Turn]) -> Context:
        """The context of the next turn."""
        raise NotImplementedError(f"{type(self).__name__} must implement build(prompt, turns)")

    def context(self, text: str) -> Context:
        """A :class:`Context` of ``text`` counted by this policy's counter."""
        return Context(text, self.counter(text))

    def check_prompt(self, prompt: str, advice: str) -> None:
        """Raise ValueError when the prompt alone cannot fit this policy's budget (at reset)."""
        if self.max_tokens is None:
            return
        tokens = self.counter(prompt)
        if tokens > self.max_tokens:
            raise ValueError(
                f"max_context_tokens={self.max_tokens} cannot hold the prompt of {tokens} tokens; {advice}"
            )

    def _build_turns(self, prompt: str, kept: Sequence[Turn]) -> Context:
        parts = [prompt]
        for turn in kept:
            parts += [turn.state, turn.action, turn.observation]
        return self.context(_join(parts))


@register_policy
@dataclass(frozen=True)
class Mem1Policy(ContextPolicy):
    """``mem1``: prompt, the last turn, under ``max_tokens`` (state cut first, then observation).

    The action is cut only as a last resort, when the prompt and the action alone overflow.
    """

    name: ClassVar[str] = "mem1"

    def build(self, prompt: str, turns: Sequence[Turn]) -> Context:
        kept = turns[-1:]
        context = self._build_turns(prompt, kept)
        if self.max_tokens is None or context.tokens <= self.max_tokens or not kept:
            return context
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


@register_policy
@dataclass(frozen=True)
class WindowPolicy(ContextPolicy):
    """``window``: prompt and the last ``window`` turns, unbounded."""

    name: ClassVar[str] = "window"

    def build(self, prompt: str, turns: Sequence[Turn]) -> Context:
        return self._build_turns(prompt, turns[-self.window :])

    def check_prompt(self, prompt: str, advice: str) -> None:
        """Unbounded: any prompt fits."""


@register_policy
@dataclass(frozen=True)
class FullPolicy(WindowPolicy):
    """``full``: prompt and every turn (ReAct history), unbounded."""

    name: ClassVar[str] = "full"

    def build(self, prompt: str, turns: Sequence[Turn]) -> Context:
        return self._build_turns(prompt, turns)


def check_memory(memory: Any) -> Any:
    """``memory`` if it is a registered policy name or a :class:`ContextPolicy` instance."""
    if isinstance(memory, ContextPolicy):
        return memory
    return check_choice("memory", memory, tuple(POLICIES))


def make_policy(
    memory: str | ContextPolicy = "mem1",
    max_tokens: int | None = None,
    window: int = 1,
    counter: TokenCounter = count_tokens,
) -> ContextPolicy:
    """The policy ``memory`` names, built with these settings; an instance gets ``counter`` only.

    >>> make_policy("window", window=2).name, make_policy(Mem1Policy(max_tokens=9)).max_tokens
    ('window', 9)
    """
    if isinstance(memory, ContextPolicy):
        return replace(memory, counter=counter)
    check_memory(memory)
    return POLICIES[memory](max_tokens=max_tokens, window=window, counter=counter)


def policy_name(memory: str | ContextPolicy) -> str:
    """The name of a policy given by name or as an instance (``info``, logs)."""
    return memory.name if isinstance(memory, ContextPolicy) else memory


_WRAPPED = re.compile(r"^(<[^<>]+>)(.*)(</[^<>]+>)$", re.DOTALL)


def _cut_inside_tags(block: str, over: int, counter: TokenCounter) -> str:
    """Drop about ``over`` tokens from the end of a block's content, keeping its tags."""
    match = _WRAPPED.match(block)
    head, body, tail = match.groups() if match else ("", block, "")
    keep = max(0, counter(body) - over - 1)
    return head + truncate_to_tokens(body, keep, counter) + tail
