"""The turn protocol: tag sets, parsing one model response into an action, rendering.

Every turn the agent writes one response: an internal state followed by exactly one action::

    <think> what I know so far </think><search> a query </search>
    <think> what I know so far </think><answer> a1; a2; a3 </answer>

and the environment answers a search with an observation block::

    <information>[HINT]You have 3 turns left.[/HINT]

    Doc 1(Title: "Varnel Oskaruth") Varnel Oskaruth (born 1931) is ...
    </information>

Two tag sets are built in: ``"mem1"`` (the released MEM1 code's tags, the default, so the
released checkpoint acts here unchanged) and ``"paper"`` (the MEM1 paper's ``<IS>``,
``<query>``, ``<answer>``, ``<info>``).

Parsing never raises. The rules, applied in this order:

1. A response that is not a string is invalid (``not_a_string``).
2. Only the first ``max_chars`` characters are read (1 MB of text costs a bounded scan);
   ``notes`` holds ``response_cut`` when the tail was dropped.
3. Empty or whitespace-only text is invalid (``empty``).
4. The internal state is the content of the first complete state block. A missing state is
   allowed (state ``""``, note ``no_state``); an unclosed one is ignored (note ``unclosed_state``).
5. Actions are the complete action blocks outside the state block. The first one wins; more
   than one gives the note ``several_actions``. No complete action is invalid: ``unclosed_tag``
   when an action tag was opened but never closed, ``no_action`` otherwise.
6. Forged tags: any protocol tag (state, action or observation, opening or closing, any case)
   inside a block's content is removed, so text the agent wrote can never reach the next
   context looking like an observation the environment wrote (note ``forged_tag``).
7. Answers are the answer content split on ``;`` and stripped. A wrong number of answers is
   not invalid here: the environment scores answers by position (see ``expected_answers``),
   and notes ``answer_count`` when the count differs.

>>> action = parse_response("<think>Q1: Oslo</think><answer>Oslo</answer>", expected_answers=1)
>>> action.kind, action.state, action.answers
('answer', 'Q1: Oslo', ('Oslo',))
>>> parse_response("no tags at all").error
'no_action'
"""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass, field
from typing import Literal

ActionKind = Literal["search", "answer", "invalid"]

DEFAULT_MAX_CHARS = 100_000
#: Length bound of every env's observation Text space: far above any real context.
MAX_OBSERVATION_CHARS = 10_000_000


@dataclass(frozen=True)
class TagSet:
    """The tag names of one protocol.

    Attributes:
        state: tag holding the internal state (MEM1's consolidated memory).
        actions: action tag names, mapped to the action kind each one means.
        observation: tag the environment wraps its observations in.
    """

    state: str
    actions: tuple[tuple[str, ActionKind], ...]
    observation: str

    @property
    def all_tags(self) -> tuple[str, ...]:
        return (self.state, *(name for name, _ in self.actions), self.observation)

    def tag_for(self, kind: ActionKind) -> str:
        for name, action_kind in self.actions:
            if action_kind == kind:
                return name
        raise KeyError(f"protocol has no tag for action kind {kind!r}")


PROTOCOLS: dict[str, TagSet] = {
    "mem1": TagSet(
        state="think", actions=(("search", "search"), ("answer", "answer")), observation="information"
    ),
    "paper": TagSet(state="IS", actions=(("query", "search"), ("answer", "answer")), observation="info"),
    # MEM1's WebShop form: memory in <summary>, the page in <state>, and the shop action
    # (search[...] or click[...]) inside <answer>; mem1_envs.shop parses the inner action.
    "webshop": TagSet(state="summary", actions=(("answer", "answer"),), observation="state"),
}


def get_tag_set(protocol: str | TagSet) -> TagSet:
    """Return the tag set named ``protocol`` (or ``protocol`` itself when it is a TagSet)."""
    if isinstance(protocol, TagSet):
        return protocol
    try:
        return PROTOCOLS[protocol]
    except (KeyError, TypeError):
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}") from None


@dataclass(frozen=True)
class ParsedAction:
    """One response, parsed.

    Attributes:
        kind: ``"search"``, ``"answer"`` or ``"invalid"``.
        state: the internal state, forged tags removed ("" when absent).
        content: the chosen action's content (query text or raw answer text).
        answers: the answer split on ``;`` (empty unless ``kind == "answer"``).
        error: why the action is invalid (None when valid).
        notes: what the parser had to decide (see the module rules).
    """

    kind: ActionKind
    state: str = ""
    content: str = ""
    answers: tuple[str, ...] = ()
    error: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def valid(self) -> bool:
        return self.kind != "invalid"


@functools.lru_cache(maxsize=64)  # built per response otherwise: a tenth of a WebQA step
def _tag_pattern(tags: tuple[str, ...]) -> re.Pattern[str]:
    names = "|".join(re.escape(t) for t in sorted(set(tags), key=len, reverse=True))
    return re.compile(rf"<\s*/?\s*(?:{names})\s*>", re.IGNORECASE)


def remove_tags(text: str, tags: TagSet) -> tuple[str, bool]:
    """Remove every opening or closing protocol tag from ``text``; say whether any was found."""
    cleaned, count = _tag_pattern(tags.all_tags).subn("", text)
    return cleaned, count > 0


