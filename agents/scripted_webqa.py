"""A scripted researcher for ``MEM1-WebQA-v0``: it searches, follows links and answers.

It holds nothing between turns. Every turn it re-reads the questions from the prompt, its own
last internal state and the current page from the observation, then does the next step of
the first unanswered question: search for its start (a name, or a description such as "the
person born in Sordae in 1929"), click the start in the results, click the link of each
relation on the way (the studio on a film's article, then the founder on the studio's), and
read the answer on the last article; scroll when the sentence is further down, answer all
questions at once when done (or on the last turn). So it plays the same under ``mem1``,
``window`` and ``full`` contexts, and its state stays small: one entry per answered question
and the step it is at::

    Q1=Sordaethkial | Q2=1985 | now=Q3.2

``now=Qi.k``: the last action was step ``k`` of question ``i`` (0: the search, 1: clicking the
start, k > 1: following relation k - 1). Questions it cannot read, pages where the expected
sentence is missing and rejected actions make that question ``unknown``, never a crash.

>>> import gymnasium as gym, mem1_envs
>>> env = gym.make("MEM1-WebQA-v0", world="small", num_objectives=2)
>>> agent = WebQAScriptedAgent()
>>> observation, info = env.reset(seed=3)
>>> done = False
>>> while not done:
...     observation, reward, terminated, truncated, info = env.step(agent.act(observation, info))
...     done = terminated or truncated
>>> reward
2.0
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mem1_envs import protocol as proto
from mem1_envs.webqa.actions import get_tags
from mem1_envs.webqa.tasks import DESCRIBED, TEMPLATES, Template

_LINK = r"\[([^\]]+)\]"
_ANY_LINK = r"\[[^\]]+\]"
_DESCRIBED = re.compile(re.escape(DESCRIBED).replace(r"\{city\}", r"(\w+)").replace(r"\{year\}", r"(\d{4})"))


# What an article of each kind says after its title, group 1 being the attribute (compiled once).
_SENTENCES = {
    key: re.compile(pattern)
    for key, pattern in {
        ("people", "city"): rf"was born in {_LINK} in \d{{4}}",
        ("people", "born"): rf"was born in {_ANY_LINK} in (\d{{4}})",
        ("people", "university"): rf"studied at {_LINK}",
        ("people", "employer"): rf"studied at {_ANY_LINK}\. After graduating, \w+ joined {_LINK}",
        ("companies", "founder"): rf"is an? \w+ company founded in \d{{4}} by {_LINK}",
        ("companies", "city"): rf"is an? \w+ company .*?Its headquarters are in {_LINK}",
        ("films", "director"): rf"is a \d{{4}} [a-z ]+ film directed by {_LINK}",
        ("films", "studio"): rf"is a \d{{4}} [a-z ]+ film directed by {_ANY_LINK} and produced by {_LINK}",
        ("cities", "country"): rf"is a city in {_LINK}",
        ("universities", "city"): rf"is a university in {_LINK}",
    }.items()
}


def read_attribute(page: str, title: str, kind: str, attribute: str) -> str | None:
    """``attribute`` of the entity of ``kind`` whose article ``title`` is shown in ``page``, if the page says it."""
    sentence = _SENTENCES.get((kind, attribute))
    if sentence is None:
        return None
    lead = title + " "
    for line in page.split("\n"):
        if line.startswith(lead):
            found = sentence.match(line, len(lead))
            if found:
                return found.group(1)
    return None


@dataclass(frozen=True)
class Plan:
    """How to research one question: what to search, how to spot the start, which links to follow."""

    template: Template
    start: str
    """The start's name, or its description."""

    @property
    def query(self) -> str:
        described = _DESCRIBED.fullmatch(self.start)
        return f"{described.group(1)} {described.group(2)} born" if described else self.start

    def find_start(self, page: str) -> str | None:
        """The label of the start article on a results page."""
        described = _DESCRIBED.fullmatch(self.start)
        if described is None:
            return self.start if f"[{self.start}]" in page else None
        city, year = map(re.escape, described.groups())
        match = re.search(rf"^\[([^\]]+)\] \1 was born in {city} in {year}\.", page, re.MULTILINE)
        return match.group(1) if match else None

    @property
    def kinds(self) -> list[str]:
        """The entity kind of each article on the path, start first."""
        return [self.template.start, *(kind for _, kind in self.template.chain)]


