"""A seeded, fictional encyclopedia: the embedded corpus and questions of MEM1-MultiQA-v0.

The world holds countries, cities, universities, companies, people and films with attributes
and relations, rendered as Wikipedia-style passages in the Search-R1 corpus format
(``{"id", "contents": '"Title"\\ntext'}``). Every fact sits in exactly one passage; distractor
passages mention entities without answering anything. Names are invented (syllables, never
real words), so a pretrained model cannot answer from memory: it has to search.

Questions come in HotpotQA's kinds:

- single-hop: "In which city was Varnel Oskaruth born?"
- bridge (two hops): "What is the population of the city where Varnel Oskaruth was born?"
- comparison: "Who was born first, Varnel Oskaruth or Bressa Timolin?"

each with gold answers (and aliases) and the ids of its supporting passages. Answers are
unique by construction: every name is unique in the world, every fact is a function of its
entity, and comparisons between equal values are never asked (:func:`check_world` verifies it).

>>> world = generate_world(WorldConfig(people=40, films=20, cities=12, countries=4, companies=10,
...                                    universities=6, distractors=20, questions=30), seed=0)
>>> len(world.questions), world.questions[0].kind in QUESTION_KINDS
(30, True)
>>> world.passage(world.questions[0].support_ids[0])["contents"].startswith('"')
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

QUESTION_KINDS = ("single", "bridge", "comparison")

OCCUPATIONS = (
    "painter",
    "engineer",
    "novelist",
    "architect",
    "chemist",
    "composer",
    "diplomat",
    "economist",
    "physician",
    "sculptor",
    "historian",
    "astronomer",
    "pianist",
    "lawyer",
)
GENRES = ("drama", "comedy", "thriller", "documentary", "western", "musical", "science fiction")
INDUSTRIES = ("shipping", "textile", "software", "mining", "publishing", "aviation", "brewing", "banking")
COMPANY_SUFFIXES = ("Industries", "Holdings", "Works", "Group", "Trading", "Dynamics")
FILM_NOUNS = ("Tide", "Gate", "Harvest", "Lantern", "Crossing", "Winter", "Orchard", "Signal", "River")
_ONSETS = (
    "b",
    "br",
    "d",
    "dr",
    "f",
    "g",
    "gr",
    "h",
    "k",
    "kr",
    "l",
    "m",
    "n",
    "p",
    "qu",
    "r",
    "s",
    "st",
    "t",
    "th",
    "tr",
    "v",
    "vr",
    "z",
    "c",
    "j",
    "sh",
    "w",
)
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ei", "ou", "ia")
_CODAS = ("", "n", "r", "l", "s", "th", "m", "x", "nd", "rk", "sk", "v")


@dataclass(frozen=True)
class WorldConfig:
    """How many of each thing the generator makes (the default: about 29,000 passages)."""

    people: int = 6000
    films: int = 3000
    cities: int = 1200
    countries: int = 90
    companies: int = 900
    universities: int = 300
    distractors: int = 12000
    questions: int = 12000


SMALL_WORLD = WorldConfig(
    people=300,
    films=150,
    cities=60,
    countries=10,
    companies=50,
    universities=20,
    distractors=300,
    questions=1000,
)
WORLD_SIZES = {"default": WorldConfig(), "small": SMALL_WORLD}


@dataclass(frozen=True)
class Question:
    """One question with its gold answers (aliases) and supporting passage ids."""

    qid: str
    text: str
    golds: tuple[str, ...]
    kind: str
    support_ids: tuple[str, ...]
    source: str = "world"


@dataclass
class World:
    """The generated passages (Search-R1 rows) and questions."""

    passages: list[dict[str, str]]
    questions: list[Question]
    entity_names: list[str] = field(default_factory=list)
    entities: dict[str, list[dict]] = field(default_factory=dict)
    """The generated entities by kind (``people``, ``cities``...): attributes, relations as
    indexes into the other kinds, and the ids of their passages (``doc``, ``bio_doc``...);
    what tasks over the same world (``mem1_envs.webqa``) build their questions from."""
    _by_id: dict[str, int] = field(default_factory=dict, repr=False)

    def passage(self, doc_id: str) -> dict[str, str]:
        if not self._by_id:
            self._by_id = {p["id"]: i for i, p in enumerate(self.passages)}
        return self.passages[self._by_id[doc_id]]


def split_contents(contents: str) -> tuple[str, str]:
    """Split Search-R1 ``contents`` (``'"Title"\\ntext'``) into title and text.

    Exactly one pair of enclosing quotes is removed, so quotes that belong to the title survive
    and :func:`~mem1_envs.qa.corpus.join_contents` rebuilds the row's ``contents`` unchanged
    (wiki-18 writes ``"Weird Al" Yankovic`` as ``'""Weird Al" Yankovic"'``).

    >>> split_contents('""Weird Al" Yankovic"\\nAn American singer.')
    ('"Weird Al" Yankovic', 'An American singer.')
    """
    title, _, text = contents.partition("\n")
    title = title.strip()
    if len(title) >= 2 and title[0] == title[-1] == '"':
        title = title[1:-1]
    return title, text


class _Names:
    """Unique invented words; every entity name in a world is built from distinct words."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.used = rng, set()

    def word(self, syllables: int | None = None) -> str:
        while True:
            n = syllables or int(self.rng.integers(2, 4))
            parts = [
                self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_CODAS)
                for _ in range(n)
            ]
            word = "".join(parts).capitalize()
            if word not in self.used and len(word) >= 5:
                self.used.add(word)
                return word


