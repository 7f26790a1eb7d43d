"""Dense retrieval (extra ``dense``): a local sentence-embedding model and a faiss index.

:class:`DenseEncoder` embeds text with any Hugging Face encoder folder (mean pooling over the
attention mask, L2-normalised, so inner product = cosine), optionally with E5's ``query: `` /
``passage: `` prefixes. :func:`build_dense_index` streams a Search-R1 corpus through it in
batches (with a progress bar) into a faiss index, flat (exact) or IVF (for large corpora), next
to a :class:`~mem1_envs.qa.corpus.PassageStore`; :func:`load_dense_index` reopens it after
checking the corpus and model fingerprints. :class:`HybridEngine` fuses any engines' rankings by
reciprocal rank (RRF), e.g. BM25 + dense.

torch, transformers and faiss are imported only here, inside the functions that need them::

    python -m mem1_envs build-index --kind dense --model models/e5-base-v2 --e5 \\
        --corpus wiki-18.jsonl.gz --out indexes/wiki-e5 --faiss ivf
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mem1_envs.qa.corpus import Passage, PassageStore, corpus_fingerprint, iter_corpus, unique_ids
from mem1_envs.qa.index_meta import (
    IndexInfo,
    IndexMismatchError,
    building_folder,
    check_corpus,
    read_info,
    write_info,
)
from mem1_envs.search import Hit, SearchEngine
from mem1_envs.validation import check_bool, check_choice, check_int, check_str

DENSE_FORMAT = 1
INDEX_TYPES = ("flat", "ivf")


def _require(extra_modules: str) -> None:
    raise ImportError(f"dense retrieval needs {extra_modules}: pip install mem1-envs[dense]")


def _import_torch() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError:
        _require("torch and transformers")
    return torch, transformers


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError:
        _require("faiss-cpu")
    return faiss


def model_fingerprint(model_dir: str) -> str:
    """Identifies a model folder: its config and the names and sizes of its weight files."""
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        raise FileNotFoundError(f"not a Hugging Face model folder (no config.json): {model_dir!r}")
    digest = hashlib.sha256()
    with open(os.path.join(model_dir, "config.json"), "rb") as handle:
        digest.update(handle.read())
    for name in sorted(os.listdir(model_dir)):
        if name.endswith((".safetensors", ".bin")):
            digest.update(f"{name}:{os.path.getsize(os.path.join(model_dir, name))}".encode())
    return digest.hexdigest()[:32]


class DenseEncoder:
    """Sentence embeddings from a local model folder: mean pooling, unit length, float32.

    ``e5_prefixes`` prepends ``"query: "`` to queries and ``"passage: "`` to passages, as E5
    models expect. Texts are sorted by length before batching (less padding), results come back
    in input order.
    """

    def __init__(
        self, model_dir: str, e5_prefixes: bool = False, max_length: int = 256, batch_size: int = 64
    ):
        if max_length < 1 or batch_size < 1:
            raise ValueError(f"max_length and batch_size must be >= 1, got {max_length} and {batch_size}")
        torch, transformers = _import_torch()
        self.fingerprint = model_fingerprint(model_dir)  # also checks the folder exists
        self.model_dir = os.path.abspath(model_dir)
        self.e5_prefixes, self.max_length, self.batch_size = e5_prefixes, max_length, batch_size
        self._torch = torch
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = transformers.AutoModel.from_pretrained(model_dir, local_files_only=True).eval()
        self.dim = int(self.model.config.hidden_size)

    def __reduce__(self) -> tuple:
        # Pickled as its arguments (vector env workers reload the model, not a pickled module).
        return DenseEncoder, (self.model_dir, self.e5_prefixes, self.max_length, self.batch_size)

    def encode(self, texts: Sequence[str], kind: str = "passage", show_progress: bool = False) -> np.ndarray:
        """``(len(texts), dim)`` float32 unit vectors; ``kind`` is ``"query"`` or ``"passage"``."""
        if kind not in ("query", "passage"):
            raise ValueError(f"kind must be 'query' or 'passage', got {kind!r}")
        from tqdm.auto import tqdm

        prefix = f"{kind}: " if self.e5_prefixes else ""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        torch = self._torch
        starts = range(0, len(texts), self.batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc="encoding", unit=" batches", disable=not show_progress):
                rows = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [prefix + texts[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[rows] = pooled.float().numpy()
        return out


class DenseEngine:
    """:class:`~mem1_envs.search.SearchEngine` over a faiss index of passage embeddings."""

    def __init__(
        self,
        encoder: DenseEncoder,
        index: Any,
        store: PassageStore,
        info: IndexInfo | None = None,
        folder: str | None = None,
    ):
        self.encoder, self.index, self.store, self.info, self.folder = encoder, index, store, info, folder

    def __reduce__(self) -> tuple:
        # A faiss index cannot be pickled; an engine loaded from a folder is pickled as that folder.
        if self.folder is None:
            raise TypeError("only a DenseEngine loaded with load_dense_index can be pickled")
        nprobe = getattr(self.index, "nprobe", None)
        return load_dense_index, (self.folder, None, self.encoder.model_dir, nprobe)

    def __len__(self) -> int:
        return len(self.store)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not queries:
            return []
        vectors = self.encoder.encode(list(queries), "query")
        scores, rows = self.index.search(vectors, min(k, len(self.store)))
        return [
            [
                Hit(self.store.ids[d], self.store.titles[d], self.store.texts[d], float(s))
                for d, s in zip(row_ids, row_scores, strict=True)
                if d >= 0
            ]
            for row_ids, row_scores in zip(rows, scores, strict=True)
        ]


def _passage_text(passage: Passage) -> str:
    return f"{passage.title}. {passage.text}" if passage.title else passage.text


def build_dense_index(
    corpus: str,
    out: str,
    model_dir: str,
    *,
    e5_prefixes: bool = False,
    index_type: str = "flat",
    nlist: int | None = None,
    nprobe: int | None = None,
    batch_size: int = 64,
    max_length: int = 256,
    chunk: int = 8192,
    show_progress: bool = True,
    overwrite: bool = False,
    limit: int | None = None,
) -> IndexInfo:
    """Embed every passage of ``corpus`` and save a faiss index with the passages into ``out``.

    ``index_type="flat"`` is exact inner-product search; ``"ivf"`` clusters the vectors into
    ``nlist`` lists (default about ``4 * sqrt(N)``) and searches ``nprobe`` of them (default
    ``nlist // 8``): sub-linear search for millions of passages, trained on the vectors
    themselves. Vectors are streamed to a scratch file, never all held as Python objects.
    """
    check_str("corpus", corpus)
    check_str("out", out)
    check_str("model_dir", model_dir)
    check_bool("e5_prefixes", e5_prefixes)
    check_choice("index_type", index_type, INDEX_TYPES)
    for name, value in {"nlist": nlist, "nprobe": nprobe, "limit": limit}.items():
        check_int(name, value, minimum=1, optional=True)
    for name, value in {"batch_size": batch_size, "max_length": max_length, "chunk": chunk}.items():
        check_int(name, value, minimum=1)
    check_bool("show_progress", show_progress)
    check_bool("overwrite", overwrite)
    faiss = _import_faiss()
    start = time.perf_counter()
    encoder = DenseEncoder(model_dir, e5_prefixes, max_length, batch_size)
    fingerprint = corpus_fingerprint(corpus)
    with building_folder(out, overwrite) as scratch:
        vector_path = os.path.join(scratch, "vectors.f32")
        with open(vector_path, "wb") as vector_file:
            passages = unique_ids(iter_corpus(corpus, limit), corpus)
            passages = _encoded(passages, encoder, vector_file, chunk, show_progress)
            store = PassageStore.write(os.path.join(scratch, "passages"), passages)
        if not len(store):
            raise ValueError(f"corpus {corpus!r} has no passages")
        vectors = np.memmap(vector_path, dtype=np.float32, mode="r").reshape(len(store), encoder.dim)
        if index_type == "flat":
            index = faiss.IndexFlatIP(encoder.dim)
            nlist = nprobe = None
        else:
            nlist = nlist or max(1, min(len(store) // 39, int(4 * np.sqrt(len(store)))))
            if not 1 <= nlist <= len(store):
                raise ValueError(f"nlist must be in 1..{len(store)} (the passages), got {nlist}")
            nprobe = nprobe or max(1, nlist // 8)
            index = faiss.IndexIVFFlat(
                faiss.IndexFlatIP(encoder.dim), encoder.dim, nlist, faiss.METRIC_INNER_PRODUCT
            )
            sample = np.random.default_rng(0).choice(
                len(store), size=min(len(store), 256 * nlist), replace=False
            )
            index.train(np.ascontiguousarray(vectors[np.sort(sample)]))
        for first in range(0, len(store), chunk):
            index.add(np.ascontiguousarray(vectors[first : first + chunk]))
        faiss.write_index(index, os.path.join(scratch, "faiss.index"))
        del vectors
        os.remove(vector_path)
        info = IndexInfo(
            kind="dense",
            format=DENSE_FORMAT,
            corpus_path=os.path.abspath(corpus),
            corpus_fingerprint=fingerprint,
            num_passages=len(store),
            build_seconds=round(time.perf_counter() - start, 3),
            params={
                "model": encoder.model_dir,
                "model_fingerprint": encoder.fingerprint,
                "e5_prefixes": e5_prefixes,
                "pooling": "mean",
                "max_length": max_length,
                "dim": encoder.dim,
                "index_type": index_type,
                "nlist": nlist,
                "nprobe": nprobe,
                "limit": limit,
            },
        )
        write_info(scratch, info)
    return info


def _encoded(
    passages: Iterator[Passage], encoder: DenseEncoder, vector_file: Any, chunk: int, show_progress: bool
) -> Iterator[Passage]:
    """Yield passages unchanged, appending their embeddings to ``vector_file`` a chunk at a time."""
    from tqdm.auto import tqdm

    pending: list[str] = []
    for passage in tqdm(passages, desc="embedding passages", unit=" passages", disable=not show_progress):
        pending.append(_passage_text(passage))
        if len(pending) >= chunk:
            vector_file.write(encoder.encode(pending, "passage").tobytes())
            pending = []
        yield passage
    if pending:
        vector_file.write(encoder.encode(pending, "passage").tobytes())


def load_dense_index(
    folder: str, corpus: str | None = None, model: str | None = None, nprobe: int | None = None
) -> DenseEngine:
    """Open a dense index folder; ``model`` overrides the recorded model folder (same fingerprint)."""
    faiss = _import_faiss()
    info = read_info(folder)
    if info.kind != "dense":
        raise IndexMismatchError(f"index {folder!r} is a {info.kind!r} index, not a dense index")
    if info.format != DENSE_FORMAT:
        raise IndexMismatchError(
            f"index {folder!r} has format {info.format}, this version reads {DENSE_FORMAT}"
        )
    check_corpus(info, corpus, folder)
    params = info.params
    model_dir = model or params["model"]
    found = model_fingerprint(model_dir)
    if found != params["model_fingerprint"]:
        raise IndexMismatchError(
            f"index {folder!r} was embedded with model fingerprint {params['model_fingerprint']} "
            f"({params['model']}), but {model_dir!r} has fingerprint {found}"
        )
    store = PassageStore.load(os.path.join(folder, "passages"))
    path = os.path.join(folder, "faiss.index")
    try:
        index = faiss.read_index(path, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:  # index types faiss cannot memory-map are read into memory
        index = faiss.read_index(path)
    if index.ntotal != len(store) or len(store) != info.num_passages:
        raise IndexMismatchError(
            f"index {folder!r} is damaged: {index.ntotal} vectors, {len(store)} passages, "
            f"{info.num_passages} recorded"
        )
    if params.get("index_type") == "ivf":
        index.nprobe = nprobe or params["nprobe"]
    encoder = DenseEncoder(model_dir, params["e5_prefixes"], params["max_length"])
    return DenseEngine(encoder, index, store, info, folder)


class HybridEngine:
    """Reciprocal-rank fusion of several engines: score(d) = sum over engines of 1 / (c + rank).

    Each engine is asked for its top ``depth`` (default ``max(20, 2 * k)``); passages are
    identified by ``doc_id``. ``c = 60`` is the constant of Cormack et al. (2009).

    >>> from mem1_envs.search import BM25Engine
    >>> a = BM25Engine.build(["1", "2"], ["Oslo", "Bergen"], ["Oslo is a city.", "Bergen is rainy."])
    >>> [h.doc_id for h in HybridEngine([a, a]).search(["rainy city"], k=2)[0]]
    ['2', '1']
    """

    def __init__(self, engines: Sequence[SearchEngine], c: float = 60.0, depth: int | None = None):
        if not engines:
            raise ValueError("HybridEngine needs at least one engine, got none")
        if c <= 0:
            raise ValueError(f"c must be > 0, got {c}")
        self.engines, self.c, self.depth = list(engines), c, depth

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        depth = self.depth or max(20, 2 * k)
        rankings = [engine.search(queries, depth) for engine in self.engines]
        results = []
        for q in range(len(queries)):
            fused: dict[str, float] = {}
            first_hit: dict[str, Hit] = {}
            for ranking in rankings:
                for rank, hit in enumerate(ranking[q], 1):
                    fused[hit.doc_id] = fused.get(hit.doc_id, 0.0) + 1.0 / (self.c + rank)
                    first_hit.setdefault(hit.doc_id, hit)
            best = sorted(fused, key=lambda d: (-fused[d], d))[:k]
            results.append([Hit(d, first_hit[d].title, first_hit[d].text, fused[d]) for d in best])
        return results
