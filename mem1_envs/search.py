"""Search engines behind one small protocol: ``search(queries, k) -> hits per query``.

The default engine is BM25 from ``bm25s`` with its numba backend. Documents are kept as
parallel arrays (ids, titles, texts) so an engine over tens of thousands of passages is a few
numpy arrays and one sparse matrix, and a saved index loads memory-mapped.

>>> engine = BM25Engine.build(["a", "b"], ["Oslo", "Bergen"], ["Oslo is the capital.", "Bergen is rainy."])
>>> [hit.title for hit in engine.search(["rainy city"], k=1)[0]]
['Bergen']
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from mem1_envs.files import DamagedFileError, hint, load_bm25s, load_json, load_npy

# A small English stop-word list: enough to stop "the"/"of" from dominating BM25 scores.
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have in is it its of on or that the this to was "
    "were which who whom what when where why how did does do with".split()
)
_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens without stop words (the tokenizer of index and queries alike)."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


@functools.cache
def _cache_bm25s_kernels() -> None:
    """Turn on numba's on-disk cache for bm25s's retrieval kernels.

    bm25s jits them without ``cache=True``, so every process (each vector-env worker, each
    test subprocess) spent 5-20 s compiling before its first search; with the cache that
    first search takes under a second after the first process ever.
    """
    from numba.core.registry import CPUDispatcher

    try:
        from bm25s.numba import retrieve_utils, selection
    except ImportError:  # a bm25s without its numba module: nothing to cache
        return
    for module in (retrieve_utils, selection):
        for kernel in vars(module).values():
            if isinstance(kernel, CPUDispatcher):
                kernel.enable_caching()


@dataclass(frozen=True)
class Hit:
    """One retrieved passage."""

    doc_id: str
    title: str
    text: str
    score: float


@runtime_checkable
class SearchEngine(Protocol):
    """Anything that answers a batch of queries with the top ``k`` hits of each."""

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]: ...


class BM25Engine:
    """BM25 (Lucene variant, k1=1.5, b=0.75) over passages, numba-accelerated retrieval."""

    def __init__(self, retriever: object, ids: np.ndarray, titles: np.ndarray, texts: np.ndarray):
        _cache_bm25s_kernels()
        self._retriever = retriever
        self.ids, self.titles, self.texts = ids, titles, texts

    @classmethod
    def build(cls, ids: Sequence[str], titles: Sequence[str], texts: Sequence[str]) -> BM25Engine:
        """Index passages; the title is indexed with the text (as in Search-R1's corpus)."""
        import bm25s

        if not (len(ids) == len(titles) == len(texts)):
            raise ValueError(
                f"ids, titles and texts differ in length: {len(ids)}, {len(titles)}, {len(texts)}"
            )
        if len(ids) == 0:
            raise ValueError("cannot build a search engine over 0 documents")
        retriever = bm25s.BM25(backend="numba")
        tokens = [tokenize(f"{title} {text}") for title, text in zip(titles, texts, strict=True)]
        retriever.index(tokens, show_progress=False)
        return cls(retriever, np.asarray(ids), np.asarray(titles), np.asarray(texts))

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not queries:
            return []
        k = min(k, len(self.ids))
        # bm25s rejects a query with no known token; such a query simply finds nothing.
        vocabulary = self._retriever.vocab_dict
        token_lists = [[t for t in tokenize(q) if t in vocabulary] for q in queries]
        answerable = [i for i, tokens in enumerate(token_lists) if tokens]
        results: list[list[Hit]] = [[] for _ in queries]
        if not answerable:
            return results
        documents, scores = self._retriever.retrieve(
            [token_lists[i] for i in answerable], k=k, show_progress=False, n_threads=0
        )
        for row, query_index in enumerate(answerable):
            results[query_index] = [
                Hit(str(self.ids[d]), str(self.titles[d]), str(self.texts[d]), float(s))
                for d, s in zip(documents[row], scores[row], strict=True)
                if s > 0
            ]
        return results

    def save(self, folder: str) -> None:
        """Write the index and the passages to ``folder`` (created if missing)."""
        os.makedirs(folder, exist_ok=True)
        self._retriever.save(os.path.join(folder, "bm25"))
        np.save(os.path.join(folder, "ids.npy"), self.ids)
        with open(os.path.join(folder, "passages.json"), "w", encoding="utf-8") as handle:
            json.dump({"titles": self.titles.tolist(), "texts": self.texts.tolist()}, handle)

    @classmethod
    def load(cls, folder: str, mmap: bool = True) -> BM25Engine:
        """Load an engine written by :meth:`save` (the sparse index memory-mapped)."""
        with hint(f"if it is a cache entry, delete {folder!r} to have it rebuilt"):
            retriever = load_bm25s(os.path.join(folder, "bm25"), mmap=mmap)
            passages_path = os.path.join(folder, "passages.json")
            passages = load_json(passages_path)
            ids = load_npy(os.path.join(folder, "ids.npy"), mmap=False)
            titles, texts = passages.get("titles"), passages.get("texts")
            if not (
                isinstance(titles, list) and isinstance(texts, list) and len(titles) == len(texts) == len(ids)
            ):
                raise DamagedFileError(passages_path, f"does not hold {len(ids)} titles and texts")
        retriever.backend = "numba"
        return cls(retriever, ids, np.asarray(titles), np.asarray(texts))