class _Builder:
    """Generates entities, passages and questions from one random generator."""

    def __init__(self, config: WorldConfig, rng: np.random.Generator):
        self.c, self.rng, self.names = config, rng, _Names(rng)
        self.passages: list[dict[str, str]] = []

    def add_passage(self, title: str, text: str) -> str:
        doc_id = str(len(self.passages))
        self.passages.append({"id": doc_id, "contents": f'"{title}"\n{text}'})
        return doc_id

    def pick(self, items: list | tuple):
        return items[int(self.rng.integers(len(items)))]

    def year(self, low: int, high: int) -> int:
        return int(self.rng.integers(low, high + 1))

    def entities(self) -> None:
        rng, n = self.rng, self.names
        self.countries = [
            {"name": n.word(3), "language": n.word(2) + "ish", "currency": n.word(2).lower()}
            for _ in range(self.c.countries)
        ]
        self.cities = []
        populations = rng.choice(np.arange(20_000, 9_000_000), size=self.c.cities, replace=False)
        for i in range(self.c.cities):
            self.cities.append(
                {
                    "name": n.word(),
                    "country": i % self.c.countries,
                    "population": int(populations[i]),
                    "founded": self.year(800, 1900),
                }
            )
        for k, country in enumerate(self.countries):
            country["capital"] = k  # city k lies in country k (k % countries == k)
        self.universities = [
            {
                "name": f"{n.word()} University",
                "city": int(rng.integers(self.c.cities)),
                "founded": self.year(1100, 1990),
            }
            for _ in range(self.c.universities)
        ]
        self.people = []
        for _ in range(self.c.people):
            self.people.append(
                {
                    "name": f"{n.word(2)} {n.word()}",
                    "born": self.year(1900, 2000),
                    "city": int(rng.integers(self.c.cities)),
                    "occupation": self.pick(OCCUPATIONS),
                    "university": int(rng.integers(self.c.universities)),
                }
            )
        self.companies = [
            {
                "name": f"{n.word()} {self.pick(COMPANY_SUFFIXES)}",
                "founded": self.year(1850, 2015),
                "founder": int(rng.integers(self.c.people)),
                "city": int(rng.integers(self.c.cities)),
                "industry": self.pick(INDUSTRIES),
            }
            for _ in range(self.c.companies)
        ]
        for person in self.people:
            person["employer"] = int(rng.integers(self.c.companies))
        self.films = [
            {
                "name": f"The {n.word()} {self.pick(FILM_NOUNS)}",
                "year": self.year(1930, 2023),
                "director": int(rng.integers(self.c.people)),
                "studio": int(rng.integers(self.c.companies)),
                "genre": self.pick(GENRES),
            }
            for _ in range(self.c.films)
        ]

    def write_passages(self) -> None:
        """One passage per fact group; the ids of each fact's passage go into ``*_doc`` fields."""
        cities, people = self.cities, self.people
        for country in self.countries:
            capital = cities[country["capital"]]["name"]
            country["doc"] = self.add_passage(
                country["name"],
                (
                    f"{country['name']} is a country whose capital is {capital}. Its official language is "
                    f"{country['language']} and its currency is the {country['currency']}."
                ),
            )
        for city in cities:
            country = self.countries[city["country"]]["name"]
            city["doc"] = self.add_passage(
                city["name"],
                (
                    f"{city['name']} is a city in {country}. It was founded in {city['founded']} and has a "
                    f"population of {city['population']:,}."
                ),
            )
        for uni in self.universities:
            uni["doc"] = self.add_passage(
                uni["name"],
                (
                    f"{uni['name']} is a university in {cities[uni['city']]['name']}, founded in {uni['founded']}. "
                    "It is known for its library and its rowing club."
                ),
            )
        for person in people:
            first = person["name"].split()[0]
            person["bio_doc"] = self.add_passage(
                person["name"],
                (
                    f"{person['name']} was born in {cities[person['city']]['name']} in {person['born']}. "
                    f"{first} is known as {_article(person['occupation'])} whose early work drew wide attention."
                ),
            )
            uni, employer = self.universities[person["university"]], self.companies[person["employer"]]
            person["career_doc"] = self.add_passage(
                person["name"],
                (
                    f"{person['name']} studied at {uni['name']}. After graduating, {first} joined "
                    f"{employer['name']} and worked there as {_article(person['occupation'])} for many years."
                ),
            )
        for company in self.companies:
            company["doc"] = self.add_passage(
                company["name"],
                (
                    f"{company['name']} is {_article(company['industry'])} company founded in {company['founded']} by "
                    f"{people[company['founder']]['name']}. Its headquarters are in {cities[company['city']]['name']}."
                ),
            )
        for film in self.films:
            film["doc"] = self.add_passage(
                film["name"],
                (
                    f"{film['name']} is a {film['year']} {film['genre']} film directed by "
                    f"{people[film['director']]['name']} and produced by {self.companies[film['studio']]['name']}."
                ),
            )
        self.distractors()

    def distractors(self) -> None:
        """Passages that mention entities but answer no question."""
        templates = (
            "{p} once gave a lecture in {c} about the history of {i}.",
            "{f} was shown at a small festival in {c}, where {p} attended the screening.",
            "Critics compared {f} with the early work of {p}, though the two never met.",
            "{p} wrote a short essay on {f} for a magazine published in {c}.",
            "A street in {c} was renamed in honour of {p} after a public vote.",
        )
        for _ in range(self.c.distractors):
            p = self.pick(self.people)["name"]
            f = self.pick(self.films)["name"]
            c = self.pick(self.cities)["name"]
            text = self.pick(templates).format(p=p, f=f, c=c, i=self.pick(INDUSTRIES))
            self.add_passage(self.pick((p, f, c)), text)

    def questions(self) -> list[Question]:
        makers = [self.single, self.bridge, self.comparison]
        weights = np.array([0.4, 0.35, 0.25])
        questions: list[Question] = []
        seen: set[str] = set()
        while len(questions) < self.c.questions:
            maker = makers[int(self.rng.choice(3, p=weights))]
            question = maker(f"q{len(questions)}")
            if question is not None and question.text not in seen:
                seen.add(question.text)
                questions.append(question)
        return questions

    def single(self, qid: str) -> Question:
        cities, people = self.cities, self.people
        kind = int(self.rng.integers(7))
        if kind == 0:
            p = self.pick(people)
            return _q(
                qid,
                f"In which city was {p['name']} born?",
                [cities[p["city"]]["name"]],
                "single",
                [p["bio_doc"]],
            )
        if kind == 1:
            p = self.pick(people)
            return _q(qid, f"In what year was {p['name']} born?", [str(p["born"])], "single", [p["bio_doc"]])
        if kind == 2:
            p = self.pick(people)
            uni = self.universities[p["university"]]
            return _q(
                qid, f"Which university did {p['name']} attend?", [uni["name"]], "single", [p["career_doc"]]
            )
        if kind == 3:
            f = self.pick(self.films)
            return _q(
                qid, f"Who directed {f['name']}?", [people[f["director"]]["name"]], "single", [f["doc"]]
            )
        if kind == 4:
            c = self.pick(self.companies)
            return _q(qid, f"Who founded {c['name']}?", [people[c["founder"]]["name"]], "single", [c["doc"]])
        if kind == 5:
            k = self.pick(self.countries)
            return _q(
                qid,
                f"What is the capital of {k['name']}?",
                [cities[k["capital"]]["name"]],
                "single",
                [k["doc"]],
            )
        city = self.pick(cities)
        country = self.countries[city["country"]]["name"]
        return _q(qid, f"In which country is {city['name']} located?", [country], "single", [city["doc"]])

    def bridge(self, qid: str) -> Question:
        cities, people = self.cities, self.people
        kind = int(self.rng.integers(5))
        if kind == 0:
            p = self.pick(people)
            city = cities[p["city"]]
            return _q(
                qid,
                f"What is the population of the city where {p['name']} was born?",
                [f"{city['population']:,}", str(city["population"])],
                "bridge",
                [p["bio_doc"], city["doc"]],
            )
        if kind == 1:
            p = self.pick(people)
            city = cities[p["city"]]
            country = self.countries[city["country"]]["name"]
            return _q(
                qid,
                f"In which country was {p['name']} born?",
                [country],
                "bridge",
                [p["bio_doc"], city["doc"]],
            )
        if kind == 2:
            p = self.pick(people)
            uni = self.universities[p["university"]]
            return _q(
                qid,
                f"In what year was the university attended by {p['name']} founded?",
                [str(uni["founded"])],
                "bridge",
                [p["career_doc"], uni["doc"]],
            )
        if kind == 3:
            f = self.pick(self.films)
            director = people[f["director"]]
            return _q(
                qid,
                f"In which city was the director of {f['name']} born?",
                [cities[director["city"]]["name"]],
                "bridge",
                [f["doc"], director["bio_doc"]],
            )
        c = self.pick(self.companies)
        city = cities[c["city"]]
        country = self.countries[city["country"]]["name"]
        return _q(
            qid,
            f"In which country are the headquarters of {c['name']}?",
            [country],
            "bridge",
            [c["doc"], city["doc"]],
        )

    def comparison(self, qid: str) -> Question | None:
        kind = int(self.rng.integers(3))
        if kind == 0:
            a, b, key = self.pick(self.people), self.pick(self.people), "born"
            text = f"Who was born first, {a['name']} or {b['name']}?"
            docs = [a["bio_doc"], b["bio_doc"]]
        elif kind == 1:
            a, b, key = self.pick(self.films), self.pick(self.films), "year"
            text = f"Which film was released earlier, {a['name']} or {b['name']}?"
            docs = [a["doc"], b["doc"]]
        else:
            a, b, key = self.pick(self.cities), self.pick(self.cities), "population"
            text = f"Which city has a larger population, {a['name']} or {b['name']}?"
            docs = [a["doc"], b["doc"]]
        if a[key] == b[key]:
            return None  # a tie has no unique answer
        smaller_wins = key != "population"
        winner = a if (a[key] < b[key]) == smaller_wins else b
        return _q(qid, text, [winner["name"]], "comparison", docs)


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _q(qid: str, text: str, golds: list[str], kind: str, docs: list[str]) -> Question:
    return Question(qid, text, tuple(golds), kind, tuple(docs))


