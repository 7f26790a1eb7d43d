"""Candidate responses for ``MEM1-MultiQA-v0``, read from the observation alone.

Every turn :class:`MultiQACandidates` reads the questions (from the prompt), the last internal
state and the last search results (from the context) and consolidates the state in a scripted
way, with the fact patterns of :mod:`agents.scripted`: a fact the documents state about a
question's entity is written into the state (``Q1.a=Torvaemtesk``, then ``Q1=1526``). It
never sees the hidden answers. The candidates, in fixed slot groups::

    slot 0                      answer every question from the state ("unknown" where not found)
    slots 1 .. F                search the next fact of the 1st, 2nd, ... unresolved question
    slots F+1 .. F+M            search an entity mentioned in a question or in the state
    slots F+M+1 .. K-1          answer with a span (state value, or a name, year or number in
                                the last documents) for the first unresolved question

with ``F = M = max(1, K // 4)``; empty slots are masked. Each candidate is a whole response
(``<think>state</think><search>...</search>``), so the env is played unchanged.

>>> import gymnasium as gym, mem1_envs
>>> env = gym.make("MEM1-MultiQA-v0", world="small")
>>> observation, info = env.reset(seed=1)
>>> [c.label for c in MultiQACandidates(8)(observation) if c is not None]
['answer: unknown', 'search: Kriadiv Foxque born', 'search: Kriadiv Foxque']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from agents.scripted import MultiQAScriptedAgent, Plan, plan_for
from mem1_envs import protocol as proto

_MENTION = re.compile(r"[A-Z][a-z]+(?: [A-Z][a-z]+)*")
_SPAN = re.compile(r"[A-Z][a-z]+(?: [A-Z][a-z]+)*|\d{1,3}(?:,\d{3})+|\d+")
_QUESTION_WORDS = frozenset({"In", "What", "Who", "Which", "When", "Where", "How"})
_DOC_PREFIX = re.compile(r"Doc \d+\(Title: [^)]*\)")
_HINT = re.compile(r"\[HINT\].*?\[/HINT\]", re.DOTALL)
# Sentence openers in the world's passages that are never an answer.
_NOT_SPANS = frozenset({"It", "After", "The", "Its", "No", "A", "An", "In", "He", "She", "They"})


@dataclass(frozen=True)
class Candidate:
    """One candidate action: the full response text, its kind and a short label for logs."""

    kind: str
    text: str
    label: str


class MultiQACandidates:
    """Candidate generator for ``MEM1-MultiQA-v0`` (see the module docstring for the slots).

    Args:
        num_slots: K, the number of slots (>= 4).
        protocol: the env's tag set, ``"mem1"`` or ``"paper"``.
    """

    def __init__(self, num_slots: int, protocol: str = "mem1"):
        if num_slots < 4:
            raise ValueError(f"num_slots must be >= 4 for MultiQA candidates, got {num_slots}")
        self.num_slots = num_slots
        self.tags = proto.get_tag_set(protocol)
        self._reader = MultiQAScriptedAgent(protocol)
        self.fact_slots = self.mention_slots = max(1, num_slots // 4)

    @classmethod
    def for_env(cls, env: Any, num_candidates: int) -> MultiQACandidates:
        """The generator for a ``MEM1-MultiQA-v0`` env (its :mod:`mem1_envs.registry` entry)."""
        return cls(num_candidates, env.unwrapped.config.protocol)

    # -- reading and consolidating ------------------------------------------------------------
    def consolidate(self, observation: str) -> tuple[list[str], dict[str, str], str, str]:
        """``(questions, consolidated facts, last documents, last search query)`` of an observation."""
        reader = self._reader
        questions, context = reader._split_prompt(observation)
        facts = reader._read_state(context)
        documents = reader._last_block(context, self.tags.observation)
        last_query = reader._last_block(context, self.tags.tag_for("search")).strip()
        pending = facts.pop("next", None)
        progress = True
        while progress:  # one document list may settle a bridge's both hops
            progress = False
            for number, question in enumerate(questions, 1):
                plan = plan_for(question)
                if f"Q{number}" not in facts and plan is not None:
                    progress |= _advance(facts, f"Q{number}", plan, documents)
        if pending is not None:  # the looked-for fact is still missing: count the attempt
            key, _, attempt = pending.partition("#")
            index, _, hop = key.partition(".")
            if index not in facts and (hop == "a" or f"{index}.a" in facts):
                facts[f"{key}#tries"] = attempt
        return questions, facts, documents, last_query

    # -- candidates -------------------------------------------------------------------------
    def __call__(self, observation: str) -> list[Candidate | None]:
        questions, facts, documents, last_query = self.consolidate(observation)
        slots: list[Candidate | None] = [None] * self.num_slots
        unresolved = [n for n in range(1, len(questions) + 1) if f"Q{n}" not in facts]
        answers = [facts.get(f"Q{n}", "unknown") for n in range(1, len(questions) + 1)]
        slots[0] = self._respond(facts, "answer", "; ".join(answers), f"answer: {'; '.join(answers)}")

        facts_searches = []
        for number in unresolved:
            plan = plan_for(questions[number - 1])
            if plan is None:
                continue
            index = f"Q{number}"
            hop = "b" if f"{index}.a" in facts else "a"
            tries = int(facts.get(f"{index}.{hop}#tries", "0"))
            fact = MultiQAScriptedAgent._fact(plan, hop, facts.get(f"{index}.a", ""))
            query = fact.queries[tries % len(fact.queries)]
            facts_searches.append((f"{index}.{hop}#{tries + 1}", query))
        offset = 1
        for slot, (key, query) in enumerate(facts_searches[: self.fact_slots], offset):
            slots[slot] = self._respond({**facts, "next": key}, "search", query, f"search: {query}")

        offset += self.fact_slots
        mentions = _unique(
            [m for q in questions for m in _MENTION.findall(q) if m not in _QUESTION_WORDS]
            + [v for k, v in facts.items() if "#" not in k and _MENTION.fullmatch(v)]
        )
        mentions = [m for m in mentions if m != last_query]
        for slot, mention in enumerate(mentions[: self.mention_slots], offset):
            slots[slot] = self._respond(facts, "search", mention, f"search: {mention}")

        offset += self.mention_slots
        if unresolved:
            target = unresolved[0] - 1
            state_values = [v for k, v in facts.items() if "#" not in k]
            body = _DOC_PREFIX.sub(" ", _HINT.sub(" ", documents))
            spans = _unique(state_values + [s for s in _SPAN.findall(body) if s not in _NOT_SPANS])
            for slot, span in enumerate(spans[: self.num_slots - offset], offset):
                filled = list(answers)
                filled[target] = span
                slots[slot] = self._respond(
                    facts, "answer", "; ".join(filled), f"answer: {'; '.join(filled)}"
                )
        return slots

    def _respond(self, facts: dict[str, str], kind: str, content: str, label: str) -> Candidate:
        state = " | ".join(f"{key}={value}" for key, value in facts.items())
        text = proto.wrap(self.tags.state, state) + proto.wrap(self.tags.tag_for(kind), content)
        return Candidate(kind, text, label)


def _advance(facts: dict[str, str], index: str, plan: Plan, documents: str) -> bool:
    """Read the next missing fact of one question from the documents; True when found."""
    first, second, combine = plan
    hop = "b" if f"{index}.a" in facts else "a"
    fact = MultiQAScriptedAgent._fact(plan, hop, facts.get(f"{index}.a", ""))
    match = re.search(fact.pattern, documents)
    if match is None:
        return False
    value = match.group(1)
    for key in [k for k in facts if k.startswith(f"{index}.{hop}#")]:
        del facts[key]
    if hop == "a" and second is not None:
        facts[f"{index}.a"] = value
    elif combine is None:
        facts[index] = value
    elif second is None:
        facts[index] = combine(value, "")
    else:
        facts[index] = combine(facts.pop(f"{index}.a"), value)
    return True


def _unique(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        key = item.lower()
        if item and key not in seen:
            seen.add(key)
            out.append(item)
    return out
