"""Persistent BM25 indexes over Search-R1 corpora: a streaming build and a memory-mapped load.

:func:`build_index` reads the corpus once. Each passage is tokenized (the tokenizer of
:mod:`mem1_envs.search`), written to a :class:`~mem1_envs.qa.corpus.PassageStore` and
reduced to integer ``(document, term, count)`` triples, saved to disk in numpy chunks. The BM25
scores (Lucene variant, the formula of ``bm25s``) are then computed chunk by chunk and placed
straight into memory-mapped files in ``bm25s``'s own format, which :func:`load_index` opens
memory-mapped. Memory therefore grows with the vocabulary and the passage count, not with the
corpus text, and no Python object per token or per passage is ever held.

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
import time
from array import array
from collections.abc import Iterator

import numpy as np

from mem1_envs.files import hint, load_bm25s
from mem1_envs.qa.corpus import Passage, PassageStore, corpus_fingerprint, iter_corpus, unique_ids
from mem1_envs.qa.index_meta import (  # shared with mem1_envs.qa.dense, which index.py loads lazily
    REBUILD_HINT,
    IndexInfo,
    IndexMismatchError,
    building_folder,
    check_corpus,
    read_info,
    write_info,
)
from mem1_envs.search import BM25Engine, SearchEngine, tokenize
from mem1_envs.validation import check_bool, check_float, check_int, check_str

INDEX_FORMAT = 1  # bump when the on-disk layout or the tokenizer changes
TOKENIZER = "mem1-envs-regex-stopwords-v1"


class _TermCounter:
    """Turns passages into ``(document, term, count)`` triples, saved to disk a chunk at a time.

    Also keeps what the scores need globally: the vocabulary, document lengths (4 bytes per
    passage) and document frequencies.
    """

    def __init__(self, folder: str, chunk_tokens: int):
        self.folder, self.chunk_tokens = folder, chunk_tokens
        os.makedirs(folder, exist_ok=True)
        self.vocab: dict[str, int] = {}
        self.doc_lengths = array("i")
        self.df = np.zeros(0, dtype=np.int64)
        self.chunks: list[str] = []
        self._tokens, self._chunk_lengths = array("i"), array("i")
        self._chunk_start = 0  # index of the first document of the pending chunk

    def add(self, passage: Passage) -> None:
        vocab = self.vocab
        ids = [vocab.setdefault(token, len(vocab)) for token in tokenize(f"{passage.title} {passage.text}")]
        self._tokens.extend(ids)
        self._chunk_lengths.append(len(ids))
        self.doc_lengths.append(len(ids))
        if len(self._tokens) >= self.chunk_tokens:
            self.flush()

    def flush(self) -> None:
        lengths = np.frombuffer(self._chunk_lengths, dtype=np.int32)
        if len(lengths):
            tokens = np.frombuffer(self._tokens, dtype=np.int32).astype(np.int64)
            docs = np.repeat(np.arange(self._chunk_start, self._chunk_start + len(lengths)), lengths)
            keys, counts = np.unique((docs << 32) | tokens, return_counts=True)
            triples = np.stack([keys >> 32, keys & 0xFFFFFFFF, counts]).astype(np.int32)
            path = os.path.join(self.folder, f"{len(self.chunks)}.npy")
            np.save(path, triples)
            self.chunks.append(path)
            df = np.bincount(triples[1], minlength=len(self.vocab))
            df[: len(self.df)] += self.df
            self.df = df
            self._chunk_start += len(lengths)
        self._tokens, self._chunk_lengths = array("i"), array("i")


def write_bm25(counter: _TermCounter, folder: str, k1: float, b: float) -> None:
    """Score the counted triples with BM25 and write them in ``bm25s``'s saved-index format.

    Same formula as ``bm25s`` (Lucene): idf = ln(1 + (N - df + 0.5) / (df + 0.5)),
    tfc = tf / (tf + k1 * (1 - b + b * len / avg_len)), score = idf * tfc in float32. The CSC
    arrays are filled chunk by chunk straight into memory-mapped ``.npy`` files (a counting
    sort by term: each term's column has a write cursor), so the build's memory is the chunk
    being placed plus O(vocabulary + passages), not O(corpus).
    """
    import bm25s

    os.makedirs(folder, exist_ok=True)
    lengths = np.frombuffer(counter.doc_lengths, dtype=np.int32)
    num_docs, vocab_size = len(lengths), len(counter.vocab)
    df = np.zeros(vocab_size, dtype=np.int64)
    df[: len(counter.df)] = counter.df
    idf = np.log1p((num_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
    norm = (k1 * (1 - b + b * lengths / max(float(lengths.mean()), 1e-9))).astype(np.float32)
    indptr = np.zeros(vocab_size + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    nnz = int(indptr[-1])
    data = np.lib.format.open_memmap(os.path.join(folder, "data.csc.index.npy"), "w+", np.float32, (nnz,))
    indices = np.lib.format.open_memmap(os.path.join(folder, "indices.csc.index.npy"), "w+", np.int32, (nnz,))
    cursor = indptr[:-1].copy()
    for path in counter.chunks:
        docs, terms, counts = np.load(path)
        tf = counts.astype(np.float32)
        scores = idf[terms] * (tf / (tf + norm[docs]))
        order = np.argsort(terms, kind="stable")  # documents stay ascending within each term
        sorted_terms = terms[order]
        per_term = np.bincount(sorted_terms, minlength=vocab_size)
        first = np.cumsum(per_term) - per_term  # where each term's run starts in this chunk
        positions = cursor[sorted_terms] + (np.arange(len(order)) - first[sorted_terms])
        data[positions] = scores[order]
        indices[positions] = docs[order]
        cursor += per_term
        os.remove(path)
    data.flush()
    indices.flush()
    del data, indices
    np.save(os.path.join(folder, "indptr.csc.index.npy"), indptr)
    with open(os.path.join(folder, "vocab.index.json"), "w", encoding="utf-8") as handle:
        json.dump(counter.vocab, handle, ensure_ascii=False)
    params = {
        "k1": k1,
        "b": b,
        "delta": 0.5,
        "method": "lucene",
        "idf_method": "lucene",
        "dtype": "float32",
        "int_dtype": "int32",
        "num_docs": num_docs,
        "version": bm25s.__version__,
        "backend": "numba",
    }
    with open(os.path.join(folder, "params.index.json"), "w", encoding="utf-8") as handle:
        json.dump(params, handle, indent=4)


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

    One pass over the corpus writes the passage store and chunks of term counts (every
    ``chunk_tokens`` tokens) to disk; :func:`write_bm25` then scores them.
    The folder is written under a temporary name and renamed into place at the end, so an
    interrupted build never leaves a half index that loads. ``limit`` indexes only the first
    passages (for trials). Returns the recorded :class:`IndexInfo`.
    """
    check_str("corpus", corpus)
    check_str("out", out)
    check_float("k1", k1, minimum=0)  # Lucene's range; k1 = 0 scores term presence only
    check_float("b", b, minimum=0, maximum=1)
    check_bool("show_progress", show_progress)
    check_bool("overwrite", overwrite)
    check_int("chunk_tokens", chunk_tokens, minimum=1)
    check_int("limit", limit, minimum=1, optional=True)
    start = time.perf_counter()
    fingerprint = corpus_fingerprint(corpus)
    with building_folder(out, overwrite) as scratch:
        counter = _TermCounter(os.path.join(scratch, "chunks"), chunk_tokens)
        passages = unique_ids(iter_corpus(corpus, limit), corpus)
        PassageStore.write(os.path.join(scratch, "passages"), _counted(passages, counter, show_progress))
        counter.flush()
        if not counter.doc_lengths:
            raise ValueError(f"corpus {corpus!r} has no passages")
        write_bm25(counter, os.path.join(scratch, "bm25"), k1, b)
        shutil.rmtree(counter.folder)
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
    return info


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

    def __reduce__(self) -> tuple:
        # Pickled as its folder: a copy of the memory-mapped arrays would be the whole index.
        return load_index, (self.folder,)

    def save(self, folder: str) -> None:
        """Copy the index folder to ``folder``."""
        shutil.copytree(self.folder, folder, dirs_exist_ok=True)


def load_index(folder: str, corpus: str | None = None, mmap: bool = True) -> PersistentBM25Engine:
    """Open a BM25 index folder written by :func:`build_index`.

    With ``corpus``, the corpus file's fingerprint must equal the recorded one (else
    :class:`IndexMismatchError`). The score arrays and passages are memory-mapped, so loading
    costs the vocabulary only.
    """
    info = read_info(folder)
    if info.kind != "bm25":
        raise IndexMismatchError(f"index {folder!r} is a {info.kind!r} index, not a BM25 index")
    if info.format != INDEX_FORMAT:
        raise IndexMismatchError(
            f"index {folder!r} has format {info.format}, this version reads {INDEX_FORMAT}; rebuild it"
        )
    check_corpus(info, corpus, folder)
    with hint(REBUILD_HINT):
        store = PassageStore.load(os.path.join(folder, "passages"))
        retriever = load_bm25s(os.path.join(folder, "bm25"), mmap=mmap)
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
