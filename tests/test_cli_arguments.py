"""``python -m mem1_envs``: bad flags get one line naming the flag; duplicate corpus ids are an error."""

from __future__ import annotations

import json
import os

import pytest

from mem1_envs.__main__ import main
from mem1_envs.qa.corpus import CorpusError
from mem1_envs.qa.index import build_index

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
CORPUS = os.path.join(DATA, "wiki_sample.jsonl")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["build-index", "--k1", "-1"], "argument --k1: must be >= 0, got -1.0"),
        (["build-index", "--k1", "nan"], "argument --k1: must be a finite number, got nan"),
        (["build-index", "--k1", "x"], "argument --k1: must be a number, got 'x'"),
        (["build-index", "--b", "1.5"], "argument --b: must be <= 1, got 1.5"),
        (["build-index", "--b", "-0.1"], "argument --b: must be >= 0, got -0.1"),
        (["build-index", "--limit", "0"], "argument --limit: must be >= 1, got 0"),
        (["build-index", "--limit", "2.5"], "argument --limit: must be an integer, got '2.5'"),
        (["build-index", "--batch-size", "-4"], "argument --batch-size: must be >= 1, got -4"),
        (
            ["check-data", "--data", "x", "--num-objectives", "0"],
            "argument --num-objectives: must be >= 1, got 0",
        ),
        (
            ["serve-retriever", "--index", "x", "--port", "70000"],
            "argument --port: must be <= 65535, got 70000",
        ),
        (["serve-retriever", "--index", "x", "--max-topk", "0"], "argument --max-topk: must be >= 1, got 0"),
        (["serve-retriever", "--index", "x", "--log-level", "loud"], "argument --log-level: invalid choice"),
    ],
)
def test_bad_flags_exit_2_with_one_line_naming_the_flag(argv, message, tmp_path, capsys):
    argv = [
        argv[0],
        *(["--corpus", CORPUS, "--out", str(tmp_path / "ix")] if argv[0] == "build-index" else []),
        *argv[1:],
    ]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and message in error_lines[0], error_lines
    assert not (tmp_path / "ix").exists()


def test_build_index_rejects_bad_parameters_before_reading_the_corpus(tmp_path):
    out = str(tmp_path / "ix")
    for kwargs, message in [
        ({"k1": -1}, "k1 must be >= 0, got -1"),
        ({"b": 2.0}, "b must be <= 1, got 2.0"),
        ({"k1": "1.2"}, "k1 must be a number, got '1.2' (str)"),
        ({"limit": 1.0}, "limit must be an integer or None, got 1.0 (float)"),
        ({"chunk_tokens": True}, "chunk_tokens must be an integer, got True (bool)"),
    ]:
        with pytest.raises(
            (TypeError, ValueError), match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"
        ):
            build_index("/no/such/corpus.jsonl", out, show_progress=False, **kwargs)
    assert not os.path.exists(out)


def _corpus_with_ids(path, ids):
    with open(path, "w", encoding="utf-8") as handle:
        for number, doc_id in enumerate(ids):
            handle.write(json.dumps({"id": doc_id, "contents": f'"Title {number}"\nText {number}.'}) + "\n")
            if number == 1:
                handle.write("\n")  # a blank line: line numbers are the file's, not the passages'
    return str(path)


def test_duplicate_corpus_ids_are_an_error_naming_id_and_lines(tmp_path, capsys):
    corpus = _corpus_with_ids(tmp_path / "dup.jsonl", ["a", "b", "c", 7, "7", "d"])
    out = tmp_path / "ix"
    assert main(["build-index", "--corpus", corpus, "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"build-index: error: {corpus}:6: duplicate passage id '7' (first at line 5); ids must be unique"
    )
    assert not out.exists() and os.listdir(tmp_path) == ["dup.jsonl"]  # no half index, no scratch
    with pytest.raises(CorpusError, match="duplicate passage id 'a'"):
        build_index(_corpus_with_ids(tmp_path / "dup2.jsonl", ["a", "a"]), str(out), show_progress=False)


def test_unique_ids_build_as_before(tmp_path):
    corpus = _corpus_with_ids(tmp_path / "ok.jsonl", ["a", "b", "c"])
    info = build_index(corpus, str(tmp_path / "ix"), show_progress=False)
    assert info.num_passages == 3
    # limit: only the indexed passages count, a duplicate after the limit is not read
    corpus = _corpus_with_ids(tmp_path / "late.jsonl", ["a", "b", "c", "a"])
    assert build_index(corpus, str(tmp_path / "ix2"), show_progress=False, limit=3).num_passages == 3


def test_dense_model_folder_that_does_not_exist_is_named(tmp_path, capsys):
    out = str(tmp_path / "ix")
    argv = [
        "build-index",
        "--kind",
        "dense",
        "--model",
        str(tmp_path / "nope"),
        "--corpus",
        CORPUS,
        "--out",
        out,
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"build-index: error: --model must be an existing folder, got '{tmp_path / 'nope'}' (does not exist)"
    )


def test_the_shop_web_app_checks_its_flags(capsys):
    from mem1_envs.shop.webapp import main as serve_shop

    for argv, message in [
        (["--n-products", "0"], "argument --n-products: must be >= 1, got 0"),
        (["--catalog-seed", "-1"], "argument --catalog-seed: must be >= 0, got -1"),
    ]:
        with pytest.raises(SystemExit) as exited:
            serve_shop(argv)
        assert exited.value.code == 2 and message in capsys.readouterr().err
