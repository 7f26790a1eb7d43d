"""Where MultiQA's questions and search engine come from: the generated world, cached on disk.

Generating and indexing the default world takes a few seconds; the result is cached under
``$MEM1_ENVS_CACHE`` (default ``~/.cache/mem1_envs``) and memoised per process, so every env of
a vector env shares one copy. Processes that need the same missing world at once build it once
(:func:`mem1_envs.cache.build_once`): one builds, the others wait and load its files.

Real data (:func:`load_source`): FlashRAG question files (:mod:`mem1_envs.qa.data`) searched
through a ``/retrieve`` server (:mod:`mem1_envs.qa.remote`), an index folder
(:mod:`mem1_envs.qa.index`, :mod:`mem1_envs.qa.dense`) or a corpus file indexed into the same
cache on first use, keyed by the corpus fingerprint.

>>> source = load_world_source("small", seed=0)
>>> len(source.questions) > 0 and isinstance(source.engine, BM25Engine)
True
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass

from mem1_envs.cache import build_once, cache_dir
from mem1_envs.protocol import ASCII_CHARSET
from mem1_envs.qa.world import WORLD_SIZES, Question, World, WorldConfig, generate_world, split_contents
from mem1_envs.search import BM25Engine, SearchEngine

WORLD_FORMAT = 1  # bump when the generator's output changes, so stale caches are not reused


@dataclass
class QASource:
    """Questions to draw episodes from and the engine that searches their corpus."""

    name: str
    questions: list[Question]
    engine: SearchEngine
    charset: str = ASCII_CHARSET
    """Characters observations may hold; the rest become ``?`` (real corpora: :func:`wide_charset`)."""
    split_rule: str = "position"
    """How ``split`` divides the questions: ``"position"`` (every 10th is a test question, the
    generated world) or ``"text"`` (a hash of the question text, real data: duplicates never
    straddle train and test; :func:`mem1_envs.qa.data.split_by_text`)."""


@functools.cache
def wide_charset() -> str:
    """Every printable character of Unicode's Basic Multilingual Plane, plus tab and newline.

    The observation charset of envs over real data (about 55,500 characters: Latin, Greek,
    Cyrillic, CJK, Arabic... as found in Wikipedia). Characters outside it (emoji and other
    astral-plane characters, control characters) are replaced by ``?``.

    >>> len(wide_charset()) > 50_000, "é" in wide_charset(), chr(0) in wide_charset()
    (True, True, False)
    """
    printable = (chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF and chr(c).isprintable())
    return "\t\n" + "".join(printable)


def world_config(size: str | WorldConfig) -> WorldConfig:
    if isinstance(size, WorldConfig):
        return size
    try:
        return WORLD_SIZES[size]
    except (KeyError, TypeError):
        raise ValueError(
            f"world must be one of {sorted(WORLD_SIZES)} or a WorldConfig, got {size!r}"
        ) from None


def build_engine(world: World) -> BM25Engine:
    """Index a world's passages with BM25."""
    titles, texts = zip(*(split_contents(p["contents"]) for p in world.passages), strict=True)
    return BM25Engine.build([p["id"] for p in world.passages], titles, texts)


@functools.lru_cache(maxsize=4)
def load_world_source(size: str | WorldConfig = "default", seed: int = 0) -> QASource:
    """The world of ``(size, seed)`` with its BM25 engine: from the cache, else built and cached."""
    config = world_config(size)
    digest = hashlib.sha1(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:12]
    key = f"world-v{WORLD_FORMAT}-{digest}-seed{seed}"
    folder = os.path.join(cache_dir(), key)
    build_once(folder, "done", lambda path: _build_into(path, config, seed))
    with open(os.path.join(folder, "questions.jsonl"), encoding="utf-8") as handle:
        questions = [_question_from_row(json.loads(line)) for line in handle]
    return QASource(
        f"world:{size if isinstance(size, str) else 'custom'}:{seed}",
        questions,
        BM25Engine.load(os.path.join(folder, "index")),
    )


