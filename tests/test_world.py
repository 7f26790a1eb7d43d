"""The generated world: determinism, uniqueness of answers, the on-disk cache."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from mem1_envs.qa import sources
from mem1_envs.qa.world import SMALL_WORLD, WorldConfig, check_world, generate_world, split_contents

TINY = WorldConfig(
    people=60, films=30, cities=15, countries=4, companies=12, universities=6, distractors=40, questions=80
)


def test_same_seed_same_world():
    a, b = generate_world(TINY, seed=1), generate_world(TINY, seed=1)
    assert a.passages == b.passages and a.questions == b.questions
    assert generate_world(TINY, seed=2).passages != a.passages


def test_questions_have_unique_answers_and_support():
    world = generate_world(SMALL_WORLD, seed=0)
    assert {q.kind for q in world.questions} == {"single", "bridge", "comparison"}
    assert len(set(world.entity_names)) == len(world.entity_names)
    for question in world.questions:
        support = " ".join(world.passage(d)["contents"] for d in question.support_ids)
        assert any(gold in support for gold in question.golds)
        assert len(question.support_ids) == (1 if question.kind == "single" else 2)


def test_check_world_rejects_a_duplicate_name_and_a_missing_gold():
    world = generate_world(TINY, seed=0)
    world.entity_names.append(world.entity_names[0])
    with pytest.raises(AssertionError, match="used twice"):
        check_world(world)
    world = generate_world(TINY, seed=0)
    question = world.questions[0]
    world.questions[0] = type(question)(
        question.qid, question.text, ("not there",), question.kind, question.support_ids
    )
    with pytest.raises(AssertionError, match="no gold answer"):
        check_world(world)


def test_passages_are_in_search_r1_format():
    world = generate_world(TINY, seed=0)
    row = world.passages[0]
    assert set(row) == {"id", "contents"} and row["contents"].startswith('"')
    title, text = split_contents(row["contents"])
    assert title and text and '"' not in title


def test_names_are_invented_not_english():
    world = generate_world(TINY, seed=0)
    people = [n for n in world.entity_names if " " in n and not n.startswith("The ")]
    assert all(len(word) >= 5 for name in people for word in name.split())


def _build(cache: str, queue) -> None:
    os.environ["MEM1_ENVS_CACHE"] = cache
    source = sources.load_world_source(TINY, seed=3)
    queue.put(len(source.questions))


def test_two_processes_can_build_the_same_cache_at_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_build, args=(str(tmp_path), queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert queue.get() == queue.get() == TINY.questions
    built = [d for d in os.listdir(tmp_path) if d.startswith("world-")]
    assert len(built) == 1 and not [d for d in os.listdir(tmp_path) if d.startswith(".building")]
