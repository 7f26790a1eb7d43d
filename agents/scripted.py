"""Scripted MEM1-style agents: they read only their observations and keep findings in their state.

``MultiQAScriptedAgent`` plays ``MEM1-MultiQA-v0`` on the generated world. It holds nothing
between turns: every turn it re-reads the questions from the prompt, its own last internal
state and the last search results from the observation, writes an updated internal state,
then searches for the next missing fact or answers all questions at once. So it works the
same under the bounded ``mem1`` context, a ``window`` or the ``full`` history.

Its internal state is a compact list of facts, ``|``-separated, in one of two formats:

* ``"indexed"`` (the default)::

    Q1=Oslo | Q2.a=Bergen | next=Q2.b#1

  ``Qi=value`` is a final answer, ``Qi.a=value`` an intermediate hop, ``next=Qi.b#k`` the fact
  the last search looked for (attempt ``k``).
* ``"chained"``, which names no question by its number::

    done=Oslo | now=Which city has a larger population, Bergen or Tromso? | a=285,000 | try=2

  ``done`` holds the answers so far (``;``-separated, as the final answer writes them), ``now``
  the question being worked on, copied from the prompt, ``a`` its first hop's value and ``try``
  the attempt of the last search when it is not the first. Moving on means copying the question
  that follows ``now`` in the prompt, and answering means copying ``done``: steps that are the
  same at any number of questions, where the indexed format asks for a ``Q8`` that a policy
  trained at two questions has never written.

>>> import gymnasium as gym, mem1_envs
>>> env = gym.make("MEM1-MultiQA-v0", world="small", num_objectives=2)
>>> agent = MultiQAScriptedAgent()
>>> observation, info = env.reset(seed=3)
>>> agent.reset(seed=3)
>>> done = False
>>> while not done:
...     observation, reward, terminated, truncated, info = env.step(agent.act(observation, info))
...     done = terminated or truncated
>>> reward
2.0
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mem1_envs import protocol as proto

MAX_ATTEMPTS = 2
STATE_FORMATS = ("indexed", "chained")
_YEAR = r"(\d{4})"
_WORD = r"([A-Z][a-z]+)"
_NAME = r"([A-Z][a-z]+ [A-Z][a-z]+)"


@dataclass(frozen=True)
class Fact:
    """How to look one fact up: search queries (one per attempt) and the pattern that reads it."""

    queries: tuple[str, ...]
    pattern: str


def birth_city(person: str) -> Fact:
    return Fact(
        (f"{person} born", f"{person} was born in"), rf"{re.escape(person)} was born in {_WORD} in \d{{4}}"
    )


def birth_year(person: str) -> Fact:
    return Fact(
        (f"{person} born", f"{person} was born in"), rf"{re.escape(person)} was born in \w+ in {_YEAR}"
    )


def city_country(city: str) -> Fact:
    return Fact(
        (f"{city} city population", f"{city} is a city in"), rf"{re.escape(city)} is a city in {_WORD}\."
    )


def city_population(city: str) -> Fact:
    return Fact(
        (f"{city} city population", f"{city} is a city in population"),
        rf"{re.escape(city)} is a city in \w+\. It was founded in \d+ and has a population of ([\d,]+)\.",
    )


def university(person: str) -> Fact:
    return Fact(
        (f"{person} studied university", f"{person} studied at"),
        rf"{re.escape(person)} studied at {_WORD} University",
    )


def university_founded(name: str) -> Fact:
    return Fact(
        (f"{name} university founded", f"{name} is a university in"),
        rf"{re.escape(name)} is a university in \w+, founded in {_YEAR}",
    )


def film_director(film: str) -> Fact:
    return Fact(
        (f"{film} film directed", f"{film} is a film directed by"),
        rf"{re.escape(film)} is a \d{{4}} [a-z ]+ film directed by {_NAME}",
    )


def film_year(film: str) -> Fact:
    return Fact((f"{film} film directed", f"{film} is a film"), rf"{re.escape(film)} is a {_YEAR} ")


def company_founder(company: str) -> Fact:
    return Fact(
        (f"{company} company founded", f"{company} is a company founded by"),
        rf"{re.escape(company)} is an? \w+ company founded in \d{{4}} by {_NAME}\.",
    )


def company_city(company: str) -> Fact:
    return Fact(
        (f"{company} company headquarters", f"{company} headquarters are in"),
        rf"{re.escape(company)} is an? \w+ company .*?Its headquarters are in {_WORD}\.",
    )


def country_capital(country: str) -> Fact:
    return Fact(
        (f"{country} country capital", f"{country} is a country whose capital is"),
        rf"{re.escape(country)} is a country whose capital is {_WORD}\.",
    )


# A plan maps a question to its facts: (fact of hop a, fact of hop b given a's value, how to
# combine). Single-hop questions have one fact; bridges feed hop a's value into hop b;
# comparisons look up the same fact of two entities and pick one.
Plan = tuple[Callable[[], Fact], Callable[[str], Fact] | None, Callable[[str, str], str] | None]

_PLANS: list[tuple[re.Pattern[str], Callable[..., Plan]]] = [
    (
        re.compile(r"What is the population of the city where (.+) was born$"),
        lambda p: (lambda: birth_city(p), city_population, None),
    ),
    (re.compile(r"In which country was (.+) born$"), lambda p: (lambda: birth_city(p), city_country, None)),
    (
        re.compile(r"In what year was the university attended by (.+) founded$"),
        lambda p: (lambda: university(p), lambda u: university_founded(f"{u} University"), None),
    ),
    (
        re.compile(r"In which city was the director of (.+) born$"),
        lambda f: (lambda: film_director(f), birth_city, None),
    ),
    (
        re.compile(r"In which country are the headquarters of (.+)$"),
        lambda c: (lambda: company_city(c), city_country, None),
    ),
    (
        re.compile(r"Who was born first, (.+) or (.+)$"),
        lambda a, b: (
            lambda: birth_year(a),
            lambda _: birth_year(b),
            lambda x, y: a if int(x) < int(y) else b,
        ),
    ),
    (
        re.compile(r"Which film was released earlier, (.+) or (.+)$"),
        lambda a, b: (lambda: film_year(a), lambda _: film_year(b), lambda x, y: a if int(x) < int(y) else b),
    ),
    (
        re.compile(r"Which city has a larger population, (.+) or (.+)$"),
        lambda a, b: (
            lambda: city_population(a),
            lambda _: city_population(b),
            lambda x, y: a if _number(x) > _number(y) else b,
        ),
    ),
    (re.compile(r"In which city was (.+) born$"), lambda p: (lambda: birth_city(p), None, None)),
    (re.compile(r"In what year was (.+) born$"), lambda p: (lambda: birth_year(p), None, None)),
    (
        re.compile(r"Which university did (.+) attend$"),
        lambda p: (lambda: university(p), None, lambda u, _: f"{u} University"),
    ),
    (re.compile(r"Who directed (.+)$"), lambda f: (lambda: film_director(f), None, None)),
    (re.compile(r"Who founded (.+)$"), lambda c: (lambda: company_founder(c), None, None)),
    (re.compile(r"What is the capital of (.+)$"), lambda k: (lambda: country_capital(k), None, None)),
    (re.compile(r"In which country is (.+) located$"), lambda x: (lambda: city_country(x), None, None)),
]


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def plan_for(question: str) -> Plan | None:
    """The plan of a question, or None when the agent does not know its kind."""
    for pattern, make in _PLANS:
        match = pattern.match(question.strip().rstrip("?"))
        if match:
            return make(*match.groups())
    return None


class MultiQAScriptedAgent:
    """Answers MultiQA questions one at a time, keeping all findings in its internal state.

    Args:
        protocol: the env's tag set (``"mem1"`` or ``"paper"``).
        state: the internal state's format, ``"indexed"`` or ``"chained"`` (module docstring).
    """

    def __init__(self, protocol: str = "mem1", state: str = "indexed"):
        if state not in STATE_FORMATS:
            raise ValueError(f"state must be one of {STATE_FORMATS}, got {state!r}")
        self.tags = proto.get_tag_set(protocol)
        self.state = state

    @classmethod
    def for_env(cls, env: Any, state: str = "indexed") -> MultiQAScriptedAgent:
        """The agent for a ``MEM1-MultiQA-v0`` env, in its tag set (:mod:`mem1_envs.registry`)."""
        return cls(env.unwrapped.config.protocol, state)

    def reset(self, seed: int | None = None) -> None:
        """Nothing to reset: everything the agent knows is in its observation."""

    def act(self, observation: str, info: dict[str, Any] | None = None) -> str:
        questions, context = self._split_prompt(observation)
        facts = self._read_state(context)
        if self.state == "chained":
            facts = self._unchain(facts)
        documents = self._last_block(context, self.tags.observation)
        pending = facts.pop("next", None)
        if pending is not None:
            self._read_pending(pending, questions, facts, documents)
        last_turn = "1 turn left" in documents
        step = None if last_turn else self._next_search(questions, facts)
        if step is None:
            answers = "; ".join(facts.get(f"Q{i}", "unknown") for i in range(1, len(questions) + 1))
            if self.state == "chained":
                facts = {"done": answers}
            return self._respond(facts, "answer", answers)
        key, query = step
        facts["next"] = key
        if self.state == "chained":
            facts = self._chain(facts, questions)
        return self._respond(facts, "search", query)

    # -- reading the observation ------------------------------------------------------------
    @staticmethod
    def _split_prompt(observation: str) -> tuple[list[str], str]:
        _, _, rest = observation.partition("Answer the following questions: ")
        line, _, context = rest.partition("\n")
        questions = [q.strip() + "?" for q in line.strip().rstrip("?").split("?; ")]
        return questions, context

    def _last_block(self, context: str, tag: str) -> str:
        blocks = re.findall(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", context, re.DOTALL)
        return blocks[-1] if blocks else ""

    def _read_state(self, context: str) -> dict[str, str]:
        state = self._last_block(context, self.tags.state)
        facts = {}
        for item in state.split("|"):
            key, sep, value = item.partition("=")
            if sep:
                facts[key.strip()] = value.strip()
        return facts

    @staticmethod
    def _unchain(items: dict[str, str]) -> dict[str, str]:
        """A chained state as indexed facts: the question worked on is the one after ``done``."""
        answers = items["done"].split("; ") if "done" in items else []
        facts = {f"Q{i}": answer for i, answer in enumerate(answers, 1)}
        if "now" in items:
            index = f"Q{len(answers) + 1}"
            if "a" in items:
                facts[f"{index}.a"] = items["a"]
            facts["next"] = f"{index}.{'b' if 'a' in items else 'a'}#{items.get('try', '1')}"
        return facts

    @staticmethod
    def _chain(facts: dict[str, str], questions: list[str]) -> dict[str, str]:
        """Indexed facts, about to search, as a chained state (the inverse of ``_unchain``)."""
        key, _, attempt = facts["next"].partition("#")
        index = key.partition(".")[0]
        number = int(index[1:])
        # A question of a kind the agent has no plan for was skipped unanswered: "unknown" keeps
        # its place in ``done``, as the indexed format's final answer does.
        earlier = (facts.get(f"Q{i}", "unknown") for i in range(1, number))
        items = {"done": "; ".join(earlier)} if number > 1 else {}
        items["now"] = questions[number - 1]
        if f"{index}.a" in facts:
            items["a"] = facts[f"{index}.a"]
        if attempt != "1":
            items["try"] = attempt
        return items

    def _read_pending(
        self, pending: str, questions: list[str], facts: dict[str, str], documents: str
    ) -> None:
        """Read the fact the last search looked for; on failure count the attempt."""
        key, _, attempt = pending.partition("#")
        index, _, hop = key.partition(".")
        plan = plan_for(questions[int(index[1:]) - 1])
        if plan is None:
            return
        fact = self._fact(plan, hop, facts.get(f"{index}.a", ""))
        match = re.search(fact.pattern, documents)
        if match is None:
            facts[f"{key}#tries"] = attempt
            return
        facts.pop(f"{key}#tries", None)
        first_hop_only = plan[1] is None
        if hop == "a" and not first_hop_only:
            facts[f"{index}.a"] = match.group(1)
            return
        combine = plan[2]
        if combine is None:
            facts[index] = match.group(1)
        elif first_hop_only:
            facts[index] = combine(match.group(1), "")
        else:
            facts[index] = combine(facts.pop(f"{index}.a"), match.group(1))

    @staticmethod
    def _fact(plan: Plan, hop: str, first_value: str) -> Fact:
        first, second, _ = plan
        return first() if hop == "a" or second is None else second(first_value)

    def _next_search(self, questions: list[str], facts: dict[str, str]) -> tuple[str, str] | None:
        """The next fact to look up: (pending key with attempt, query), or None to answer."""
        for number, question in enumerate(questions, 1):
            index = f"Q{number}"
            plan = plan_for(question)
            if index in facts or plan is None:
                continue
            hop = "b" if f"{index}.a" in facts else "a"
            key = f"{index}.{hop}"
            tries = int(facts.get(f"{key}#tries", "0"))
            if tries >= MAX_ATTEMPTS:
                facts[index] = "unknown"  # give up on this question; keep the others going
                continue
            fact = self._fact(plan, hop, facts.get(f"{index}.a", ""))
            return f"{key}#{tries + 1}", fact.queries[tries]
        return None

    def _respond(self, facts: dict[str, str], kind: str, content: str) -> str:
        state = " | ".join(f"{key}={value}" for key, value in facts.items())
        return proto.wrap(self.tags.state, state) + proto.wrap(self.tags.tag_for(kind), content)


from agents.scripted_shop import WebShopScriptedAgent  # noqa: E402  (one import path for every scripted agent)

__all__ = ["MultiQAScriptedAgent", "WebShopScriptedAgent", "plan_for"]
