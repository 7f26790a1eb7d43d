"""Candidate responses for ``MEM1-WebQA-v0``, read from the observation alone.

Every turn :class:`WebQACandidates` reads the questions, the last internal state and the
current page (with :class:`agents.scripted_webqa.WebQAScriptedAgent`'s reader; it never sees the
answers). The slots::

    slot 0              the researcher's next step (search a start, click a relation link,
                        scroll, or answer when every question is settled)
    slot 1              answer every question from the state ("unknown" where not found)
    slot 2              back (once a page is shown)
    slot 3              scroll down (when the article has more)
    slots 4 .. 4+S-1    search the start of the 1st, 2nd, ... unanswered question
    slots 4+S .. K-1    click the page's links, in page order

with ``S = max(1, K // 4)``; empty slots are masked. Every candidate but slot 0 carries the
state without the researcher's step marker (so after a detour the researcher restarts the
question with a search).

>>> import gymnasium as gym, mem1_envs
>>> env = gym.make("MEM1-WebQA-v0", world="small")
>>> observation, info = env.reset(seed=1)
>>> [c.label for c in WebQACandidates(8)(observation) if c is not None][:2]
['search: Naexveltrel 1984 born', 'answer: unknown']
"""

from __future__ import annotations

import re
from typing import Any

from agents.scripted_webqa import WebQAScriptedAgent, plan_for
from wrappers.candidates_multiqa import Candidate

_LINKS = re.compile(r"\[([^\]]+)\]")
_HINT = re.compile(r"\[HINT\].*?\[/HINT\]", re.DOTALL)


class WebQACandidates:
    """Candidate generator for ``MEM1-WebQA-v0`` (see the module docstring for the slots).

    Args:
        num_slots: K, the number of slots (>= 6).
        protocol: the env's tag set (``"webqa"``).
    """

    def __init__(self, num_slots: int, protocol: str = "webqa"):
        if num_slots < 6:
            raise ValueError(f"num_slots must be >= 6 for WebQA candidates, got {num_slots}")
        self.num_slots = num_slots
        self.agent = WebQAScriptedAgent(protocol)
        self.search_slots = max(1, num_slots // 4)

    @classmethod
    def for_env(cls, env: Any, num_candidates: int) -> WebQACandidates:
        """The generator for a ``MEM1-WebQA-v0`` env (its :mod:`mem1_envs.registry` entry)."""
        return cls(num_candidates, env.unwrapped.config.protocol)

    def __call__(self, observation: str) -> list[Candidate | None]:
        slots: list[Candidate | None] = [None] * self.num_slots
        expert = self.agent.act(observation)
        slots[0] = Candidate(_kind(expert), expert, _label(expert))
        questions, facts, page = self.agent.read(observation)
        facts.pop("now", None)
        answers = "; ".join(facts.get(f"Q{n}", "unknown") for n in range(1, len(questions) + 1))
        slots[1] = self._respond(facts, "answer", answers)
        if page:
            slots[2] = self._respond(facts, "back", "")
        if "Scroll down for more." in page:
            slots[3] = self._respond(facts, "scroll", "down")
        queries = [
            plan.query
            for n, question in enumerate(questions, 1)
            if f"Q{n}" not in facts and (plan := plan_for(question)) is not None
        ]
        for slot, query in enumerate(queries[: self.search_slots], 4):
            slots[slot] = self._respond(facts, "search", query)
        links = list(dict.fromkeys(_LINKS.findall(_HINT.sub(" ", page))))
        for slot, label in enumerate(links[: self.num_slots - 4 - self.search_slots], 4 + self.search_slots):
            slots[slot] = self._respond(facts, "click", label)
        return slots

    def _respond(self, facts: dict[str, str], verb: str, argument: str) -> Candidate:
        text = self.agent.respond(facts, verb, argument)
        return Candidate(verb, text, f"{verb}: {argument}".rstrip(": ") if argument else verb)


def _kind(response: str) -> str:
    match = re.search(r"<(search|click|back|scroll|answer)>", response)
    return match.group(1) if match else "answer"


def _label(response: str) -> str:
    match = re.search(r"<(search|click|back|scroll|answer)>(.*?)</\1>", response, re.DOTALL)
    return (
        f"{match.group(1)}: {match.group(2)}"
        if match and match.group(2)
        else (match.group(1) if match else "")
    )
