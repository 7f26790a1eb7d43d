"""Real QA data: FlashRAG loaders, bad rows, composition, splits, corpora, and the env over them."""

from __future__ import annotations

import gzip
import json
import os
import warnings

import gymnasium as gym
import pytest

import mem1_envs  # noqa: F401  (registers the env ids)
from mem1_envs.qa.corpus import CorpusError, corpus_fingerprint, iter_corpus
from mem1_envs.qa.data import (
    QADataError,
    compose_consecutive,
    compose_mixed,
    join_questions,
    load_qa_file,
    load_qa_sources,
    parse_data_spec,
    split_by_text,
)
from mem1_envs.qa.world import Question

DATA = os.path.join(os.path.dirname(__file__), "data")
NQ = os.path.join(DATA, "nq_sample.jsonl")
HOTPOT = os.path.join(DATA, "hotpotqa_sample.parquet")
BAD = os.path.join(DATA, "bad_rows.jsonl")
CORPUS = os.path.join(DATA, "wiki_sample.jsonl")
CORPUS_GZ = os.path.join(DATA, "wiki_sample.jsonl.gz")


def test_jsonl_loader_reads_flashrag_rows():
    loaded = load_qa_file(NQ, "nq")
    assert len(loaded.questions) == 8 and loaded.skipped == 0
    first = loaded.questions[0]
    assert first.qid == "nq:test_0" and first.text == "what is the capital of norway"
    assert first.golds == ("Oslo",) and first.source == "nq"
    assert loaded.questions[2].golds == ("Zürich", "Zurich")


def test_parquet_loader_reads_flashrag_rows():
    pytest.importorskip("pyarrow")
    loaded = load_qa_file(HOTPOT, "hotpotqa")
    assert [q.qid for q in loaded.questions][:2] == ["hotpotqa:hq0", "hotpotqa:hq1"]
    assert loaded.questions[1].golds == ("Leo Tolstoy", "Tolstoy")


def test_gzip_jsonl_and_rows_without_id(tmp_path):
    path = tmp_path / "qa.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"question": "a", "golden_answers": ["b"]}) + "\n\n")
        handle.write(json.dumps({"question": "c", "golden_answers": [1990]}) + "\n")
    loaded = load_qa_file(str(path), "x")
    assert [(q.qid, q.golds) for q in loaded.questions] == [("x:1", ("b",)), ("x:3", ("1990",))]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (2, "missing or empty 'question'"),
        (3, "no non-empty answer"),
        (4, "broken JSON"),
        (5, "not UTF-8"),
        (7, "must be a list of strings"),
        (8, "duplicate id 'ok1'"),
    ],
)
def test_each_bad_row_is_an_error_naming_file_and_line(tmp_path, line, reason):
    with open(BAD, "rb") as handle:
        rows = handle.readlines()
    # keep the good first row and the bad row under test, at its own line number
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"".join(row if i in (0, line - 1) else b"\n" for i, row in enumerate(rows[:line])))
    with pytest.raises(QADataError, match=rf"bad\.jsonl:{line}: .*{reason}"):
        load_qa_file(str(path), "bad")


def test_bad_rows_are_skipped_and_counted_on_request():
    with pytest.raises(QADataError, match=r"bad_rows\.jsonl:2: "):
        load_qa_file(BAD, "bad")
    with pytest.warns(UserWarning, match="skipped 6 bad rows, kept 2"):
        loaded = load_qa_file(BAD, "bad", on_bad_row="skip")
    assert [q.qid for q in loaded.questions] == ["bad:ok1", "bad:ok6"]
    assert loaded.skipped == 6 and loaded.skipped_examples[0].startswith(BAD + ":2:")
    with pytest.raises(ValueError, match=r"on_bad_row must be one of .* got 'ignore'"):
        load_qa_file(BAD, "bad", on_bad_row="ignore")


