"""Persistent BM25 indexes over Search-R1 corpora: a streaming build and a memory-mapped load.

:func:`build_index` reads the corpus once. Each passage is tokenized (the tokenizer of
:mod:`mem1_envs.qa.search`), written to a :class:`~mem1_envs.qa.corpus.PassageStore` and
reduced to integer ``(document, term, count)`` triples in numpy chunks, so memory grows with
the number of distinct terms per passage (12 bytes each), never with Python objects per token.
The BM25 scores (Lucene variant, the formula of ``bm25s``) are then computed with numpy and saved
in ``bm25s``'s own format, which :func:`load_index` opens memory-mapped.

Every index records a fingerprint of the corpus file it was built from
(:func:`~mem1_envs.qa.corpus.corpus_fingerprint`); loading it next to a different corpus is an
:class:`IndexMismatchError`, not silently wrong passages.

>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> corpus = os.path.join(folder, "corpus.jsonl")
>>> with open(corpus, "w") as handle:
...     _ = handle.write('{"id": "1", "contents": "\\\\"Oslo\\\\"\\\\nOslo is the capital of Norway."}\\n')
...     _ = handle.write('{"id": "2", "contents": "\\\\"Bergen\\\\"\\\\nBergen is a rainy city."}\\n')
>>> info = build_index(corpus, os.path.join(folder, "index"), show_progress=False)
>>> engine = load_index(os.path.join(folder, "index"), corpus=corpus)
>>> [hit.doc_id for hit in engine.search(["capital of Norway"], k=1)[0]]
['1']
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from array import array
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

from mem1_envs.qa.corpus import Passage, PassageStore, corpus_fingerprint, iter_corpus
from mem1_envs.qa.search import BM25Engine, SearchEngine, tokenize

INDEX_FORMAT = 1  # bump when the on-disk layout or the tokenizer changes
TOKENIZER = "mem1-envs-regex-stopwords-v1"
META_FILE = "meta.json"


class IndexMismatchError(ValueError):
    """An index folder that does not belong to the corpus it is used with, or is damaged."""


@dataclass(frozen=True)
class IndexInfo:
    """What ``meta.json`` of an index folder records."""

    kind: str
    """``"bm25"`` or ``"dense"``."""
    format: int
    """On-disk layout version (:data:`INDEX_FORMAT` for BM25)."""
    corpus_path: str
    """Absolute path of the corpus at build time (informative; the fingerprint is what counts)."""
    corpus_fingerprint: str
    """:func:`~mem1_envs.qa.corpus.corpus_fingerprint` of the corpus at build time."""
    num_passages: int
    """Passages in the index."""
    build_seconds: float
    """Wall time of the build."""
    params: dict
    """Kind-specific parameters (BM25: k1, b, tokenizer, vocabulary size; dense: model, prefixes...)."""


def read_info(folder: str) -> IndexInfo:
    """The :class:`IndexInfo` of an index folder; a clear error if it is not one."""
    path = os.path.join(folder, META_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"not an index folder (no {META_FILE}): {folder!r}")
    with open(path, encoding="utf-8") as handle:
        return IndexInfo(**json.load(handle))


def write_info(folder: str, info: IndexInfo) -> None:
    with open(os.path.join(folder, META_FILE), "w", encoding="utf-8") as handle:
        json.dump(asdict(info), handle, indent=2)


def check_corpus(info: IndexInfo, corpus: str | None, folder: str) -> None:
    """Raise :class:`IndexMismatchError` when ``corpus`` is not the file the index was built from."""
    if corpus is None:
        return
    found = corpus_fingerprint(corpus)
    if found != info.corpus_fingerprint:
        raise IndexMismatchError(
            f"index {folder!r} was built from a corpus with fingerprint {info.corpus_fingerprint} "
            f"({info.corpus_path}), but {corpus!r} has fingerprint {found}; rebuild the index "
            f"(python -m mem1_envs build-index --corpus {corpus} --out DIR)"
        )


class _TermCounter:
    """Turns passages into ``(document, term, count)`` triples, a numpy chunk at a time."""

    def __init__(self, chunk_tokens: int):
        self.vocab: dict[str, int] = {}
        self.doc_lengths = array("i")
        self._tokens = array("i")
        self._chunk_lengths = array("i")
        self._chunk_start = 0  # index of the first document of the pending chunk
        self._chunk_tokens = chunk_tokens
        self.docs: list[np.ndarray] = []
        self.terms: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []

    def add(self, passage: Passage) -> None:
        vocab = self.vocab
        ids = [vocab.setdefault(token, len(vocab)) for token in tokenize(f"{passage.title} {passage.text}")]
        self._tokens.extend(ids)
        self._chunk_lengths.append(len(ids))
        self.doc_lengths.append(len(ids))
        if len(self._tokens) >= self._chunk_tokens:
            self.flush()

    def flush(self) -> None:
        lengths = np.frombuffer(self._chunk_lengths, dtype=np.int32)
        if len(lengths):
            tokens = np.frombuffer(self._tokens, dtype=np.int32).astype(np.int64)
            docs = np.repeat(np.arange(self._chunk_start, self._chunk_start + len(lengths)), lengths)
            keys, counts = np.unique((docs << 32) | tokens, return_counts=True)
            self.docs.append((keys >> 32).astype(np.int32))
            self.terms.append((keys & 0xFFFFFFFF).astype(np.int32))
            self.counts.append(counts.astype(np.int32))
            self._chunk_start += len(lengths)
        self._tokens, self._chunk_lengths = array("i"), array("i")


def bm25_matrix(
    docs: np.ndarray,
    terms: np.ndarray,
    counts: np.ndarray,
    doc_lengths: np.ndarray,
    vocab_size: int,
    k1: float = 1.5,
    b: float = 0.75,
) -> dict:
    """BM25 (Lucene) scores of ``(document, term, count)`` triples as ``bm25s``'s CSC arrays.

    Same formula as ``bm25s``: idf = ln(1 + (N - df + 0.5) / (df + 0.5)) and
    tfc = tf / (tf + k1 * (1 - b + b * len / avg_len)); score = idf * tfc (float32).
    """
    num_docs = len(doc_lengths)
    average = float(doc_lengths.mean()) if num_docs else 0.0
    df = np.bincount(terms, minlength=vocab_size)
    idf = np.log1p((num_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
    tf = counts.astype(np.float32)
    norm = (k1 * (1 - b + b * doc_lengths[docs] / average)).astype(np.float32)
    scores = idf[terms] * (tf / (tf + norm))
    order = np.argsort(terms, kind="stable")  # column-major; documents stay ascending per term
    indptr = np.zeros(vocab_size + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    return {
        "data": scores[order].astype(np.float32),
        "indices": docs[order].astype(np.int32),
        "indptr": indptr,
        "num_docs": num_docs,
    }


def build_index(
    corpus: str,
    out: str,
    *,
    k1: float = 1.5,
    b: float = 0.75,
    show_progress: bool = True,
    overwrite: bool = False,
    chunk_tokens: int = 5_000_000,
    limit: int | None = None,
) -> IndexInfo:
    """Build a BM25 index of the Search-R1 corpus ``corpus`` into the folder ``out``.

    The folder is written under a temporary name and renamed into place at the end, so an
    interrupted build never leaves a half index that loads. ``limit`` indexes only the first
    passages (for trials). Returns the recorded :class:`IndexInfo`.
    """
    import bm25s

    if os.path.exists(out) and os.listdir(out) and not overwrite:
        raise FileExistsError(
            f"index folder {out!r} exists and is not empty; pass overwrite=True (--overwrite)"
        )
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    start = time.perf_counter()
    fingerprint = corpus_fingerprint(corpus)
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".building-", dir=parent)
    try:
        counter = _TermCounter(chunk_tokens)
        PassageStore.write(
            os.path.join(scratch, "passages"), _counted(iter_corpus(corpus, limit), counter, show_progress)
        )
        counter.flush()
        if not counter.doc_lengths:
            raise ValueError(f"corpus {corpus!r} has no passages")
        docs, terms, counts = (
            np.concatenate(parts) for parts in (counter.docs, counter.terms, counter.counts)
        )
        counter.docs = counter.terms = counter.counts = []
        scores = bm25_matrix(
            docs, terms, counts, np.frombuffer(counter.doc_lengths, dtype=np.int32), len(counter.vocab), k1, b
        )
        del docs, terms, counts
        retriever = bm25s.BM25(k1=k1, b=b, method="lucene", backend="numba")
        retriever.scores = scores
        retriever.vocab_dict = counter.vocab
        retriever.nonoccurrence_array = None  # only BM25L/BM25+ use it; save() reads it
        retriever.save(os.path.join(scratch, "bm25"))
        info = IndexInfo(
            kind="bm25",
            format=INDEX_FORMAT,
            corpus_path=os.path.abspath(corpus),
            corpus_fingerprint=fingerprint,
            num_passages=len(counter.doc_lengths),
            build_seconds=round(time.perf_counter() - start, 3),
            params={
                "k1": k1,
                "b": b,
                "tokenizer": TOKENIZER,
                "vocabulary": len(counter.vocab),
                "limit": limit,
            },
        )
        write_info(scratch, info)
        if overwrite and os.path.exists(out):
            shutil.rmtree(out)
        elif os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)
        os.rename(scratch, out)  # fails if another build filled ``out`` meanwhile: never clobber it
        return info
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _counted(passages: Iterator[Passage], counter: _TermCounter, show_progress: bool) -> Iterator[Passage]:
    from tqdm.auto import tqdm

    for passage in tqdm(passages, desc="indexing passages", unit=" passages", disable=not show_progress):
        counter.add(passage)
        yield passage


class PersistentBM25Engine(BM25Engine):
    """A :class:`BM25Engine` over an index folder (scores and passages memory-mapped)."""

    def __init__(self, folder: str, info: IndexInfo, retriever: object, store: PassageStore):
        super().__init__(retriever, store.ids, store.titles, store.texts)  # type: ignore[arg-type]
        self.folder, self.info, self.store = folder, info, store

    def save(self, folder: str) -> None:
        """Copy the index folder to ``folder``."""
        shutil.copytree(self.folder, folder, dirs_exist_ok=True)


def load_index(folder: str, corpus: str | None = None, mmap: bool = True) -> PersistentBM25Engine:
    """Open a BM25 index folder written by :func:`build_index`.

    With ``corpus``, the corpus file's fingerprint must equal the recorded one (else
    :class:`IndexMismatchError`). The score arrays and passages are memory-mapped, so loading
    costs the vocabulary only.
    """
    import bm25s

    info = read_info(folder)
    if info.kind != "bm25":
        raise IndexMismatchError(f"index {folder!r} is a {info.kind!r} index, not a BM25 index")
    if info.format != INDEX_FORMAT:
        raise IndexMismatchError(
            f"index {folder!r} has format {info.format}, this version reads {INDEX_FORMAT}; rebuild it"
        )
    check_corpus(info, corpus, folder)
    store = PassageStore.load(os.path.join(folder, "passages"))
    retriever = bm25s.BM25.load(os.path.join(folder, "bm25"), mmap=mmap)
    retriever.backend = "numba"
    num_docs = retriever.scores["num_docs"]
    if not len(store) == num_docs == info.num_passages:
        raise IndexMismatchError(
            f"index {folder!r} is damaged: {len(store)} stored passages, {num_docs} scored, "
            f"{info.num_passages} recorded"
        )
    return PersistentBM25Engine(folder, info, retriever, store)


def open_index(folder: str, corpus: str | None = None, model: str | None = None) -> SearchEngine:
    """Load a BM25 or a dense index folder (the kind recorded in its ``meta.json``).

    ``model`` overrides a dense index's recorded model folder (e.g. on another machine).
    """
    if read_info(folder).kind == "dense":
        from mem1_envs.qa.dense import load_dense_index

        return load_dense_index(folder, corpus=corpus, model=model)
    return load_index(folder, corpus=corpus)
