"""The wiki: articles (title -> paragraphs), links between them and a search engine over paragraphs.

Built from Search-R1 rows (``{"id", "contents": '"Title"\\ntext'}``) by :func:`wiki_from_corpus`:
one article per title (in order of first appearance), the rows of a title as its paragraphs
(in row order), a link wherever a paragraph mentions another article's title
(:mod:`mem1_envs.webqa.links`). :func:`wiki_from_world` does the same for the generated world of
:mod:`mem1_envs.qa.world`, whose names are unique, so a person's page links to their birthplace,
university and employer, a company's to its founder and headquarters city, a city's to its
country, a film's to its director and studio.

Paragraphs are stored flat (article ``a`` owns paragraphs ``first[a]:first[a + 1]``), links as
arrays (:class:`~mem1_envs.webqa.links.Links`), so a wiki of 100,000 passages is a few lists and
arrays. Search is any :class:`~mem1_envs.search.SearchEngine` whose hit ids are the rows' ids
(by default BM25 over the paragraphs, built on first use).

>>> wiki = wiki_from_corpus([
...     {"id": "0", "contents": '"Oslo"\\nOslo is the capital of Norway.'},
...     {"id": "1", "contents": '"Norway"\\nNorway is a country.'},
...     {"id": "2", "contents": '"Oslo"\\nOslo has a fjord.'},
... ])
>>> wiki.titles, wiki.paragraphs(0)
(['Oslo', 'Norway'], ['Oslo is the capital of Norway.', 'Oslo has a fjord.'])
>>> wiki.links_of(0)
[(23, 29, 1)]
>>> [wiki.titles[a] for a, _ in wiki.search("fjord", 3)]
['Oslo']
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from mem1_envs.qa.world import World, split_contents
from mem1_envs.search import BM25Engine, SearchEngine
from mem1_envs.webqa.links import Links, find_links


class Wiki:
    """Articles, their paragraphs and links, and a search engine (see the module docstring)."""

    def __init__(
        self,
        titles: list[str],
        first: np.ndarray,
        texts: list[str],
        doc_ids: list[str],
        links: Links,
        engine: SearchEngine | None = None,
    ):
        self.titles, self.first, self.texts, self.doc_ids, self.links = titles, first, texts, doc_ids, links
        self.index = {title: a for a, title in enumerate(titles)}
        self._paragraph_of = {doc_id: p for p, doc_id in enumerate(doc_ids)}
        self.owner = np.repeat(np.arange(len(titles)), np.diff(first))
        self._engine = engine
        self.page_cache: OrderedDict[Any, Any] = OrderedDict()
        """Laid-out pages by state (:func:`mem1_envs.webqa.pages.build_page`)."""

    def __len__(self) -> int:
        return len(self.titles)

    @property
    def engine(self) -> SearchEngine:
        if self._engine is None:  # BM25 over the paragraphs, title indexed with the text
            owner_titles = [self.titles[a] for a in self.owner]
            self._engine = BM25Engine.build(self.doc_ids, owner_titles, self.texts)
        return self._engine

    def paragraph_range(self, article: int) -> range:
        return range(int(self.first[article]), int(self.first[article + 1]))

    def paragraphs(self, article: int) -> list[str]:
        return [self.texts[p] for p in self.paragraph_range(article)]

    def links_of(self, paragraph: int) -> list[tuple[int, int, int]]:
        """``(start, end, target article)`` of one (global) paragraph's links."""
        return self.links.spans(paragraph)

    def search(self, query: str, k: int) -> list[tuple[int, int]]:
        """Up to ``k`` distinct articles matching ``query``, best first: ``(article, best paragraph)``."""
        if not query.strip():
            return []
        hits = self.engine.search([query], k * 3)[0]
        found: dict[int, int] = {}
        for hit in hits:
            paragraph = self._paragraph_of.get(hit.doc_id)
            if paragraph is None:
                continue  # an engine over more than this wiki: ignore the rest
            found.setdefault(int(self.owner[paragraph]), paragraph)
            if len(found) == k:
                break
        return list(found.items())


def wiki_from_corpus(rows: Iterable[Mapping[str, str]], engine: SearchEngine | None = None) -> Wiki:
    """A wiki from Search-R1 rows (see the module docstring); ``engine`` searches the rows' ids."""
    by_title: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        title, text = split_contents(row["contents"])
        by_title.setdefault(title, []).append((str(row["id"]), text))
    titles = list(by_title)
    counts = np.fromiter((len(by_title[t]) for t in titles), dtype=np.int64, count=len(titles))
    first = np.zeros(len(titles) + 1, dtype=np.int64)
    np.cumsum(counts, out=first[1:])
    doc_ids = [doc_id for t in titles for doc_id, _ in by_title[t]]
    texts = [text for t in titles for _, text in by_title[t]]
    owners = np.repeat(np.arange(len(titles)), counts)
    return Wiki(titles, first, texts, doc_ids, find_links(texts, titles, owners), engine)


def wiki_from_world(world: World, engine: SearchEngine | None = None) -> Wiki:
    """The wiki of a generated world: every entity an article, its passages as paragraphs.

    ``engine`` (e.g. the world's cached BM25 engine from :func:`mem1_envs.qa.sources.load_world_source`,
    whose ids are the passages' ids) saves indexing the passages again.
    """
    return wiki_from_corpus(world.passages, engine)
