"""QA reward kernels: the numba batch scorer must agree exactly with the reference definitions."""

from __future__ import annotations

import os
import re
import string
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mem1_envs import rewards
from mem1_envs.rewards import (
    batch_em_f1,
    batch_em_f1_python,
    exact_match,
    f1_score,
    normalize_answer,
    score_answers,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every character Python's str.split() splits on.
WHITESPACE = [chr(c) for c in range(0x3001) if chr(c).isspace()]
# Pieces chosen to hit every rule: articles in every case and glued to other characters,
# the special answers, final sigma, characters whose lower case is longer (İ), ligatures,
# combining marks, word characters that are not letters (_ ² Ⅻ), unicode punctuation that is
# not in string.punctuation, zero-width and soft-hyphen format characters, non-Latin
# scripts, and the control characters batch_em_f1 uses as separators.
PIECES = [
    *["a", "an", "the", "A", "An", "AN", "The", "THE", "tHe", "anthem", "theatre", "at", "t", "he"],
    *["yes", "no", "noanswer", "Yes", "NO", "No Answer", "no-answer", "yes.", "'no'", "noanswer!"],
    *["Paris", "paris", "New York", "1,000", "3.14", "1912", "x²", "Ⅻ", "a_b", "the_", "_the"],
    *["σ", "Σ", "ΟΔΟΣ", "ὈΔΥΣΣΕΎΣ", "İstanbul", "STRASSE", "straße", "ﬁsh", "Москва", "北京", "東京都"],
    *["القاهرة", "दिल्ली", "e\u0301", "the\u0301", "\u0301the", "café", "naïve", "’s", "the’", "«the»"],
    *["—", "–", "…", "\u200b", "\u00ad", "\u200d", "\ufeff", "\x00", "\x01", "\x07", "\x85", "\u2028"],
    *string.punctuation,
]
GLUE = [*WHITESPACE, "", "", "", "-", ".", ",", "'", "\u2019", "_"]

adversarial = st.lists(st.tuples(st.sampled_from(PIECES), st.sampled_from(GLUE)), max_size=7).map(
    lambda parts: "".join(piece + glue for piece, glue in parts)
)
texts = st.one_of(adversarial, st.text(max_size=24), st.sampled_from(PIECES))


@st.composite
def pairs(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A prediction and 0-3 aliases; often the prediction is a disguised alias (so EM and F1 hit)."""
    golds = draw(st.lists(texts, max_size=3))
    if golds and draw(st.booleans()):
        gold = draw(st.sampled_from(golds))
        disguise = draw(st.sampled_from([str.upper, str.lower, lambda s: f"The {s}!", lambda s: f"{s} {s}"]))
        return disguise(gold), golds
    return draw(texts), golds


def assert_same(preds: list[str], golds_lists: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    em, f1 = batch_em_f1(preds, golds_lists)
    em_ref, f1_ref = batch_em_f1_python(preds, golds_lists)
    assert em.dtype == f1.dtype == np.float64
    assert em.shape == f1.shape == (len(preds),)
    # Exact equality, not approximate: same definition, same floating-point operations.
    assert em.tolist() == em_ref.tolist()
    assert f1.tolist() == f1_ref.tolist()
    return em, f1


# ------------------------------------------------------------------------------ agreement


@settings(max_examples=300, deadline=None)
@given(st.lists(pairs(), max_size=40))
def test_batch_agrees_exactly_with_python_twin(batch: list[tuple[str, list[str]]]) -> None:
    preds = [p for p, _ in batch]
    golds_lists = [g for _, g in batch]
    em, f1 = assert_same(preds, golds_lists)
    for i, (pred, golds) in enumerate(batch):
        assert em[i] == exact_match(pred, golds)
        assert f1[i] == f1_score(pred, golds)


@settings(max_examples=60, deadline=None)
@given(st.lists(pairs(), min_size=1, max_size=30))
def test_parallel_kernel_agrees_with_python_twin(batch: list[tuple[str, list[str]]]) -> None:
    saved = rewards.PARALLEL_MIN_PAIRS
    rewards.PARALLEL_MIN_PAIRS = 1  # force the prange kernel on small batches
    try:
        assert_same([p for p, _ in batch], [g for _, g in batch])
    finally:
        rewards.PARALLEL_MIN_PAIRS = saved


def test_large_random_batch_agrees_through_default_path() -> None:
    """Thousands of pairs, above PARALLEL_MIN_PAIRS, with heavy repetition and empty lists."""
    rng = np.random.default_rng(7)
    n = rewards.PARALLEL_MIN_PAIRS + 904

    def text() -> str:
        parts = rng.choice(len(PIECES), size=rng.integers(0, 5))
        return "".join(PIECES[k] + GLUE[rng.integers(len(GLUE))] for k in parts)

    golds_lists = [[text() for _ in range(rng.integers(0, 4))] for _ in range(n)]
    preds = [
        golds[0].upper() if golds and rng.random() < 0.3 else text()
        for golds in golds_lists  # some exact hits, many misses
    ]
    em, f1 = assert_same(preds, golds_lists)
    assert 0 < em.sum() < n and 0 < f1.sum() < n  # the data exercises both outcomes


def test_long_answers_agree() -> None:
    """Thousands of tokens per answer (the kernel's sort and overlap on long segments)."""
    rng = np.random.default_rng(3)
    words = [f"w{k}" for k in range(300)] + ["the", "yes", "no", "a"]
    preds = [" ".join(rng.choice(words, size=rng.integers(0, 5000))) for _ in range(6)]
    golds_lists = [[" ".join(rng.choice(words, size=rng.integers(0, 3000))), p.upper()] for p in preds[::-1]]
    em, f1 = assert_same(preds, golds_lists)
    assert 0 < f1.min() < 1


@settings(max_examples=500, deadline=None)
@given(texts)
def test_fast_normalisation_matches_reference(text: str) -> None:
    assert normalize_answer(text) == rewards._normalize_reference(text)
    # The faster article pattern matches the same spans as the reference one on any text.
    assert rewards._ARTICLES.sub(" ", text) == re.sub(r"\b(a|an|the)\b", " ", text)


def _flat_token_lists(strings: list[str]) -> list[list[str]]:
    flat, marker = rewards._flat_tokens(strings)
    out: list[list[str]] = [[]]
    for token in flat:
        if token == marker:
            out.append([])
        else:
            out[-1].append(token)
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(texts, min_size=1, max_size=20))
def test_one_text_normalisation_matches_one_by_one(strings: list[str]) -> None:
    assert _flat_token_lists(strings) == [rewards._normalize_reference(s).split() for s in strings]


def _code_point_contexts(code_points: range | list[int]) -> list[str]:
    # Each character next to an article, a capital sigma (final-sigma rule looks across
    # case-ignorable characters) and a string boundary.
    return [f"aΣ{chr(c)}the{chr(c)}Σ" for c in code_points if c not in range(0xD800, 0xE000)]


def test_one_text_normalisation_on_many_code_points() -> None:
    strings = _code_point_contexts([*range(1, 0x3000), *range(0x3000, 0x110000, 97)])
    assert _flat_token_lists(strings) == [rewards._normalize_reference(s).split() for s in strings]


@pytest.mark.slow
def test_one_text_normalisation_on_every_code_point() -> None:
    strings = _code_point_contexts(range(1, 0x110000))
    assert _flat_token_lists(strings) == [rewards._normalize_reference(s).split() for s in strings]


def test_separator_fallbacks() -> None:
    # The first separator occurs: the next one is used. All of them occur: one by one.
    first = ["a\x00b", "The\x00 end", "x"]
    every = [*first, rewards._SEPARATORS, "the Σ\x01"]
    for strings in (first, every):
        assert _flat_token_lists(strings) == [rewards._normalize_reference(s).split() for s in strings]
        assert_same(strings, [[s, "b"] for s in reversed(strings)])


# ----------------------------------------------------------------------- known examples


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("The Cat sat on the mat.", "cat sat on mat"),
        ("  A  Tale of\tTwo\nCities ", "tale of two cities"),
        ("Theatre and anthem", "theatre and anthem"),  # articles only as whole words
        ("U.S.A.", "usa"),
        ("rock'n'roll", "rocknroll"),
        ("a", ""),
        ("", ""),
        ("the-end", "theend"),  # punctuation goes first, so no article is left
        ("the’s", "’s"),  # ’ is not in string.punctuation but is a word boundary
    ],
)
def test_normalize_answer_examples(raw: str, normalised: str) -> None:
    assert normalize_answer(raw) == normalised


