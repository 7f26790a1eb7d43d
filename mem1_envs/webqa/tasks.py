"""WebQA's questions: answers reached by following links from a named (or described) start article.

Each :class:`Template` starts at an entity of the generated world (:mod:`mem1_envs.qa.world`),
follows a chain of relations (each one a link on the current article) and asks an attribute
of the last entity. "In which city was the founder of the studio that produced The Vrask Tide
born?" reads the film's article, follows its studio link, then the founder link, and finds
the birthplace on the founder's article. A person may be *described* instead of named ("the
person born in Sordae in 1929", only where that pair is unique), so the agent must search for
the description and pick the right result first.

``Task.path`` lists the articles on the way (start first); ``len(path)`` is the number of
pages to read, which sets the env's turn budget (:func:`turn_budget`).

>>> from mem1_envs.qa.world import SMALL_WORLD, generate_world
>>> tasks = make_tasks(generate_world(SMALL_WORLD, seed=0), 50, seed=0)
>>> len(tasks), all(2 <= len(t.path) <= 3 for t in tasks)
(50, True)
>>> tasks[0].golds[0] in tasks[0].golds
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mem1_envs.qa.world import Question, World


@dataclass(frozen=True)
class Template:
    """A question kind: the start entity kind, the relations followed, the attribute asked."""

    name: str
    start: str
    chain: tuple[tuple[str, str], ...]
    """(attribute, entity kind it points to) per link followed."""
    answer: tuple[str, str | None]
    """(attribute, entity kind it names, or None for a literal such as a year)."""
    text: str
    """The question, with ``{start}`` for the start entity's name or description."""


TEMPLATES = (
    Template(
        "employer_city",
        "people",
        (("employer", "companies"),),
        ("city", "cities"),
        "In which city are the headquarters of the company that {start} joined after graduating?",
    ),
    Template(
        "employer_founder",
        "people",
        (("employer", "companies"),),
        ("founder", "people"),
        "Who founded the company that {start} joined after graduating?",
    ),
    Template(
        "university_city",
        "people",
        (("university", "universities"),),
        ("city", "cities"),
        "In which city is the university that {start} attended?",
    ),
    Template(
        "birth_country",
        "people",
        (("city", "cities"),),
        ("country", "countries"),
        "In which country is the city where {start} was born?",
    ),
    Template(
        "employer_country",
        "people",
        (("employer", "companies"), ("city", "cities")),
        ("country", "countries"),
        "In which country are the headquarters of the company that {start} joined after graduating?",
    ),
    Template(
        "director_city",
        "films",
        (("director", "people"),),
        ("city", "cities"),
        "In which city was the director of {start} born?",
    ),
    Template(
        "studio_city",
        "films",
        (("studio", "companies"),),
        ("city", "cities"),
        "In which city are the headquarters of the studio that produced {start}?",
    ),
    Template(
        "studio_founder_city",
        "films",
        (("studio", "companies"), ("founder", "people")),
        ("city", "cities"),
        "In which city was the founder of the studio that produced {start} born?",
    ),
    Template(
        "founder_university",
        "companies",
        (("founder", "people"),),
        ("university", "universities"),
        "Which university did the founder of {start} attend?",
    ),
    Template(
        "founder_year",
        "companies",
        (("founder", "people"),),
        ("born", None),
        "In what year was the founder of {start} born?",
    ),
)
DESCRIBED = "the person born in {city} in {year}"
DESCRIBED_SHARE = 0.3  # share of person-start questions that describe the person instead of naming them


@dataclass(frozen=True)
class Task(Question):
    """A :class:`~mem1_envs.qa.world.Question` (qid, text, golds, kind, support_ids, source) plus its path."""

    path: tuple[str, ...] = ()
    """Titles of the articles to read, start first (empty for questions from ``data`` files)."""
    described: bool = False
    """Whether the start entity is described (found by a search for the description)."""


def make_tasks(world: World, n: int, seed: int = 0) -> list[Task]:
    """``n`` distinct tasks over ``world`` (the same arguments give the same tasks)."""
    entities = world.entities
    if not entities:
        raise ValueError("world has no entities (make it with mem1_envs.qa.world.generate_world)")
    rng = np.random.default_rng(seed)
    people = entities["people"]
    pairs: dict[tuple[int, int], list[int]] = {}
    for index, person in enumerate(people):
        pairs.setdefault((person["city"], person["born"]), []).append(index)
    tasks: list[Task] = []
    seen: set[str] = set()
    attempts = 0
    while len(tasks) < n:
        attempts += 1
        if attempts > 50 * n:
            raise ValueError(f"could not make {n} distinct tasks from this world (made {len(tasks)})")
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        group = entities[template.start]
        start = int(rng.integers(len(group)))
        entity, path = group[start], [group[start]["name"]]
        for attribute, kind in template.chain:
            entity = entities[kind][entity[attribute]]
            path.append(entity["name"])
        attribute, kind = template.answer
        gold = entities[kind][entity[attribute]]["name"] if kind else str(entity[attribute])
        name, described = path[0], False
        if template.start == "people" and rng.random() < DESCRIBED_SHARE:
            person = people[start]
            if len(pairs[(person["city"], person["born"])]) == 1:
                city = entities["cities"][person["city"]]["name"]
                name, described = DESCRIBED.format(city=city, year=person["born"]), True
        text = template.text.format(start=name)
        if text in seen:
            continue
        seen.add(text)
        qid = f"w{len(tasks)}"
        tasks.append(Task(qid, text, (gold,), template.name, (), "webqa", tuple(path), described))
    return tasks


def turn_budget(tasks: list[Question], slack: int = 2, unknown_path: int = 4) -> int:
    """Turns an episode over ``tasks`` needs: per task a search and one click per page, one answer, slack.

    A question without a path (from ``data`` files) counts ``unknown_path`` pages.
    """
    pages = sum(len(getattr(t, "path", ())) or unknown_path for t in tasks)
    return pages + len(tasks) + 1 + slack
