"""The catalog generator, the product search and the on-disk cache."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from mem1_envs.search import tokenize
from mem1_envs.shop import vocab
from mem1_envs.shop.catalog import ARRAY_FIELDS, generate_catalog
from mem1_envs.shop.engine import ShopEngine, cache_folder, load_shop
from mem1_envs.shop.goals import sample_goal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_generation_is_seeded_and_well_formed():
    a, b, c = generate_catalog(3000, seed=5), generate_catalog(3000, seed=5), generate_catalog(3000, seed=6)
    for name in ARRAY_FIELDS:
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.price_cents, c.price_cents)
    assert [a.text(i) for i in range(50)] == [b.text(i) for i in range(50)]
    for i in range(0, 3000, 7):
        kind = a.type_of(i)
        department = kind.department
        assert 2 <= len(a.attributes(i)) <= 5
        assert set(a.attributes(i)) <= set(vocab.ATTRIBUTES[department])
        assert len(set(a.attributes(i))) == len(a.attributes(i))
        low, high = vocab.PRICE_RANGES[department]
        assert low <= a.price(i) <= high + 1
        pools = dict(vocab.OPTIONS[department])
        for option_kind, values in a.options(i):
            assert 2 <= len(values) <= 6 and set(values) <= set(pools[option_kind])
            assert list(values) == [v for v in pools[option_kind] if v in values]  # pool order
        assert kind.name.lower() in a.title(i).lower()


def test_every_level_of_the_taxonomy_and_every_type_is_used():
    catalog = generate_catalog(10_000, seed=0)
    assert len(np.unique(catalog.type_id)) == len(vocab.TYPES)
    assert len({t.department for t in vocab.TYPES}) == 5
    assert all(len(t.path) == 3 for t in vocab.TYPES)


def test_a_description_does_not_fit_one_screen():
    from mem1_envs.memory import count_tokens

    catalog = generate_catalog(200, seed=0)
    tokens = [count_tokens(catalog.text(i).description) for i in range(200)]
    assert min(tokens) > 300  # the env's default screen: a description is always paged


def test_filler_never_mentions_an_attribute_option_or_type():
    phrases = [a for d in vocab.DEPARTMENTS for a in vocab.ATTRIBUTES[d]]
    for text in vocab.BULLET_FILLER + vocab.DESCRIPTION_FILLER + vocab.BRANDS + vocab.ADJECTIVES:
        assert not [p for p in phrases if p in text.lower()], text


def test_product_text_mentions_exactly_its_own_attributes():
    catalog = generate_catalog(2000, seed=1)
    phrases = catalog.attribute_names
    for i in range(0, 2000, 3):
        text = catalog.text(i)
        haystack = " ".join([text.title, *text.bullets, text.description]).lower()
        assert {p for p in phrases if p in haystack} == set(catalog.attributes(i))


def test_search_finds_the_wanted_type():
    shop = ShopEngine.build(generate_catalog(3000, seed=0))
    for kind in vocab.TYPES[:20]:
        hits = shop.search(kind.name, 10)
        assert hits and all(shop.catalog.type_of(h).name == kind.name for h in hits[:5])
    assert shop.search("zzzz qqqq") == ()
    assert shop.search("") == ()


def test_goals_have_a_reachable_perfect_item():
    from mem1_envs.shop.reward import goal_reward

    shop = load_shop(3000, seed=0)
    rng = np.random.default_rng(0)
    for n_items in (1, 1, 1, 3):
        goal = sample_goal(shop, rng, n_items=n_items)
        for item in goal.items:
            assert item.target in shop.search(item.query)
            assert 1 <= len(item.attributes) <= 3
        purchases = [(item.target, dict(item.options)) for item in goal.items]
        assert goal_reward(shop.catalog, goal, purchases)[0] == 1.0
    with pytest.raises(ValueError, match="n_items must be >= 1, got 0"):
        sample_goal(shop, rng, n_items=0)


def test_disk_cache_round_trip(tmp_path, monkeypatch):
    import mem1_envs.shop.engine as engine

    monkeypatch.setenv("MEM1_ENVS_CACHE", str(tmp_path))
    monkeypatch.setattr(engine, "_ENGINES", {})
    built = load_shop(1500, seed=3)
    monkeypatch.setattr(engine, "_ENGINES", {})
    loaded = load_shop(1500, seed=3)
    assert built is not loaded
    for name in ARRAY_FIELDS:
        assert np.array_equal(getattr(built.catalog, name), getattr(loaded.catalog, name))
    for query in ("gluten free potato chips", "black hoodie large", "usb cable"):
        assert built.search(query) == loaded.search(query)
    assert os.listdir(tmp_path / "shop") == [os.path.basename(cache_folder(1500, 3))]  # no temporary left


def test_two_processes_build_the_same_cache_at_once(tmp_path):
    code = (
        "import sys; from mem1_envs.shop.engine import load_shop; "
        "s = load_shop(2500, seed=9); print(len(s.catalog), s.search('trail mix')[:3])"
    )
    env = {**os.environ, "MEM1_ENVS_CACHE": str(tmp_path), "PYTHONPATH": ROOT}
    runs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0]
    assert outputs[0] == outputs[1] and outputs[0].startswith("2500")
    assert os.listdir(tmp_path / "shop") == [os.path.basename(cache_folder(2500, 9))]  # no temporary left


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match="n_products must be >= 1, got 0"):
        generate_catalog(0)
    with pytest.raises(ValueError, match="n_products must be >= 1, got -5"):
        load_shop(-5)


def test_vectorized_index_equals_bm25s_own_build():
    import bm25s

    from mem1_envs.shop import engine

    catalog = generate_catalog(4000, seed=3)
    documents, vocabulary = engine._build_token_ids(catalog)
    reference = bm25s.BM25(backend="numpy")
    reference.index((documents, dict(vocabulary)), show_progress=False)
    fast = engine._vectorized_retriever("numpy")
    fast.index((documents, dict(vocabulary)), show_progress=False)
    for key in ("data", "indices", "indptr"):
        assert np.array_equal(reference.scores[key], fast.scores[key]), key
        assert reference.scores[key].dtype == fast.scores[key].dtype, key
    assert reference.scores["num_docs"] == fast.scores["num_docs"]
    assert reference.vocab_dict == fast.vocab_dict


def test_inline_retrieval_equals_the_bm25_engine():
    shop = ShopEngine.build(generate_catalog(3000, seed=4))
    for query in (
        "gluten free potato chips sea salt",
        "black hoodie large",
        "usb cable",
        "zzz",
        "olive oil 16 ounce",
    ):
        key = " ".join(tokenize(query))
        expected = tuple(int(h.doc_id) for h in shop.search_engine.search([key], k=50)[0]) if key else ()
        assert shop.search(query) == expected


def test_token_matrix_index_equals_the_token_list_index():
    from types import SimpleNamespace

    from mem1_envs.shop import engine

    catalog = generate_catalog(4000, seed=8)
    documents, vocabulary = engine._build_token_ids(catalog)
    matrix, matrix_vocabulary = engine._token_matrix(catalog)
    assert matrix_vocabulary == vocabulary
    for i in range(0, 4000, 97):
        assert sorted(matrix[i][matrix[i] >= 0].tolist()) == sorted(documents[i])
    from_lists = engine._vectorized_retriever("numpy")
    from_lists.index((documents, dict(vocabulary)), show_progress=False)
    from_matrix = engine._vectorized_retriever("numpy")
    from_matrix.index(SimpleNamespace(ids=matrix, vocab=dict(vocabulary)), show_progress=False)
    for key in ("data", "indices", "indptr"):
        assert np.array_equal(from_lists.scores[key], from_matrix.scores[key]), key
