"""Candidate responses for ``MEM1-WebShop-v0``, read from the observation alone.

The page's last line lists its clickables (``Available actions: click[back to search], ...``);
a long page also offers its other screens. Searches are built from the instruction, read from
the prompt or, under ``instruction="first"``, from the memory, where every candidate copies it
(the scripted consolidation of the memory). The slots::

    slots 0 .. S-1     search templates (only on a page with a search box): each wanted
                       item's words (attributes, type, options), then each item's type alone
    slots S, S+1       click[next page], click[prev page] (only where that screen exists)
    slots S+2 .. K-1   the page's clickables, in the page's order

with ``S = max(2, K // 6)``; empty slots are masked, and clickables beyond K are dropped (use
K >= 20 so a results page's ten products fit).

>>> import gymnasium as gym, mem1_envs
>>> env = gym.make("MEM1-WebShop-v0", n_products=500)
>>> observation, info = env.reset(seed=0)
>>> [c.label for c in WebShopCandidates(20)(observation) if c is not None]
['search[no artificial flavors non gmo protein bars original]', 'search[protein bars]']
"""

from __future__ import annotations

import re
from typing import Any

from agents.scripted_shop import current_page, parse_instruction
from mem1_envs import protocol as proto
from wrappers.candidates_multiqa import Candidate

_INSTRUCTION = re.compile(r"Instruction: (.+?)(?: \| |\n|$)")
_ACTIONS = re.compile(r"^Available actions: (.*)$", re.MULTILINE)
_CLICK = re.compile(r"click\[(.*?)\](?=, |$)")
_SCREEN = re.compile(r"\(Screen (\d+) of (\d+);")


class WebShopCandidates:
    """Candidate generator for ``MEM1-WebShop-v0`` (see the module docstring for the slots).

    Args:
        num_slots: K, the number of slots (>= 4).
        protocol: the env's tag set (``"webshop"``).
    """

    def __init__(self, num_slots: int, protocol: str = "webshop"):
        if num_slots < 4:
            raise ValueError(f"num_slots must be >= 4 for WebShop candidates, got {num_slots}")
        self.num_slots = num_slots
        self.tags = proto.get_tag_set(protocol)
        self.search_slots = max(2, num_slots // 6)

    @classmethod
    def for_env(cls, env: Any, num_candidates: int) -> WebShopCandidates:
        """The generator for a ``MEM1-WebShop-v0`` env (its :mod:`mem1_envs.registry` entry)."""
        return cls(num_candidates, env.unwrapped.config.protocol)

    def __call__(self, observation: str) -> list[Candidate | None]:
        match = _INSTRUCTION.search(observation)
        instruction = match.group(1).strip() if match else ""
        page = current_page(observation)
        slots: list[Candidate | None] = [None] * self.num_slots
        memory = f"Instruction: {instruction}" if instruction else ""

        if "[search box]" in page:
            items, _ = parse_instruction(instruction) if instruction else ([], None)
            queries = _unique([item.query for item in items] + [item.type_name for item in items])
            for slot, query in enumerate(queries[: self.search_slots]):
                slots[slot] = self._respond(memory, f"search[{query}]")

        screen = _SCREEN.search(page)
        if screen:
            current, total = int(screen.group(1)), int(screen.group(2))
            if current < total:
                slots[self.search_slots] = self._respond(memory, "click[next page]")
            if current > 1:
                slots[self.search_slots + 1] = self._respond(memory, "click[prev page]")

        actions = _ACTIONS.findall(page)
        clicks = _CLICK.findall(actions[-1]) if actions else []
        for slot, label in enumerate(clicks[: self.num_slots - self.search_slots - 2], self.search_slots + 2):
            slots[slot] = self._respond(memory, f"click[{label}]")
        return slots

    def _respond(self, memory: str, action: str) -> Candidate:
        text = proto.wrap(self.tags.state, memory) + proto.wrap(self.tags.tag_for("answer"), action)
        return Candidate("search" if action.startswith("search[") else "click", text, action)


def _unique(items: list[str]) -> list[str]:
    seen: set[str] = set()
    return [item for item in items if item and not (item in seen or seen.add(item))]
