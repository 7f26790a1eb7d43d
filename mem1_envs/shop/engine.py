"""The shop engine: a catalog, its BM25 product search, and the on-disk cache of both.

``load_shop(n_products, seed)`` returns the engine for a generated catalog. The first call on a
machine generates the catalog and builds the index (seconds for 10,000 products) and writes both
to ``$MEM1_ENVS_CACHE/shop/`` (default ``~/.cache/mem1_envs``); later calls load them (the index
memory-mapped). The write is atomic (a private temporary folder renamed into place) and happens
once: processes that need the same catalog at once wait for the one that builds it
(:func:`mem1_envs.cache.build_once`). Within one process, engines are memoised by (n_products, seed).

Search indexes, per product: the title, the taxonomy path, the attributes and the option values.
Token ids are assembled from per-word ids, so indexing a million products needs no per-document
tokenizer call.

>>> shop = ShopEngine.build(generate_catalog(200, seed=0))
>>> hits = shop.search("gluten free potato chips")
>>> shop.catalog.type_of(hits[0]).name
'potato chips'
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
import zipfile
from collections import OrderedDict
from types import SimpleNamespace

import numpy as np

from mem1_envs.cache import build_once, cache_dir
from mem1_envs.search import BM25Engine, tokenize
from mem1_envs.shop.catalog import ARRAY_FIELDS, Catalog, generate_catalog

# The cache holds the catalog's id arrays and the index (texts are composed on demand, so text
# templates may change freely). Its folder name carries a fingerprint of the word tables the ids
# index; bump CACHE_VERSION when generate_catalog's draws change.
CACHE_VERSION = 1
MAX_RESULTS = 50  # a search keeps its top 50 products, as WebShop does
# bm25s's numba kernels are not cached by numba, so each new process (every AsyncVectorEnv worker)
# pays 6-14 s of compilation on its first query. The numpy backend needs no warm-up and answers
# a query over 10k products in 1-2 ms, but over 1M products in about 300 ms, where numba takes
# 3 ms. So: numpy below NUMBA_SEARCH_FROM products, numba from there on (where building the
# index takes far longer than the compilation anyway).
NUMBA_SEARCH_FROM = 200_000


def search_backend(n_products: int) -> str:
    """The bm25s backend used for a catalog of ``n_products``."""
    return "numba" if n_products >= NUMBA_SEARCH_FROM else "numpy"


def cache_folder(n_products: int, seed: int) -> str:
    """Where the generated catalog (n_products, seed) is cached."""
    from mem1_envs.shop import vocab

    tables = repr((vocab.TAXONOMY, vocab.ATTRIBUTES, vocab.OPTIONS, vocab.PRICE_RANGES, vocab.BRANDS))
    fingerprint = hashlib.sha1(tables.encode()).hexdigest()[:10]
    name = f"catalog-v{CACHE_VERSION}-{fingerprint}-n{n_products}-s{seed}"
    return os.path.join(cache_dir(), "shop", name)


def index_tokens(catalog: Catalog, index: int) -> list[str]:
    """The words product ``index`` is indexed under (generated catalogs compose them from ids)."""
    kind = catalog.type_of(index)
    words = [catalog.title(index), *kind.path, *catalog.attributes(index)]
    words += [v for _, values in catalog.options(index) for v in values]
    return tokenize(" ".join(words))


def _build_token_ids(catalog: Catalog) -> tuple[list[list[int]], dict[str, int]]:
    """Token ids per product, assembled from per-vocabulary-entry ids (fast at 1M products).

    A generated title is brand + adjective + attributes + type + first option value; all but the
    adjective (a random marketing word) are indexed.
    """
    vocabulary: dict[str, int] = {}

    def ids(text: str) -> list[int]:
        return [vocabulary.setdefault(t, len(vocabulary)) for t in tokenize(text)]

    if catalog.texts is not None:
        return [ids(" ".join(index_tokens(catalog, i))) for i in range(len(catalog))], vocabulary
    type_ids = [ids(" ".join(t.path)) for t in catalog.types]
    brand_ids = [ids(b) for b in catalog.brand_names]
    attr_ids = [ids(a) for a in catalog.attribute_names]
    value_ids = [ids(v) for v in catalog.option_value_names]
    documents = []
    type_id, brand = catalog.type_id.tolist(), catalog.brand.tolist()
    attrs, values = catalog.attrs.tolist(), catalog.option_values.reshape(len(catalog), -1).tolist()
    for i in range(len(catalog)):
        tokens = list(type_ids[type_id[i]])
        tokens += brand_ids[brand[i]]
        for a in attrs[i]:
            if a >= 0:
                tokens += attr_ids[a]
        for v in values[i]:
            if v >= 0:
                tokens += value_ids[v]
        documents.append(tokens)
    return documents, vocabulary


def _token_matrix(catalog: Catalog) -> tuple[np.ndarray, dict[str, int]]:
    """The same tokens as :func:`_build_token_ids`, as one -1 padded int32 matrix [N, L] built
    by table lookups (no Python loop per product; order inside a row differs, counts do not)."""
    if catalog.texts is not None:
        raise ValueError("a token matrix is built only for generated catalogs")
    vocabulary: dict[str, int] = {}

    def table(texts: list[str] | tuple[str, ...]) -> np.ndarray:
        rows = [[vocabulary.setdefault(t, len(vocabulary)) for t in tokenize(text)] for text in texts]
        out = np.full((len(rows) + 1, max(1, *(len(r) for r in rows))), -1, dtype=np.int32)
        for i, row in enumerate(rows):  # the extra last row is what id -1 (padding) looks up
            out[i, : len(row)] = row
        return out

    n = len(catalog)
    parts = [
        table([" ".join(t.path) for t in catalog.types])[catalog.type_id],
        table(catalog.brand_names)[catalog.brand],
        table(catalog.attribute_names)[catalog.attrs].reshape(n, -1),
        table(catalog.option_value_names)[catalog.option_values.reshape(n, -1)].reshape(n, -1),
    ]
    return np.concatenate(parts, axis=1), vocabulary


def _vectorized_retriever(backend: str) -> object:
    """A ``bm25s.BM25`` whose index build is vectorised with numpy (same scores, no Python loop
    per document: 1M products index in seconds instead of minutes). Tested equal to bm25s's own."""
    import bm25s
    from bm25s import scoring

    class VectorizedBM25(bm25s.BM25):
        def build_index_from_ids(
            self, unique_token_ids, corpus_token_ids, show_progress=True, leave_progress=False
        ):  # type: ignore[override]
            if self.method in self.methods_requiring_nonoccurrence:  # not our Lucene default
                return super().build_index_from_ids(
                    unique_token_ids, corpus_token_ids, show_progress, leave_progress
                )
            presorted = isinstance(corpus_token_ids, np.ndarray)
            if presorted:  # a -1 padded matrix (_token_matrix): sort inside rows, not globally
                rows = np.sort(corpus_token_ids, axis=1)
                present = rows >= 0
                lengths = present.sum(axis=1).astype(np.int64)
                flat = rows[present].astype(np.int64)
            else:
                lengths = np.fromiter(
                    (len(d) for d in corpus_token_ids), dtype=np.int64, count=len(corpus_token_ids)
                )
                flat = np.fromiter(
                    (t for d in corpus_token_ids for t in d), dtype=np.int64, count=int(lengths.sum())
                )
            n_docs, n_vocab = len(lengths), len(unique_token_ids)
            keys = np.repeat(np.arange(n_docs, dtype=np.int64), lengths) * n_vocab + flat
            if presorted:  # (doc, token) keys already ascending: runs give the counts
                starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
                unique_keys, tf = keys[starts], np.diff(np.append(starts, len(keys)))
            else:
                unique_keys, tf = np.unique(keys, return_counts=True)
            doc, token = unique_keys // n_vocab, unique_keys % n_vocab
            frequencies = np.bincount(token, minlength=n_vocab)
            doc_frequencies = {int(t): int(frequencies[t]) for t in unique_token_ids}
            idf = scoring._build_idf_array(
                doc_frequencies, n_docs, scoring._select_idf_scorer(self.idf_method), self.dtype
            )
            tfc = scoring._select_tfc_scorer(self.method)(
                tf_array=tf.astype(self.dtype), l_d=lengths[doc], l_avg=lengths.mean(), k1=self.k1, b=self.b,
                delta=self.delta,
            )  # fmt: skip
            scores = (idf[token] * tfc).astype(self.dtype)
            self.nonoccurrence_array = None
            # CSC by token (as bm25s's _np_csc_python builds it): the (doc, token) pairs are in doc
            # order, so a stable sort on the token alone (a radix sort for 16-bit ids) suffices.
            narrow = token.astype(np.int16 if n_vocab < 2**15 else np.int64)
            order = np.argsort(narrow, kind="stable")
            data, indices = scores[order], doc.astype(self.int_dtype)[order]
            indptr = np.zeros(n_vocab + 1, dtype=np.int64)
            np.cumsum(np.bincount(token, minlength=n_vocab), out=indptr[1:])
            return {"data": data.astype(self.dtype), "indices": indices, "indptr": indptr, "num_docs": n_docs}

    return VectorizedBM25(backend=backend)