def test_a_file_of_only_bad_rows_is_an_error_even_when_skipping(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text('{"question": ""}\n')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(QADataError, match="no usable questions"):
            load_qa_file(str(path), on_bad_row="skip")


def test_parquet_without_required_columns_is_an_error(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "q.parquet"
    pq.write_table(pa.table({"question": ["a"]}), path)
    with pytest.raises(QADataError, match=r"q\.parquet:1: 'golden_answers' must be a list"):
        load_qa_file(str(path))


def test_data_spec_parsing():
    assert parse_data_spec("nq=a.jsonl, hotpotqa=b.parquet") == {"nq": "a.jsonl", "hotpotqa": "b.parquet"}
    assert parse_data_spec("dir/nq.train.jsonl") == {"nq": "dir/nq.train.jsonl"}
    assert parse_data_spec({"nq": "a"}) == {"nq": "a"}
    for spec, message in [
        ("nq=a,nq=b", "named twice"),
        ("nq=", "has no path"),
        ("n q=a", "source names use"),
        ("nq=a,,", "empty entry"),
        ({}, "names no QA file"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_data_spec(spec)


def _questions(sources: dict[str, int]) -> list[Question]:
    return [
        Question(f"{s}:{i}", f"{s} question {i}", ("a",), "single", (), s)
        for s, n in sources.items()
        for i in range(n)
    ]


def test_mem1_composition_takes_consecutive_questions_of_one_source():
    questions = _questions({"nq": 7, "hotpotqa": 4})
    groups = compose_consecutive(questions, 3)
    assert [[q.qid for q in g] for g in groups] == [
        ["nq:0", "nq:1", "nq:2"],
        ["nq:3", "nq:4", "nq:5"],
        ["hotpotqa:0", "hotpotqa:1", "hotpotqa:2"],
    ]
    assert (
        join_questions(["who wrote hamlet", "capital of norway?"]) == "who wrote hamlet?; capital of norway?"
    )
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        compose_consecutive(questions, 0)


def test_random_mix_is_seeded_and_mixes_sources():
    questions = _questions({"nq": 50, "hotpotqa": 50})
    a, b, c = (
        compose_mixed(questions, 4, seed=1),
        compose_mixed(questions, 4, seed=1),
        compose_mixed(questions, 4, seed=2),
    )
    assert a == b and a != c and len(a) == 25
    assert sorted(q.qid for g in a for q in g) == sorted(q.qid for q in questions)  # each used once
    assert any(len({q.source for q in g}) > 1 for g in a)


def test_hashed_split_is_disjoint_complete_and_keeps_duplicates_together():
    questions = _questions({"nq": 400})
    duplicate = Question("other:1", "NQ question 7?", ("a",), "single", (), "other")  # same text as nq:7
    questions.append(duplicate)
    train, test = split_by_text(questions, "train"), split_by_text(questions, "test")
    assert {q.qid for q in train}.isdisjoint({q.qid for q in test})
    assert len(train) + len(test) == len(questions)
    assert 0.05 < len(test) / len(questions) < 0.15
    side = "test" if any(q.qid == "nq:7" for q in test) else "train"
    assert any(q.qid == "other:1" for q in (test if side == "test" else train))
    assert split_by_text(list(reversed(questions)), "test") == list(reversed(test))  # order-independent


def test_corpus_streaming_plain_and_gzip_give_the_same_passages():
    plain, zipped = list(iter_corpus(CORPUS)), list(iter_corpus(CORPUS_GZ))
    assert plain == zipped and len(plain) == 20
    assert plain[4].title == "Zürich" and "東京" in plain[5].text
    assert [p.doc_id for p in iter_corpus(CORPUS, limit=3)] == ["0", "1", "2"]
    assert corpus_fingerprint(CORPUS) != corpus_fingerprint(CORPUS_GZ)


def test_corpus_errors_name_file_and_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"id": "1", "contents": "\\"A\\"\\nx"}\n{"id": "2"}\n')
    with pytest.raises(CorpusError, match=r"c\.jsonl:2: missing 'contents'"):
        list(iter_corpus(str(path)))
    path.write_bytes(b'{"id": "1", "contents": "\\"A\\"\\nx"}\n{"id": "2", "contents": "caf\xe9"}\n')
    with pytest.raises(CorpusError, match=r"c\.jsonl:2: not UTF-8"):
        list(iter_corpus(str(path)))
    path.write_text('{"id": "1", "contents": "x"\n')
    with pytest.raises(CorpusError, match=r"c\.jsonl:1: broken JSON"):
        list(iter_corpus(str(path)))


def test_fingerprint_of_a_large_file_samples_and_still_sees_edits(tmp_path):
    path = tmp_path / "big.jsonl"
    row = json.dumps({"id": "1", "contents": '"T"\n' + "word " * 50}) + "\n"
    path.write_text(row * 30_000)  # ~8 MB: the sampled branch
    before = corpus_fingerprint(str(path))
    assert before == corpus_fingerprint(str(path))
    with open(path, "r+b") as handle:
        handle.seek(0)
        handle.write(b'{"id": "2"')
    assert corpus_fingerprint(str(path)) != before
    assert corpus_fingerprint(str(path), full=True) != corpus_fingerprint(str(path))


def test_env_over_flashrag_files_and_a_corpus(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    monkeypatch.setenv("MEM1_ENVS_CACHE", str(tmp_path / "cache"))
    env = gym.make(
        "MEM1-MultiQA-v0",
        data=f"nq={NQ},hotpotqa={HOTPOT}",
        corpus=CORPUS_GZ,
        num_objectives=2,
        compose="consecutive",
    )
    seen_sources = set()
    for seed in range(12):
        observation, info = env.reset(seed=seed)
        sources = {qid.split(":")[0] for qid in info["question_ids"]}
        assert len(sources) == 1  # MEM1: consecutive questions of one source
        seen_sources |= sources
        first, second = info["question_ids"]
        assert first.split(":")[0] == second.split(":")[0]
    assert seen_sources == {"nq", "hotpotqa"}
    observation, info = env.reset(options={"question_ids": ["nq:test_2", "nq:test_6"]})
    assert (
        "Answer the following questions: what is the largest city in switzerland?; what is the capital of japan?"
        in observation
    )
    observation, reward, terminated, truncated, info = env.step(
        "<think>x</think><search>largest city in Switzerland</search>"
    )
    assert "Zürich" in observation and 'Doc 1(Title: "Zürich")' in observation
    assert env.observation_space.contains(observation)
    observation, reward, terminated, truncated, info = env.step(
        "<think>x</think><search>capital of Japan</search>"
    )
    assert "東京" in observation
    observation, reward, terminated, truncated, info = env.step(
        "<think>x</think><answer>Zurich; Tokyo</answer>"
    )
    assert terminated and reward == 2.0 and info["em"] == [1.0, 1.0]
    env.close()


def test_env_wide_charset_replaces_only_what_it_cannot_hold(tmp_path, monkeypatch):
    monkeypatch.setenv("MEM1_ENVS_CACHE", str(tmp_path / "cache"))
    env = gym.make("MEM1-MultiQA-v0", data=NQ, corpus=CORPUS)
    env.reset(seed=0)
    observation, *_ = env.step("<think>Москва 😀</think><search>Moscow</search>")
    assert "Москва" in observation and "😀" not in observation and "?" in observation
    assert env.observation_space.contains(observation)


def test_env_data_arguments_are_validated():
    with pytest.raises(ValueError, match="data='nq=x' needs something to search"):
        gym.make("MEM1-MultiQA-v0", data="nq=x")
    with pytest.raises(ValueError, match="search must be an http"):
        gym.make("MEM1-MultiQA-v0", search="localhost:8000")
    with pytest.raises(ValueError, match="do not also give index= or corpus="):
        gym.make("MEM1-MultiQA-v0", search="http://127.0.0.1:1/retrieve", corpus=CORPUS)
    with pytest.raises(ValueError, match=r"compose must be one of .* got 'mixed'"):
        gym.make("MEM1-MultiQA-v0", compose="mixed")
    with pytest.raises(ValueError, match="named twice"):
        gym.make("MEM1-MultiQA-v0", data="nq=a,nq=b", corpus=CORPUS)
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl"):
        gym.make("MEM1-MultiQA-v0", data="nq=missing.jsonl", corpus=CORPUS)


def test_env_bad_rows_follow_on_bad_row(tmp_path, monkeypatch):
    monkeypatch.setenv("MEM1_ENVS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(QADataError, match=r"bad_rows\.jsonl:2"):
        gym.make("MEM1-MultiQA-v0", data=f"bad={BAD}", corpus=CORPUS)
    with pytest.warns(UserWarning, match="skipped 6"):
        env = gym.make("MEM1-MultiQA-v0", data=f"bad={BAD}", corpus=CORPUS, on_bad_row="skip")
    assert sorted(q.qid for q in env.unwrapped.questions) == ["bad:ok1", "bad:ok6"]


def test_env_splits_never_share_a_question(tmp_path, monkeypatch):
    monkeypatch.setenv("MEM1_ENVS_CACHE", str(tmp_path / "cache"))
    many = tmp_path / "many.jsonl"
    many.write_text(
        "".join(
            json.dumps({"question": f"question number {i}", "golden_answers": ["x"]}) + "\n"
            for i in range(300)
        )
    )
    train = gym.make("MEM1-MultiQA-v0", data=str(many), corpus=CORPUS, split="train").unwrapped
    test = gym.make("MEM1-MultiQA-v0", data=str(many), corpus=CORPUS, split="test").unwrapped
    train_ids, test_ids = {q.qid for q in train.questions}, {q.qid for q in test.questions}
    assert train_ids.isdisjoint(test_ids) and len(train_ids | test_ids) == 300 and test_ids


def test_load_qa_sources_keeps_spec_order():
    pytest.importorskip("pyarrow")
    files = load_qa_sources(f"hotpotqa={HOTPOT},nq={NQ}")
    assert [f.name for f in files] == ["hotpotqa", "nq"]


def test_corpus_rows_with_integer_ids_or_title_and_text_fields(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"id": 7, "contents": '"Oslo"\nA city.'}, {"id": "8", "title": "Bergen", "text": "Rainy."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    assert [(p.doc_id, p.title, p.text) for p in iter_corpus(str(path))] == [
        ("7", "Oslo", "A city."),
        ("8", "Bergen", "Rainy."),
    ]
    path.write_text(json.dumps({"id": True, "contents": "x"}) + "\n")
    with pytest.raises(CorpusError, match=r"c\.jsonl:1: missing or invalid 'id' \(True\)"):
        list(iter_corpus(str(path)))


def test_check_data_cli_reports_sources_and_bad_rows():
    import subprocess
    import sys

    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "mem1_envs",
            "check-data",
            "--data",
            f"nq={NQ},bad={BAD}",
            "--on-bad-row",
            "skip",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    rows = {
        line.split()[0]: line.split()[1:6] for line in ok.stdout.splitlines()[1:] if not line.startswith(" ")
    }
    assert rows["nq"][:2] == ["8", "0"] and rows["bad"][:2] == ["2", "6"]
    assert f"skipped {BAD}:4: broken JSON" in ok.stdout
    failed = subprocess.run(
        [sys.executable, "-m", "mem1_envs", "check-data", "--data", f"bad={BAD}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        failed.returncode == 1 and f"check-data: error: {BAD}:2: missing or empty 'question'" in failed.stderr
    )