def _build_into(folder: str, config: WorldConfig, seed: int) -> None:
    world = generate_world(config, seed)
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".building-", dir=os.path.dirname(folder))
    try:
        with open(os.path.join(scratch, "passages.jsonl"), "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(p) + "\n" for p in world.passages)
        with open(os.path.join(scratch, "questions.jsonl"), "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(asdict(q)) + "\n" for q in world.questions)
        build_engine(world).save(os.path.join(scratch, "index"))
        open(os.path.join(scratch, "done"), "w").close()
        os.rename(scratch, folder)
    except OSError:
        if not os.path.exists(os.path.join(folder, "done")):
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _question_from_row(row: dict) -> Question:
    return Question(
        row["qid"],
        row["text"],
        tuple(row["golds"]),
        row["kind"],
        tuple(row["support_ids"]),
        row.get("source", "world"),
    )


def load_source(
    data: object = None,
    corpus: str | None = None,
    index: str | None = None,
    search: str | None = None,
    world: str | WorldConfig = "default",
    world_seed: int = 0,
    on_bad_row: str = "error",
) -> QASource:
    """Resolve ``MEM1-MultiQA-v0``'s data arguments into a :class:`QASource` (memoised per process).

    Questions: the FlashRAG files of ``data`` (:func:`mem1_envs.qa.data.parse_data_spec`), else
    the generated world's. Engine, first that applies: the ``/retrieve`` server at ``search``;
    the index folder ``index`` (checked against ``corpus`` when given); a BM25 index of
    ``corpus`` built on first use into the cache (keyed by the corpus fingerprint); else the
    world's. With none of the four, this is :func:`load_world_source`.
    """
    if data is not None and not isinstance(data, tuple):  # hashable, for the memo
        from mem1_envs.qa.data import parse_data_spec

        data = tuple(parse_data_spec(data).items())
    if data is None and corpus is None and index is None and search is None:
        return load_world_source(world, world_seed)
    return _load_source(data, corpus, index, search, world, world_seed, on_bad_row)


@functools.lru_cache(maxsize=4)
def _load_source(
    data: tuple[tuple[str, str], ...] | None,
    corpus: str | None,
    index: str | None,
    search: str | None,
    world: str | WorldConfig,
    world_seed: int,
    on_bad_row: str,
) -> QASource:
    if data is not None:
        from mem1_envs.qa.data import load_qa_sources

        files = load_qa_sources(dict(data), on_bad_row=on_bad_row)
        questions = [q for loaded in files for q in loaded.questions]
        names = ",".join(loaded.name for loaded in files)
    else:
        world_source = load_world_source(world, world_seed)
        questions, names = world_source.questions, world_source.name
    engine: SearchEngine
    if search is not None:
        from mem1_envs.qa.remote import RemoteEngine

        engine, where = RemoteEngine(search), search
    elif index is not None:
        from mem1_envs.qa.index import open_index

        engine, where = open_index(index, corpus=corpus), index
    elif corpus is not None:
        engine, where = cached_corpus_index(corpus), corpus
    else:
        engine, where = load_world_source(world, world_seed).engine, "world"
    return QASource(
        f"{names}@{where}",
        questions,
        engine,
        charset=wide_charset(),
        split_rule="text" if data is not None else "position",
    )


def cached_corpus_index(corpus: str) -> SearchEngine:
    """The BM25 index of a corpus file from the cache, built there first if missing."""
    from mem1_envs.qa.corpus import corpus_fingerprint
    from mem1_envs.qa.index import INDEX_FORMAT, build_index, load_index

    folder = os.path.join(cache_dir(), f"index-bm25-v{INDEX_FORMAT}-{corpus_fingerprint(corpus)}")
    build_once(folder, "meta.json", lambda path: build_index(corpus, path))
    return load_index(folder, corpus=corpus)