@pytest.mark.parametrize(
    ("pred", "golds", "em", "f1"),
    [
        # SQuAD v1.1 dev, "Which NFL team represented the AFC at Super Bowl 50?"
        ("Denver Broncos", ["Denver Broncos", "Denver Broncos", "Denver Broncos"], 1.0, 1.0),
        ("the Denver Broncos.", ["Denver Broncos"], 1.0, 1.0),
        ("Broncos", ["Denver Broncos"], 0.0, 2 * 1.0 * 0.5 / 1.5),  # p=1, r=1/2
        ("Carolina Panthers", ["Denver Broncos"], 0.0, 0.0),
        # "Where did Super Bowl 50 take place?" (several aliases: the maximum counts)
        ("Levi's Stadium", ["Santa Clara, California", "Levi's Stadium", "Levi's Stadium"], 1.0, 1.0),
        # vs "levis stadium": p=2/5, r=1 -> 4/7; vs "santa clara california": p=2/5, r=2/3 -> 1/2
        ("Levi's Stadium in Santa Clara", ["Santa Clara, California", "Levi's Stadium"], 0.0, 4 / 7),
        # Counter overlap counts repeated tokens once per occurrence on each side.
        ("cat cat cat", ["cat"], 0.0, 2 * (1 / 3) * 1.0 / (1 / 3 + 1.0)),
        ("cat dog", ["dog dog cat"], 0.0, 2 * 1.0 * (2 / 3) / (1.0 + 2 / 3)),
        # HotpotQA's special answers: F1 0 unless equal.
        ("yes", ["yes"], 1.0, 1.0),
        ("Yes.", ["yes"], 1.0, 1.0),
        ("yes", ["yes indeed"], 0.0, 0.0),
        ("no answer", ["noanswer"], 0.0, 0.0),
        ("no way", ["no"], 0.0, 0.0),
        ("no way", ["no", "way"], 0.0, 2 * 0.5 * 1.0 / 1.5),
        # Empty sides: equal empty strings are an exact match with F1 0 (no common token).
        ("", [""], 1.0, 0.0),
        ("The", ["an"], 1.0, 0.0),
        ("", ["Paris"], 0.0, 0.0),
        ("Paris", [""], 0.0, 0.0),
        ("Paris", [], 0.0, 0.0),
        ("Paris", "paris", 1.0, 1.0),  # a bare string is one alias
    ],
)
def test_known_examples(pred: str, golds: list[str] | str, em: float, f1: float) -> None:
    assert exact_match(pred, golds) == em
    assert f1_score(pred, golds) == pytest.approx(f1, abs=1e-12)
    batch_em, batch_f1 = batch_em_f1([pred], [golds])
    assert batch_em[0] == em
    assert batch_f1[0] == f1_score(pred, golds)