def _blocks(text: str, tag: str) -> tuple[list[tuple[int, int, str]], bool]:
    """Complete ``<tag>...</tag>`` blocks as (start, end, content), and whether one is unclosed."""
    opening = re.compile(rf"<\s*{re.escape(tag)}\s*>", re.IGNORECASE)
    closing = re.compile(rf"<\s*/\s*{re.escape(tag)}\s*>", re.IGNORECASE)
    blocks: list[tuple[int, int, str]] = []
    position = 0
    while True:
        start = opening.search(text, position)
        if start is None:
            return blocks, False
        end = closing.search(text, start.end())
        if end is None:
            return blocks, True
        blocks.append((start.start(), end.end(), text[start.end() : end.start()]))
        position = end.end()


def parse_response(
    response: object,
    protocol: str | TagSet = "mem1",
    *,
    expected_answers: int | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> ParsedAction:
    """Parse one model response into an action, following the module's rules; never raises."""
    tags = get_tag_set(protocol)
    if not isinstance(response, str):
        return ParsedAction("invalid", error="not_a_string")
    notes: list[str] = []
    if len(response) > max_chars:
        response = response[:max_chars]
        notes.append("response_cut")
    if not response.strip():
        return ParsedAction("invalid", error="empty", notes=tuple(notes))

    state = ""
    rest = response
    state_blocks, state_unclosed = _blocks(response, tags.state)
    if state_blocks:
        start, end, state = state_blocks[0]
        rest = response[:start] + " " + response[end:]
    else:
        notes.append("unclosed_state" if state_unclosed else "no_state")
    state, forged = remove_tags(state, tags)

    found: list[tuple[int, str, ActionKind]] = []
    any_unclosed = False
    for name, kind in tags.actions:
        blocks, unclosed = _blocks(rest, name)
        any_unclosed |= unclosed
        found.extend((start, content, kind) for start, _, content in blocks)
    if not found:
        error = "unclosed_tag" if any_unclosed else "no_action"
        return ParsedAction("invalid", state=state.strip(), error=error, notes=tuple(notes))
    found.sort(key=lambda item: item[0])
    if len(found) > 1:
        notes.append("several_actions")
    _, content, kind = found[0]
    content, forged_in_action = remove_tags(content, tags)
    if forged or forged_in_action:
        notes.append("forged_tag")
    content = content.strip()

    answers: tuple[str, ...] = ()
    if kind == "answer":
        answers = tuple(part.strip() for part in content.split(";"))
        if expected_answers is not None and len(answers) != expected_answers:
            notes.append("answer_count")
    return ParsedAction(kind, state.strip(), content, answers, None, tuple(notes))


def wrap(tag: str, content: str) -> str:
    """``<tag>content</tag>``."""
    return f"<{tag}>{content}</{tag}>"


def render_response(action: ParsedAction, protocol: str | TagSet = "mem1") -> str:
    """The canonical text of a valid action, as it is kept in the next turn's context.

    Only the state and the chosen action survive: text outside the tags, extra actions and
    forged tags are gone.

    >>> render_response(parse_response("noise<think>s</think><search>q</search>junk"))
    '<think>s</think>\\n<search>q</search>'
    """
    tags = get_tag_set(protocol)
    if not action.valid:
        raise ValueError(f"only a valid action has a canonical text, got kind {action.kind!r}")
    return wrap(tags.state, action.state) + "\n" + wrap(tags.tag_for(action.kind), action.content)


def turn_hint(turns_left: int) -> str:
    """MEM1's hint on the remaining turns ("" on the last turn)."""
    if turns_left <= 0:
        return ""
    if turns_left == 1:
        return "[HINT]You have 1 turn left. You must answer the question in the next turn.[/HINT]"
    return f"[HINT]You have {turns_left} turns left.[/HINT]"


def render_documents(documents: list[tuple[str, str]]) -> str:
    """The search results as MEM1's and Search-R1's ``_passages2string`` write them.

    Their rule, from a result's Search-R1 ``contents``: the title is the first line as the corpus
    holds it, quotes included, the text is the rest; each document gives
    ``Doc k(Title: <title>) <text>`` and a newline, and MEM1 strips the whole string before
    putting it into ``<information>``. Our passages hold ``(title, text)`` split by
    :func:`~mem1_envs.qa.world.split_contents`, whose inverse ``'"title"\\ntext'`` is the
    ``contents`` a Search-R1 corpus row (and our ``/retrieve`` server) has, so the title is
    written back in its quotes.

    >>> render_documents([("Oslo", "Oslo is a city."), ("Bergen", "Rainy.\\n")])
    'Doc 1(Title: "Oslo") Oslo is a city.\\nDoc 2(Title: "Bergen") Rainy.'
    """
    return "".join(
        f'Doc {k}(Title: "{title}") {text}\n' for k, (title, text) in enumerate(documents, 1)
    ).strip()


#: Characters every text observation may hold (printable ASCII). Anything else that reaches an
#: observation (the agent can write any unicode) is replaced by ``?`` so the observation stays
#: inside the environment's Text space.
ASCII_CHARSET = "".join(sorted(set(string.printable)))
_NOT_ASCII = re.compile(r"[^\t\n\r\x0b\x0c\x20-\x7e]")


def to_charset(text: str, charset: str | frozenset[str] = ASCII_CHARSET) -> str:
    """Replace characters outside ``charset`` by ``?``.

    >>> to_charset("naïve")
    'na?ve'
    """
    if charset is ASCII_CHARSET or charset == ASCII_CHARSET:
        return _NOT_ASCII.sub("?", text)
    allowed = charset if isinstance(charset, frozenset) else frozenset(charset)
    return "".join(c if c in allowed else "?" for c in text)
