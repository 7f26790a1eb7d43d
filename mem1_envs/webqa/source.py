"""Where WebQA's wiki and questions come from, memoised per process (vector envs share one copy).

* The generated world (default): :func:`~mem1_envs.webqa.wiki.wiki_from_world` over the world's
  passages, searched with the world's cached BM25 engine
  (:func:`mem1_envs.qa.sources.load_world_source`), and :func:`~mem1_envs.webqa.tasks.make_tasks`.
* A Search-R1 corpus file with FlashRAG question files (``corpus=`` and ``data=``, as
  ``MEM1-MultiQA-v0`` takes them): :func:`~mem1_envs.webqa.wiki.wiki_from_corpus` over the corpus,
  searched with its cached BM25 index (:func:`mem1_envs.qa.sources.load_source`).

>>> source = load_webqa_source("small", 0)
>>> len(source.wiki) > 0 and len(source.questions) == TASKS_PER_WORLD["small"]
True
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from mem1_envs.qa.corpus import iter_corpus
from mem1_envs.qa.sources import load_source, load_world_source, world_config
from mem1_envs.qa.world import Question, generate_world
from mem1_envs.webqa.tasks import make_tasks
from mem1_envs.webqa.wiki import Wiki, wiki_from_corpus, wiki_from_world

TASKS_PER_WORLD = {"default": 6000, "small": 1000}


@dataclass
class WebQASource:
    """A wiki and the questions asked over it."""

    name: str
    wiki: Wiki
    questions: list[Question]
    charset: str
    split_rule: str
    """``"position"`` (every 10th is a test question) or ``"text"`` (a hash of the text; ``data``)."""


@functools.lru_cache(maxsize=4)
def load_webqa_source(
    world: str = "default",
    world_seed: int = 0,
    corpus: str | None = None,
    data: object = None,
    on_bad_row: str = "error",
) -> WebQASource:
    """The source of these arguments (``data`` as a hashable: a string or a tuple of pairs)."""
    if corpus is None:
        qa = load_world_source(world, world_seed)
        generated = generate_world(world_config(world), world_seed)
        tasks = make_tasks(generated, TASKS_PER_WORLD.get(world, 1000), seed=world_seed)
        return WebQASource(
            f"world:{world}:{world_seed}",
            wiki_from_world(generated, qa.engine),
            list(tasks),
            qa.charset,
            "position",
        )
    qa = load_source(data, corpus, None, None, world, world_seed, on_bad_row)
    rows = ({"id": p.doc_id, "contents": p.contents} for p in iter_corpus(corpus))
    return WebQASource(qa.name, wiki_from_corpus(rows, qa.engine), qa.questions, qa.charset, qa.split_rule)
