"""Persistent BM25 indexes: same results as bm25s's own indexing, save/load, fingerprints, CLI."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mem1_envs.qa.corpus import PassageStore, iter_corpus
from mem1_envs.qa.index import (
    IndexMismatchError,
    PersistentBM25Engine,
    build_index,
    load_index,
    open_index,
    read_info,
)
from mem1_envs.qa.sources import load_world_source
from mem1_envs.qa.world import SMALL_WORLD, generate_world, split_contents
from mem1_envs.search import BM25Engine

DATA = os.path.join(os.path.dirname(__file__), "data")
CORPUS = os.path.join(DATA, "wiki_sample.jsonl")
CORPUS_GZ = os.path.join(DATA, "wiki_sample.jsonl.gz")


@pytest.fixture(scope="module")
def world_corpus(tmp_path_factory):
    world = generate_world(SMALL_WORLD, seed=3)
    path = tmp_path_factory.mktemp("world") / "corpus.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(p) + "\n" for p in world.passages)
    return world, str(path)


def test_streamed_index_scores_equal_bm25s_own_index(world_corpus, tmp_path):
    world, corpus = world_corpus
    # Tiny chunks: the (document, term, count) triples are merged across many chunks.
    build_index(corpus, str(tmp_path / "ix"), show_progress=False, chunk_tokens=500)
    ours = load_index(str(tmp_path / "ix"), corpus=corpus)
    titles, texts = zip(*(split_contents(p["contents"]) for p in world.passages), strict=True)
    oracle = BM25Engine.build([p["id"] for p in world.passages], titles, texts)
    queries = [q.text for q in world.questions[:150]] + ["zzzz unknown words", ""]
    got, want = ours.search(queries, 5), oracle.search(queries, 5)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-5)
        assert {h.doc_id for h in a} == {h.doc_id for h in b} or len({h.score for h in a}) < len(a)
    assert got[-1] == [] and got[-2] == []
    hit = got[0][0]
    assert (hit.title, hit.text) == split_contents(world.passage(hit.doc_id)["contents"])


def test_index_of_the_gzip_corpus_equals_the_plain_one(tmp_path):
    build_index(CORPUS, str(tmp_path / "a"), show_progress=False)
    build_index(CORPUS_GZ, str(tmp_path / "b"), show_progress=False)
    a, b = load_index(str(tmp_path / "a")), load_index(str(tmp_path / "b"))
    queries = ["capital of Norway", "Zürich railway station", "東京", "deepest lake"]
    assert a.search(queries, 3) == b.search(queries, 3)
    assert a.search(["Zürich railway station"], 1)[0][0].title == "Zürich"


def test_load_checks_the_corpus_fingerprint(tmp_path):
    build_index(CORPUS, str(tmp_path / "ix"), show_progress=False)
    load_index(str(tmp_path / "ix"), corpus=CORPUS)  # the same corpus: fine
    changed = tmp_path / "changed.jsonl"
    shutil.copy(CORPUS, changed)
    with open(changed, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "99", "contents": '"New"\nA new passage.'}) + "\n")
    with pytest.raises(
        IndexMismatchError, match=r"was built from a corpus with fingerprint .* but .*changed\.jsonl"
    ):
        load_index(str(tmp_path / "ix"), corpus=str(changed))
    with pytest.raises(IndexMismatchError, match="fingerprint"):
        open_index(str(tmp_path / "ix"), corpus=CORPUS_GZ)


def test_damaged_or_foreign_folders_are_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an index folder"):
        load_index(str(tmp_path))
    build_index(CORPUS, str(tmp_path / "ix"), show_progress=False)
    with open(tmp_path / "ix" / "passages" / "texts.bin", "ab") as handle:
        handle.write(b"junk")
    with pytest.raises(ValueError, match="damaged"):
        load_index(str(tmp_path / "ix"))
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        build_index(CORPUS, str(tmp_path / "ix"), show_progress=False)
    build_index(CORPUS, str(tmp_path / "ix"), show_progress=False, overwrite=True)
    assert len(load_index(str(tmp_path / "ix"))) == 20


def test_load_is_memory_mapped_and_info_is_recorded(tmp_path):
    info = build_index(CORPUS, str(tmp_path / "ix"), show_progress=False, limit=12)
    assert info.num_passages == 12 and info.params["limit"] == 12
    assert read_info(str(tmp_path / "ix")) == info
    engine = load_index(str(tmp_path / "ix"))
    assert isinstance(engine, PersistentBM25Engine)
    assert isinstance(engine._retriever.scores["data"], np.memmap)
    assert isinstance(engine.store.texts._blob, np.memmap)
    pickled = pickle.dumps(engine)
    assert len(pickled) < 2000  # the folder, not a copy of the mapped arrays
    assert pickle.loads(pickled).search(["Oslo"], 2) == engine.search(["Oslo"], 2)
    engine.save(str(tmp_path / "copy"))
    assert load_index(str(tmp_path / "copy")).search(["Oslo"], 1) == engine.search(["Oslo"], 1)


def test_passage_store_round_trip_with_unicode_and_empty_fields(tmp_path):
    passages = list(iter_corpus(CORPUS))
    store = PassageStore.write(str(tmp_path / "s"), passages)
    assert [store.passage(i) for i in range(len(store))] == passages
    assert store.ids[-1] == passages[-1].doc_id and list(store.titles)[4] == "Zürich"
    with pytest.raises(IndexError):
        store.texts[len(store)]
    empty = PassageStore.write(str(tmp_path / "e"), [passages[0].__class__("1", "", "")])
    assert (empty.titles[0], empty.texts[0]) == ("", "")


def test_world_source_engine_and_a_built_index_agree(tmp_path, monkeypatch):
    # The env's default engine (built in memory) and the persistent build find the same passages.
    source = load_world_source("small", seed=0)
    corpus = tmp_path / "world.jsonl"
    world = generate_world(SMALL_WORLD, 0)
    with open(corpus, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(p) + "\n" for p in world.passages)
    build_index(str(corpus), str(tmp_path / "ix"), show_progress=False)
    engine = load_index(str(tmp_path / "ix"))
    questions = [q.text for q in source.questions[:40]]
    assert [[h.doc_id for h in hits] for hits in engine.search(questions, 3)] == [
        [h.doc_id for h in hits] for hits in source.engine.search(questions, 3)
    ]


def test_cli_build_index_with_progress_bar(tmp_path):
    out = tmp_path / "ix"
    result = subprocess.run(
        [sys.executable, "-m", "mem1_envs", "build-index", "--corpus", CORPUS_GZ, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "built bm25 index of 20 passages" in result.stdout
    assert "indexing passages" in result.stderr  # tqdm writes to stderr
    assert load_index(str(out), corpus=CORPUS_GZ).search(["Haarlem"], 1)[0][0].title == "Haarlem"
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "mem1_envs",
            "build-index",
            "--corpus",
            CORPUS,
            "--out",
            str(out),
            "--limit",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "must be >= 1, got 0" in bad.stderr


@pytest.mark.slow
def test_index_benchmark_smoke_run():
    result = subprocess.run(
        [sys.executable, "scripts/bench_index.py", "--passages", "300", "--queries", "20"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert result.returncode == 0, result.stderr
    assert (
        "passages                 300" in result.stdout and "queries with a hit       100.0%" in result.stdout
    )
