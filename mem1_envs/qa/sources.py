"""Where MultiQA's questions and search engine come from: the generated world, cached on disk.

Generating and indexing the default world takes a few seconds; the result is cached under
``$MEM1_ENVS_CACHE`` (default ``~/.cache/mem1_envs``) and memoised per process, so every env of
a vector env shares one copy. Two processes building the same world at once each build into a
private folder and atomically rename it into place; the loser keeps the winner's copy.

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

from mem1_envs.qa.search import BM25Engine, SearchEngine
from mem1_envs.qa.world import WORLD_SIZES, Question, World, WorldConfig, generate_world, split_contents

WORLD_FORMAT = 1  # bump when the generator's output changes, so stale caches are not reused


def cache_dir() -> str:
    """The on-disk cache folder (``$MEM1_ENVS_CACHE`` or ``~/.cache/mem1_envs``)."""
    return os.environ.get("MEM1_ENVS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mem1_envs")


@dataclass
class QASource:
    """Questions to draw episodes from and the engine that searches their corpus."""

    name: str
    questions: list[Question]
    engine: SearchEngine


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
    if not os.path.exists(os.path.join(folder, "done")):
        _build_into(folder, config, seed)
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
