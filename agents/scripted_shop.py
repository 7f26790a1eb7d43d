"""A scripted shopper for ``MEM1-WebShop-v0`` that reads only its observations.

It reads the instruction from its first observation (or, when it starts mid-episode, from the
memory an earlier turn wrote), keeps its plan in Python between turns, searches with the wanted
words,
reads every screen of the results, ranks the products by how much of the wanted type and
attributes their titles show (cheapest first among equals, price bound or remaining budget
respected), opens the best, checks its options and, when the title does not show every
attribute, its Features page, then selects the wanted options and buys. A product that fails a
check is set aside as a fallback; when candidates or turns run out it buys the best fallback.
For a shopping list it does this item by item. It never sees the hidden goal.

Every response also writes the instruction and its progress to the ``<summary>``, as a MEM1
agent must (the env drops older turns; under ``instruction="first"`` that memory is the only
copy of the goal in the context)::

    Instruction: Find me ... | item 1/1 | tried P0000042 P0000107 | bought -

>>> import gymnasium as gym, mem1_envs
>>> env = gym.make("MEM1-WebShop-v0", n_products=2000)
>>> agent = WebShopScriptedAgent()
>>> observation, info = env.reset(seed=0)
>>> agent.reset(seed=0)
>>> done = False
>>> while not done:
...     observation, reward, terminated, truncated, info = env.step(agent.act(observation, info))
...     done = terminated or truncated
>>> info["success"], reward
(True, 1.0)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_INSTRUCTION = re.compile(r"Instruction: (.+?)(?: \| item \d|\n|$)")
_SINGLE = re.compile(
    r"^Find me (?P<type>.+?) that is (?P<attrs>.+?)(?:, with (?P<opts>.+?))?, and price lower than "
    r"(?P<price>[\d.]+) dollars"
)
_LIST = re.compile(r"^Buy all of these, spending at most (?P<budget>[\d.]+) dollars in total: (?P<items>.+)$")
_ITEM = re.compile(r"^(?P<type>.+?) that is (?P<attrs>.+?)(?:, with (?P<opts>.+?))?$")
_CODE = re.compile(r"^\[button\] ((?=[A-Z]*\d)[A-Z0-9]{6,12}) \[button_\]$")  # P0000042, B07XYZ1234
_PRICE = re.compile(r"\$(\d+(?:\.\d+)?)")
_SCREEN = re.compile(r"\(Screen (\d+) of (\d+);")
_TURNS = re.compile(r"You have (\d+) turns? left")
_OPTION_LINE = re.compile(r"^([\w -]+): (\[(?:clicked )?button\].*)$")
_OPTION_VALUE = re.compile(r"\[(?:clicked )?button\] (.+?) \[(?:clicked )?button_\]")


@dataclass
class Wanted:
    """One wanted item, as read from the instruction."""

    type_name: str
    attributes: list[str]
    options: list[tuple[str, str]]
    price_upper: float | None
    free_text: str = ""  # an instruction outside the generated grammar (WebShop's human ones)

    @property
    def query(self) -> str:
        if self.free_text:
            return self.free_text
        return " ".join([*self.attributes, self.type_name, *(v for _, v in self.options)])

    def title_score(self, title: str) -> int:
        title = title.lower()
        return 2 * (self.type_name in title) + sum(a in title for a in self.attributes)


def _parse_item(match: re.Match[str], price: float | None) -> Wanted:
    options = []
    for part in (match.group("opts") or "").split(" and "):
        if ": " in part:
            kind, value = part.split(": ", 1)
            options.append((kind.strip(), value.strip()))
    return Wanted(match.group("type"), match.group("attrs").split(" and "), options, price)


def parse_instruction(text: str) -> tuple[list[Wanted], float | None]:
    """The wanted items and the total budget (None for a single goal) of an instruction."""
    single = _SINGLE.match(text)
    if single:
        return [_parse_item(single, float(single.group("price")))], None
    listed = _LIST.match(text)
    if not listed:
        # Free text (e.g. WebShop's human instructions): search its words, respect its price.
        price = re.search(r"price lower than ([\d.]+) dollars", text)
        words = re.sub(r",? and price lower than [\d.]+ dollars.*$", "", text).strip()[:150]
        return [Wanted("", [], [], float(price.group(1)) if price else None, words or "product")], None
    items = []
    for part in re.split(r"; \(\d+\) ", re.sub(r"^\(1\) ", "", listed.group("items"))):
        match = _ITEM.match(part.strip())
        if match:
            items.append(_parse_item(match, None))
    return items, float(listed.group("budget"))


def current_page(observation: str) -> str:
    """The text of the last ``<state>`` block (the current screen), hint removed."""
    start = observation.rfind("<state>")
    end = observation.rfind("</state>")
    page = observation[start + len("<state>") : end] if 0 <= start < end else ""
    return re.sub(r"^\[HINT\].*?\[/HINT\]\s*", "", page.strip())


@dataclass
class _Plan:
    items: list[Wanted] = field(default_factory=list)
    budget: float | None = None
    instruction: str = ""
    item: int = 0
    spent: float = 0.0
    candidates: list[tuple[int, float, str, str]] = field(
        default_factory=list
    )  # (-score, price, code, title)
    seen: set[str] = field(default_factory=set)
    tried: list[str] = field(default_factory=list)
    fallback: tuple[int, str] | None = None  # (score, code)
    target: str | None = None  # the product being bought
    to_select: list[str] = field(default_factory=list)
    checked_features: bool = False
    results_read: bool = False  # every screen of the results page has been read
    results_pages: int = 1  # results pages read for this item
    bought: list[str] = field(default_factory=list)


class WebShopScriptedAgent:
    """Searches, reads results and item pages, selects options and buys (see module docstring)."""

    def __init__(self, tags: tuple[str, str] = ("summary", "answer")):
        self.state_tag, self.answer_tag = tags
        self.plan = _Plan()

    @classmethod
    def for_env(cls, env: Any) -> WebShopScriptedAgent:
        """The agent for a ``MEM1-WebShop-v0`` env, in its tag set (:mod:`mem1_envs.registry`)."""
        tags = env.unwrapped.tags
        return cls((tags.state, tags.tag_for("answer")))

    def reset(self, seed: int | None = None) -> None:
        self.plan = _Plan()

    def act(self, observation: str, info: dict[str, Any]) -> str:
        plan = self.plan
        if not plan.items:
            match = _INSTRUCTION.search(observation)
            if match:
                plan.instruction = match.group(1).strip()
                plan.items, plan.budget = parse_instruction(plan.instruction)
        action = self._decide(observation) if plan.items else "search[anything]"
        summary = (
            f"Instruction: {plan.instruction} | item {plan.item + 1}/{max(1, len(plan.items))} | "
            f"tried {' '.join(plan.tried[-6:]) or '-'} | bought {' '.join(plan.bought) or '-'}"
        )
        return (
            f"<{self.state_tag}>{summary}</{self.state_tag}><{self.answer_tag}>{action}</{self.answer_tag}>"
        )

    # -- decisions ----------------------------------------------------------------------------
    def _decide(self, observation: str) -> str:
        plan = self.plan
        page = current_page(observation)
        lines = page.split("\n")
        turns = _TURNS.search(observation[observation.rfind("<state>") :])
        turns_left = int(turns.group(1)) if turns else 99
        wanted = plan.items[min(plan.item, len(plan.items) - 1)]
        if "[search box]" in page:
            self._new_item()
            return f"search[{wanted.query}]"
        if lines and lines[0].startswith("Thank you for shopping"):
            return "click[back to search]"
        if any(line.startswith("Search results for") or _CODE.match(line) for line in lines):
            return self._on_results(lines, wanted, turns_left)
        if any(line.startswith("Features:") for line in lines):
            return self._on_features(lines, wanted)
        if any(line.startswith("Description:") for line in lines):
            return "click[< prev]"
        if any(line.startswith("Price: $") for line in lines):
            return self._on_item(lines, wanted, turns_left)
        return "click[back to search]"

    def _new_item(self) -> None:
        plan = self.plan
        plan.candidates, plan.seen, plan.fallback, plan.target = [], set(), None, None
        plan.results_read, plan.results_pages = False, 1

    def _limit(self, wanted: Wanted) -> float:
        plan = self.plan
        if wanted.price_upper is not None:
            return wanted.price_upper
        if plan.budget is None:
            return float("inf")
        return plan.budget - plan.spent

    def _on_results(self, lines: list[str], wanted: Wanted, turns_left: int) -> str:
        plan = self.plan
        has_next = "click[next >]" in lines[-1]
        if plan.results_read:
            return self._next_candidate(turns_left, has_next)
        limit = self._limit(wanted)
        for k, line in enumerate(lines):
            match = _CODE.match(line)
            if match and k + 2 < len(lines) and match.group(1) not in plan.seen:
                code, title = match.group(1), lines[k + 1]
                price = _PRICE.search(lines[k + 2])
                plan.seen.add(code)
                if price and float(price.group(1)) <= limit:
                    plan.candidates.append((-wanted.title_score(title), float(price.group(1)), code, title))
        screen = next((m for line in lines if (m := _SCREEN.match(line))), None)
        if screen and int(screen.group(1)) < int(screen.group(2)):
            return "click[next page]"
        plan.results_read = True
        return self._next_candidate(turns_left, has_next)

    def _next_candidate(self, turns_left: int, has_next: bool) -> str:
        plan = self.plan
        plan.candidates.sort()
        untried = [c for c in plan.candidates if c[2] not in plan.tried]
        if has_next and turns_left > 6 and plan.results_pages < 3 and not any(-c[0] >= 2 for c in untried):
            # Nothing of the wanted type within the price here: read the next results page
            # (the buttons of this page will be gone, and so is the fallback found on it).
            plan.results_pages += 1
            plan.candidates, plan.results_read, plan.fallback = [], False, None
            return "click[next >]"
        if untried and turns_left > 5:
            plan.target = untried[0][2]
            plan.checked_features = False
            return f"click[{plan.target.lower()}]"
        if plan.fallback is not None:
            plan.target = plan.fallback[1]
            plan.checked_features = True  # buy it as it is
            plan.tried = [c for c in plan.tried if c != plan.target]
            return f"click[{plan.target.lower()}]"
        if untried:
            plan.target = untried[0][2]
            plan.checked_features = True
            return f"click[{plan.target.lower()}]"
        return "click[back to search]"

    def _on_item(self, lines: list[str], wanted: Wanted, turns_left: int) -> str:
        plan = self.plan
        if plan.target is None:  # a rejected product: back to the results
            return "click[< prev]"
        offered: dict[str, list[str]] = {}
        selected: set[str] = set()
        for line in lines:
            match = _OPTION_LINE.match(line)
            if match:
                offered[match.group(1)] = _OPTION_VALUE.findall(match.group(2))
                selected.update(re.findall(r"\[clicked button\] (.+?) \[clicked button_\]", match.group(2)))
        title = next((lines[k - 1] for k, line in enumerate(lines) if line.startswith("Price: $")), "")
        options_ok = all(value in offered.get(kind, []) for kind, value in wanted.options)
        attrs_in_title = all(a in title.lower() for a in wanted.attributes)
        buying = plan.target in plan.tried or plan.checked_features
        if not buying:
            if not options_ok:
                return self._reject(wanted.title_score(title))
            if not attrs_in_title:
                plan.checked_features = True
                return "click[features]"
        for kind, value in wanted.options:
            if value in offered.get(kind, []) and value not in selected and turns_left > 1:
                return f"click[{value}]"
        return self._buy(lines)

    def _on_features(self, lines: list[str], wanted: Wanted) -> str:
        plan = self.plan
        text = " ".join(lines).lower()
        if all(a in text for a in wanted.attributes):
            return "click[< prev]"
        score = sum(a in text for a in wanted.attributes)
        plan.checked_features = False
        if plan.target is not None and (plan.fallback is None or score > plan.fallback[0]):
            plan.fallback = (score, plan.target)
        if plan.target is not None:
            plan.tried.append(plan.target)
        plan.target = None
        return "click[< prev]"

    def _reject(self, score: int) -> str:
        plan = self.plan
        if plan.target is not None:
            plan.tried.append(plan.target)
            if plan.fallback is None or score - 1 > plan.fallback[0]:
                plan.fallback = (score - 1, plan.target)
        plan.target = None
        return "click[< prev]"

    def _buy(self, lines: list[str]) -> str:
        plan = self.plan
        price = next((_PRICE.search(line) for line in lines if line.startswith("Price: $")), None)
        if price:
            plan.spent += float(price.group(1))
        if plan.target:
            plan.bought.append(plan.target)
        plan.item += 1
        plan.target = None
        return "click[buy now]"
