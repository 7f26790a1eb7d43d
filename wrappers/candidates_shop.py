"""Candidate responses for ``MEM1-WebShop-v0``, read from the observation alone.

The page's last line lists its clickables (``Available actions: click[back to search], ...``);
a long page also offers its other screens. Searches are built from the episode's instruction,
which :meth:`WebShopCandidates.start` reads once per episode from the env's task prompt
(``info["prompt"]``, :mod:`mem1_envs.base_env`) or, under ``instruction="first"``, from the
first context's prompt line that follows it; so it is the same on every turn, whatever the memory
holds. Every candidate copies it into its memory (the scripted consolidation). The slots::

    slots 0 .. S-1     search templates (only on a page with a search box): each wanted
                       item's words (attributes, type, options), then each item's type alone
    slots S, S+1       click[next page], click[prev page] (only where that screen exists)
    slots S+2 .. K-1   the page's clickables, in the page's order

with ``S = max(2, K // 6)``; empty slots are masked, and clickables beyond K are dropped (use
K >= 20 so a results page's ten products fit).

>>> import gymnasium as gym, mem1_envs
>>> env = gym.make("MEM1-WebShop-v0", n_products=500)
>>> observation, info = env.reset(seed=0)
>>> generator = WebShopCandidates(20)
>>> generator.start(observation, info)  # CandidateActions calls it after every reset
>>> [c.label for c in generator(observation) if c is not None]
['search[no artificial flavors non gmo protein bars original]', 'search[protein bars]']
"""

from __future__ import annotations

import re
from typing import Any

from agents.scripted_shop import current_page, parse_instruction
from mem1_envs import protocol as proto
from mem1_envs.base_env import task_prompt
from wrappers.candidates_multiqa import Candidate

# The instruction line of the first context's prompt (see mem1_envs.shop.episode.first_prompt).
_PROMPT_INSTRUCTION = re.compile(r"^Instruction: (.+)$", re.MULTILINE)
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
        self.instruction: str | None = None
        """The episode's instruction (set by :meth:`start`)."""

    @classmethod
    def for_env(cls, env: Any, num_candidates: int) -> WebShopCandidates:
        """The generator for a ``MEM1-WebShop-v0`` env (its :mod:`mem1_envs.registry` entry)."""
        return cls(num_candidates, env.unwrapped.config.protocol)

    def start(self, observation: str, info: dict[str, Any]) -> None:
        """Begin an episode from the env's first observation and info (the env contract).

        The instruction is in the task prompt (``instruction="always"``) or, under
        ``instruction="first"``, on the line of the first context right after the task prompt;
        it is never read from the memory or the page, which a response or a product can forge.
        """
        prompt = task_prompt(info)
        first_turn = observation[len(prompt) :].lstrip("\n") if observation.startswith(prompt) else ""
        match = _PROMPT_INSTRUCTION.search(prompt) or _PROMPT_INSTRUCTION.match(first_turn)
        self.instruction = match.group(1).strip() if match else ""

    def __call__(self, observation: str) -> list[Candidate | None]:
        if self.instruction is None:
            raise RuntimeError(
                "call start(observation, info) with the env's first observation before asking "
                "for candidates (CandidateActions does it after every reset)"
            )
        instruction = self.instruction
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