_PLANS = [
    (re.compile(re.escape(t.text).replace(r"\{start\}", "(.+)") + "$"), t)
    for t in sorted(TEMPLATES, key=lambda t: -len(t.text))  # the most specific wording first
]


def plan_for(question: str) -> Plan | None:
    """The plan of a question, or None when it is not one of :data:`~mem1_envs.webqa.tasks.TEMPLATES`."""
    for pattern, template in _PLANS:
        match = pattern.match(question.strip())
        if match:
            return Plan(template, match.group(1))
    return None


class WebQAScriptedAgent:
    """Researches WebQA questions one at a time by navigating (see the module docstring)."""

    def __init__(self, protocol: str = "webqa"):
        self.tags = get_tags(protocol)

    @classmethod
    def for_env(cls, env: Any) -> WebQAScriptedAgent:
        """The agent for a ``MEM1-WebQA-v0`` env, in its tag set (:mod:`mem1_envs.registry`)."""
        return cls(env.unwrapped.config.protocol)

    def reset(self, seed: int | None = None) -> None:
        """Nothing to reset: everything the agent knows is in its observation."""

    def act(self, observation: str, info: dict[str, Any] | None = None) -> str:
        questions, facts, page = self.read(observation)
        now = facts.pop("now", None)
        if now is not None and "1 turn left" not in page:
            action = self._continue(questions, facts, page, now)
            if action is not None:
                return self.respond(facts, *action)
        if "1 turn left" not in page:
            for number, question in enumerate(questions, 1):
                if f"Q{number}" in facts:
                    continue
                plan = plan_for(question)
                if plan is None:
                    facts[f"Q{number}"] = "unknown"
                    continue
                facts["now"] = f"Q{number}.0"
                return self.respond(facts, "search", plan.query)
        answers = "; ".join(facts.get(f"Q{n}", "unknown") for n in range(1, len(questions) + 1))
        return self.respond({k: v for k, v in facts.items() if k != "now"}, "answer", answers)

    # -- reading ----------------------------------------------------------------------------
    def read(self, observation: str) -> tuple[list[str], dict[str, str], str]:
        """``(questions, facts of the last state, current page)`` of an observation."""
        _, _, rest = observation.partition("Answer the following questions: ")
        line, _, context = rest.partition("\n")
        questions = [q.strip() + "?" for q in line.strip().rstrip("?").split("?; ")]
        facts: dict[str, str] = {}
        for item in _last_block(context, self.tags.state).split("|"):
            key, sep, value = item.partition("=")
            if sep:
                facts[key.strip()] = value.strip()
        return questions, facts, _last_block(context, self.tags.observation)

    def _continue(
        self, questions: list[str], facts: dict[str, str], page: str, now: str
    ) -> tuple[str, str] | None:
        """The next action for the question in progress, or None when it is settled (answered or unknown)."""
        match = re.fullmatch(r"Q(\d+)\.(\d+)", now)
        if match is None or not 1 <= int(match.group(1)) <= len(questions):
            return None
        number, step = int(match.group(1)), int(match.group(2))
        key = f"Q{number}"
        plan = plan_for(questions[number - 1])
        if plan is None or "Your last action was invalid" in page or step > len(plan.kinds):
            facts[key] = "unknown"
            return None
        if step == 0:
            label = plan.find_start(page)
            if label is None:
                facts[key] = "unknown"
                return None
            facts["now"] = f"{key}.1"
            return "click", label
        title = page.partition("# ")[2].partition("\n")[0]
        chain = plan.template.chain
        attribute = chain[step - 1][0] if step <= len(chain) else plan.template.answer[0]
        found = read_attribute(page, title, plan.kinds[step - 1], attribute)
        if found is not None and step <= len(chain):
            facts["now"] = f"{key}.{step + 1}"
            return "click", found
        if found is not None:
            facts[key] = found
            return None
        if "Scroll down for more." in page:
            facts["now"] = now
            return "scroll", "down"
        facts[key] = "unknown"
        return None

    def respond(self, facts: dict[str, str], verb: str, argument: str) -> str:
        """``<think>facts</think><verb>argument</verb>``."""
        state = " | ".join(f"{key}={value}" for key, value in facts.items())
        return proto.wrap(self.tags.state, state) + proto.wrap(verb, argument)


def _last_block(context: str, tag: str) -> str:
    blocks = re.findall(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", context, re.DOTALL)
    return blocks[-1] if blocks else ""
