"""WebQA's turn protocol: the suite's tag parser (:mod:`mem1_envs.protocol`) with navigation tags.

A response is an internal state and exactly one action::

    <think>state</think><search>query</search>    search the wiki (results page)
    <think>state</think><click>Label</click>      follow the link shown as [Label]
    <think>state</think><back></back>             the previous page
    <think>state</think><scroll>down</scroll>     the next screen of a long article (or "up")
    <think>state</think><answer>a1; a2</answer>   all answers at once, in question order

and pages come back in ``<information>...</information>``. Parsing follows the protocol
module's rules (non-strings, empty text, missing or unclosed tags, several actions: the first
wins, forged tags removed). The tag set is kept out of ``mem1_envs.protocol.PROTOCOLS`` on
purpose: that registry feeds the tiny model's vocabulary and the MultiQA tokenizer, which a
new tag set would silently change.

>>> parsed = proto.parse_response("<think>Q1=?</think><click> Oslo </click>", TAGS)
>>> page_action(parsed)
('click', 'Oslo')
>>> page_action(proto.parse_response("<think></think><answer>x</answer>", TAGS)) is None
True
"""

from __future__ import annotations

from typing import Any, cast

from mem1_envs import protocol as proto

NAVIGATION = ("search", "click", "back", "scroll")
TAGS = proto.TagSet(
    state="think",
    actions=cast(Any, (*((verb, verb) for verb in NAVIGATION), ("answer", "answer"))),
    observation="information",
)
PROTOCOLS = {"webqa": TAGS}


def get_tags(protocol: str) -> proto.TagSet:
    """The tag set named ``protocol`` (only ``"webqa"`` for now); ValueError naming it otherwise."""
    try:
        return PROTOCOLS[protocol]
    except (KeyError, TypeError):
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}") from None


def page_action(parsed: proto.ParsedAction) -> tuple[str, str] | None:
    """The page model's ``(verb, argument)`` of a navigation action, else None (answer, invalid)."""
    if parsed.kind in NAVIGATION:
        return str(parsed.kind), parsed.content
    return None