def test_empty_batch() -> None:
    for scorer in (batch_em_f1, batch_em_f1_python):
        em, f1 = scorer([], [])
        assert em.shape == f1.shape == (0,)
        assert em.dtype == f1.dtype == np.float64


def test_alias_containers() -> None:
    preds = ["Paris", "Lyon", "Nice"]
    golds = [("paris",), {"Lyon", "x"}, "nice"]  # tuple, set, bare string
    em, _ = batch_em_f1(preds, golds)
    assert em.tolist() == [1.0, 1.0, 1.0] == batch_em_f1_python(preds, golds)[0].tolist()


# ------------------------------------------------------------------------------- errors


def test_bad_arguments_name_the_value() -> None:
    with pytest.raises(TypeError, match="NoneType: None"):
        normalize_answer(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int: 3"):
        exact_match("x", ["a", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="got 1 and 2"):
        batch_em_f1(["a"], [["a"], ["b"]])
    with pytest.raises(TypeError, match=r"preds\[1\] must be a str, got int: 5"):
        batch_em_f1(["a", 5], [["a"], ["b"]])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"golds_lists\[1\] must be a sequence of str, got NoneType"):
        batch_em_f1(["a", "b"], [["a"], None])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"golds_lists\[0\].*got list: \['x'\]"):
        batch_em_f1(["a"], [[["x"]]])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"preds\[0\] must be a str, got bytes: b'x'"):
        batch_em_f1([b"x"], [["x"]])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"alias in golds_lists\[1\] must be a str, got int: 3"):
        batch_em_f1(["a", "b"], [["a"], ["b", 3]])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="not a single str"):
        batch_em_f1("abc", ["a", "b", "c"])
    with pytest.raises(TypeError, match="not a single str"):
        score_answers("Paris", [["Paris"]])


# ------------------------------------------------------------------------ multi-objective


def test_score_answers_is_positional() -> None:
    golds = [["Paris"], ["1912", "in 1912"], ["yes"]]
    em, f1 = score_answers(["paris", "1912 or 1913"], golds)  # third answer missing
    assert em.tolist() == [1.0, 0.0, 0.0]
    assert f1.tolist() == [1.0, f1_score("1912 or 1913", golds[1]), 0.0]
    em, f1 = score_answers(["Paris", "1912", "Yes", "extra", "more"], golds)  # extras ignored
    assert em.tolist() == f1.tolist() == [1.0, 1.0, 1.0]
    em, f1 = score_answers([], golds)
    assert em.tolist() == f1.tolist() == [0.0, 0.0, 0.0]
    # A missing answer is not an empty answer: "" matches a gold that normalises to "".
    assert score_answers([""], [["the"], ["the"]])[0].tolist() == [1.0, 0.0]
    assert score_answers(["a"], [])[0].shape == (0,)


def _score_in_child(answers: list[str]) -> list[float]:
    return score_answers(answers, [["Paris"], ["Lyon"]])[1].tolist()


@pytest.mark.skipif(sys.platform == "win32", reason="fork start method")
def test_small_batches_work_in_forked_workers_after_a_parallel_call() -> None:
    """AsyncVectorEnv forks workers; env-sized batches take the thread-free serial kernel."""
    import multiprocessing

    n = rewards.PARALLEL_MIN_PAIRS
    batch_em_f1(["Paris"] * n, [["paris"]] * n)  # the parent has run the prange kernel
    with multiprocessing.get_context("fork").Pool(1) as pool:
        result = pool.apply_async(_score_in_child, (["paris", "Nice"],))
        assert result.get(timeout=120) == [1.0, 0.0]


# ---------------------------------------------------------------------------- benchmark


def test_benchmark_script_quick() -> None:
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "bench_rewards.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "identical on all sides" in result.stdout
    assert re.search(r"speed-up vs reference loop: [0-9.]+x", result.stdout), result.stdout