class ShopEngine:
    """A catalog plus its product search (BM25 over the catalog), with a small result cache."""

    def __init__(self, catalog: Catalog, search_engine: BM25Engine):
        self.catalog = catalog
        self.search_engine = search_engine
        self._results: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self.page_cache: OrderedDict = OrderedDict()  # PageState -> Page (see pages.build_page)

    @classmethod
    def build(cls, catalog: Catalog, show_progress: bool = False) -> ShopEngine:
        retriever = _vectorized_retriever(search_backend(len(catalog)))
        if catalog.texts is None:  # generated: one token matrix by table lookups
            matrix, vocabulary = _token_matrix(catalog)
            retriever.index(SimpleNamespace(ids=matrix, vocab=vocabulary), show_progress=show_progress)
        else:
            documents, vocabulary = _build_token_ids(catalog)
            retriever.index((documents, vocabulary), show_progress=show_progress)
        ids = np.arange(len(catalog)).astype(str)
        return cls(catalog, BM25Engine(retriever, ids, ids, ids))

    def search(self, query: str, k: int = MAX_RESULTS) -> tuple[int, ...]:
        """Indices of the top ``k`` products for ``query`` (best first; cached per query)."""
        key = " ".join(tokenize(query))
        cached = self._results.get(key)
        if cached is None:
            cached = self._retrieve(key)
            self._results[key] = cached
            if len(self._results) > 1024:
                self._results.popitem(last=False)
        else:
            self._results.move_to_end(key)
        return cached[:k]

    def _retrieve(self, key: str) -> tuple[int, ...]:
        """BM25Engine.search for one query, run inline: BM25Engine passes ``n_threads=1``, with
        which bm25s starts a thread pool per call (about 1-5 ms, more than the search itself);
        ``n_threads=0`` scores in this thread. Same hits (tested)."""
        retriever = self.search_engine._retriever
        vocabulary = retriever.vocab_dict  # type: ignore[attr-defined]
        tokens = [t for t in key.split() if t in vocabulary]
        if not tokens:
            return ()
        k = min(MAX_RESULTS, len(self.catalog))
        documents, scores = retriever.retrieve([tokens], k=k, show_progress=False, n_threads=0)  # type: ignore[attr-defined]
        return tuple(int(d) for d, s in zip(documents[0], scores[0], strict=True) if s > 0)

    # -- cache on disk ----------------------------------------------------------------------
    def save(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        np.savez(os.path.join(folder, "catalog.npz"), **{f: getattr(self.catalog, f) for f in ARRAY_FIELDS})
        self.search_engine._retriever.save(os.path.join(folder, "bm25"))

    @classmethod
    def load(cls, folder: str, seed: int) -> ShopEngine:
        from mem1_envs.files import DamagedFileError, hint, load_bm25s

        fresh = generate_catalog(1, seed=seed)  # the vocabularies (same for every generated catalog)
        path = os.path.join(folder, "catalog.npz")
        try:
            with np.load(path) as arrays:
                fields = {f: arrays[f] for f in ARRAY_FIELDS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            reason = f"{type(error).__name__}: {' '.join(str(error).split())[:120]}"
            raise DamagedFileError(path, reason, f"delete {folder!r} to have it rebuilt") from None
        catalog = Catalog(
            seed=seed,
            types=fresh.types,
            attribute_names=fresh.attribute_names,
            option_kind_names=fresh.option_kind_names,
            option_value_names=fresh.option_value_names,
            brand_names=fresh.brand_names,
            **fields,
        )
        with hint(f"delete {folder!r} to have it rebuilt"):
            retriever = load_bm25s(os.path.join(folder, "bm25"), mmap=True)
        retriever.backend = search_backend(len(catalog))
        ids = np.arange(len(catalog)).astype(str)
        return cls(catalog, BM25Engine(retriever, ids, ids, ids))


_ENGINES: dict[tuple[int, int], ShopEngine] = {}


def load_shop(n_products: int = 10_000, seed: int = 0, cache: bool = True) -> ShopEngine:
    """The engine of the generated catalog (n_products, seed): memoised, cached on disk.

    ``cache=False`` builds in memory and writes nothing.
    """
    if n_products < 1:
        raise ValueError(f"n_products must be >= 1, got {n_products}")
    key = (n_products, seed)
    if key in _ENGINES:
        return _ENGINES[key]
    if not cache:
        engine = ShopEngine.build(generate_catalog(n_products, seed))
    else:
        folder = cache_folder(n_products, seed)
        build_once(folder, "catalog.npz", lambda path: _build_into(path, n_products, seed))
        engine = ShopEngine.load(folder, seed)
    _ENGINES[key] = engine
    return engine


def _build_into(folder: str, n_products: int, seed: int) -> None:
    """Build in a private folder, then rename it into place (the first rename wins)."""
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    private = tempfile.mkdtemp(prefix=f".build-{uuid.uuid4().hex[:8]}-", dir=parent)
    try:
        ShopEngine.build(generate_catalog(n_products, seed), show_progress=n_products >= 200_000).save(
            private
        )
        try:
            os.rename(private, folder)
        except OSError:
            if not os.path.exists(os.path.join(folder, "catalog.npz")):
                raise
    finally:
        if os.path.exists(private):
            shutil.rmtree(private, ignore_errors=True)