def generate_world(config: WorldConfig = WorldConfig(), seed: int = 0) -> World:
    """Generate a world: the same ``(config, seed)`` always gives the same world."""
    builder = _Builder(config, np.random.default_rng(seed))
    builder.entities()
    builder.write_passages()
    entities = (
        builder.countries,
        builder.cities,
        builder.universities,
        builder.people,
        builder.companies,
        builder.films,
    )
    names = [entity["name"] for group in entities for entity in group]
    kinds = ("countries", "cities", "universities", "people", "companies", "films")
    world = World(builder.passages, builder.questions(), names, dict(zip(kinds, entities, strict=True)))
    check_world(world)
    return world


def check_world(world: World) -> None:
    """Raise if a question could have more than one answer or lacks its supporting passages.

    Entity names must be unique (a shared name would make "Who directed X?" ambiguous), every
    supporting passage must exist, and a gold answer must stand in the supporting passages.
    """
    duplicates = len(world.entity_names) - len(set(world.entity_names))
    if duplicates:
        raise AssertionError(f"{duplicates} entity names are used twice")
    for question in world.questions:
        try:
            support = " ".join(world.passage(d)["contents"] for d in question.support_ids)
        except KeyError as missing:
            raise AssertionError(f"question {question.qid} cites a missing passage {missing}") from None
        if not any(gold in support for gold in question.golds):
            raise AssertionError(f"question {question.qid}: no gold answer in its supporting passages")
