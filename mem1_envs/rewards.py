"""QA reward kernels: SQuAD/HotpotQA exact match and token F1, one pair at a time or in bulk.

The definitions are those of the SQuAD v1.1 and HotpotQA evaluation scripts, which MEM1 uses:

* ``normalize_answer``: lower-case, remove ``string.punctuation``, remove the articles
  a/an/the as whole words (``re.sub(r"\\b(a|an|the)\\b", " ", s)``), collapse white space.
* ``exact_match``: 1.0 when the normalised prediction equals a normalised gold alias.
* ``f1_score``: harmonic mean of token precision and recall over whitespace tokens with
  multiset (``Counter``) overlap. HotpotQA's rule: if either normalised side is ``yes``,
  ``no`` or ``noanswer`` and the two differ, F1 is 0. Two empty strings have F1 0 (no
  common token) but EM 1.
* Several gold aliases: the maximum over them. No gold alias at all: 0 for both.

``batch_em_f1`` scores many pairs at once: every distinct string is normalised once (all of
them in one pass of ``str.lower``/``str.replace``/``re.sub``, which is where the time goes),
tokens become integer ids, and a numba kernel scores every pair (``prange`` over pairs for big
batches). ``batch_em_f1_python`` is the plain-Python twin built literally on the reference
definitions; the tests require the two to agree exactly, bit for bit.

>>> normalize_answer("The  Eiffel-Tower!")
'eiffeltower'
>>> exact_match("the Eiffel Tower", ["Eiffel Tower", "Tour Eiffel"])
1.0
>>> round(f1_score("Eiffel Tower in Paris", ["the Eiffel Tower"]), 4)
0.6667
>>> f1_score("no", ["yes"]), f1_score("yes no", ["no"])
(0.0, 0.0)
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from itertools import chain

import numpy as np
from numba import njit, prange

__all__ = [
    "batch_em_f1",
    "batch_em_f1_python",
    "exact_match",
    "f1_score",
    "normalize_answer",
    "score_answers",
]

_PUNCTUATION = frozenset(string.punctuation)
# The reference pattern is r"\b(a|an|the)\b". This one matches exactly the same spans on any
# text (an article starts and ends with a word character, so its \b's mean "no word character
# before" and "none after"; tests check it), but it starts with a character class, which lets
# the regex engine skip ahead to the next "a" or "t": twice as fast on long text.
_ARTICLES = re.compile(r"[at](?<!\w[at])(?:(?<=a)n?|(?<=t)he)(?!\w)")
# Answers that HotpotQA treats as a class label rather than a span (F1 is 0 unless equal).
_SPECIAL = ("yes", "no", "noanswer")
# batch_em_f1 normalises all distinct strings as one text, joined by " X " where X is the
# first of these characters that occurs in none of them. X must act like the end of a string
# at every stage: not cased and not case-ignorable (str.lower's final-sigma rule cannot look
# across it), not punctuation, not a word character (\b sees a boundary), not white space
# (so it stays a token of its own). These control characters are all of that.
_SEPARATORS = "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f\x10\x11"
# Batches at least this big use the parallel (prange) kernel; smaller ones, such as an env
# step's few dozen answers, use the serial kernel: it starts no threads, so it is safe in
# forked vector-env workers (numba's OpenMP layer is not fork-safe) and costs no thread launch.
PARALLEL_MIN_PAIRS = 4096


def _check_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}: {value!r}")
    return value


def _aliases(golds: Sequence[str] | str, what: str = "golds") -> list[str]:
    """The gold aliases as a list; a bare string counts as one alias."""
    if isinstance(golds, str):
        return [golds]
    if not isinstance(golds, Sequence | set | frozenset):
        raise TypeError(f"{what} must be a sequence of str, got {type(golds).__name__}: {golds!r}")
    out = list(golds)
    for gold in out:
        _check_str(gold, f"every gold alias in {what}")
    return out


# ----------------------------------------------------------------------------------------------
# The reference definitions (the oracle), written as in the SQuAD/HotpotQA scripts.
# ----------------------------------------------------------------------------------------------


def _normalize_reference(s: str) -> str:
    """SQuAD v1.1 ``normalize_answer``, verbatim in behaviour (the oracle for the fast one)."""
    text = s.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _em_reference(prediction: str, ground_truth: str) -> float:
    return float(_normalize_reference(prediction) == _normalize_reference(ground_truth))


def _f1_reference(prediction: str, ground_truth: str) -> float:
    """HotpotQA ``f1_score`` (the F1 part of its returned triple)."""
    normalized_prediction = _normalize_reference(prediction)
    normalized_ground_truth = _normalize_reference(ground_truth)
    if normalized_prediction in _SPECIAL and normalized_prediction != normalized_ground_truth:
        return 0.0
    if normalized_ground_truth in _SPECIAL and normalized_prediction != normalized_ground_truth:
        return 0.0
    prediction_tokens = normalized_prediction.split()
    ground_truth_tokens = normalized_ground_truth.split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def batch_em_f1_python(
    preds: Sequence[str], golds_lists: Sequence[Sequence[str] | str]
) -> tuple[np.ndarray, np.ndarray]:
    """Plain-Python twin of :func:`batch_em_f1` (the test oracle): a loop over the reference code.

    >>> em, f1 = batch_em_f1_python(["Paris", "", "yes"], [["paris"], [""], []])
    >>> em.tolist(), f1.tolist()
    ([1.0, 1.0, 0.0], [1.0, 0.0, 0.0])
    """
    _check_lengths(preds, golds_lists)
    em = np.zeros(len(preds), dtype=np.float64)
    f1 = np.zeros(len(preds), dtype=np.float64)
    for i, (pred, golds) in enumerate(zip(preds, golds_lists, strict=True)):
        _check_str(pred, f"preds[{i}]")
        aliases = _aliases(golds, f"golds_lists[{i}]")
        if aliases:
            em[i] = max(_em_reference(pred, gold) for gold in aliases)
            f1[i] = max(_f1_reference(pred, gold) for gold in aliases)
    return em, f1


# ----------------------------------------------------------------------------------------------
# The public scalar functions (fast normalisation, same results as the reference).
# ----------------------------------------------------------------------------------------------


def _remove_punctuation(text: str) -> str:
    # Faster than str.translate on non-ASCII text: each replace is one C scan, and most
    # punctuation characters do not occur at all.
    for ch in string.punctuation:
        if ch in text:
            text = text.replace(ch, "")
    return text


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation, drop whole-word articles, collapse white space.

    >>> normalize_answer("  A Tale of Two   Cities. ")
    'tale of two cities'
    >>> normalize_answer("Theatre, an 'Apple' & the end")
    'theatre apple end'
    """
    text = _remove_punctuation(_check_str(s, "normalize_answer's argument").lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(pred: str, golds: Sequence[str] | str) -> float:
    """1.0 if the normalised prediction equals any normalised gold alias, else 0.0.

    >>> exact_match("The Beatles", ["beatles", "the fab four"])
    1.0
    >>> exact_match("Beatles", [])
    0.0
    """
    norm_pred = normalize_answer(pred)
    return max((float(norm_pred == normalize_answer(g)) for g in _aliases(golds)), default=0.0)


def _f1_tokens(pred_norm: str, gold_norm: str) -> float:
    if pred_norm != gold_norm and (pred_norm in _SPECIAL or gold_norm in _SPECIAL):
        return 0.0
    pred_tokens = pred_norm.split()
    gold_tokens = gold_norm.split()
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(pred_tokens)
    recall = 1.0 * num_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def f1_score(pred: str, golds: Sequence[str] | str) -> float:
    """Token F1 (SQuAD, with HotpotQA's yes/no/noanswer rule), the maximum over gold aliases.

    >>> f1_score("Barack Obama", ["Obama"])
    0.6666666666666666
    >>> f1_score("", [""])  # no common token, although EM is 1
    0.0
    """
    norm_pred = normalize_answer(pred)
    return max((_f1_tokens(norm_pred, normalize_answer(g)) for g in _aliases(golds)), default=0.0)


# ----------------------------------------------------------------------------------------------
# The numba kernel.
# ----------------------------------------------------------------------------------------------

# Token ids 0, 1, 2 are reserved for the special answers so the kernel can spot them.
_N_SPECIAL = len(_SPECIAL)


@njit(cache=True)
def _sort_segments(tokens: np.ndarray, offsets: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """Each string's token ids sorted (for the multiset intersection).

    Shell sort (Knuth's gaps) rather than np.sort: answers are a few tokens long, so this is
    as fast, it stays sub-quadratic on a pathological megabyte answer, and it compiles in a
    fraction of the time np.sort's quicksort takes (first-call cost matters).
    """
    out = tokens.copy()
    for s in range(offsets.shape[0] - 1):
        lo = offsets[s]
        n = offsets[s + 1] - lo
        gap = 1
        while gap < n // 3:
            gap = 3 * gap + 1
        while gap >= 1:
            for i in range(lo + gap, lo + n):
                value = out[i]
                j = i
                while j - gap >= lo and out[j - gap] > value:
                    out[j] = out[j - gap]
                    j -= gap
                out[j] = value
            gap //= 3
    return out


@njit(cache=True)
def _pair_scores(tokens, sorted_tokens, offsets, p, g):  # pragma: no cover - numba
    """(em, f1) of distinct strings p (prediction) and g (gold), exactly as the reference."""
    p0 = offsets[p]
    lp = offsets[p + 1] - p0
    g0 = offsets[g]
    lg = offsets[g + 1] - g0
    equal = lp == lg
    if equal:
        for k in range(lp):
            if tokens[p0 + k] != tokens[g0 + k]:
                equal = False
                break
    em = 1.0 if equal else 0.0
    special = (lp == 1 and tokens[p0] < _N_SPECIAL) or (lg == 1 and tokens[g0] < _N_SPECIAL)
    if special and not equal:
        return em, 0.0
    # Multiset intersection size of two sorted id lists = Counter(a) & Counter(b).
    i = 0
    j = 0
    same = 0
    while i < lp and j < lg:
        a = sorted_tokens[p0 + i]
        b = sorted_tokens[g0 + j]
        if a == b:
            same += 1
            i += 1
            j += 1
        elif a < b:
            i += 1
        else:
            j += 1
    if same == 0:
        return em, 0.0
    precision = 1.0 * same / lp
    recall = 1.0 * same / lg
    return em, (2 * precision * recall) / (precision + recall)


@njit(cache=True)
def _score_serial(tokens, sorted_tokens, offsets, pred_ids, gold_ids, gold_offsets, em, f1):
    for i in range(pred_ids.shape[0]):
        best_em = 0.0
        best_f1 = 0.0
        for k in range(gold_offsets[i], gold_offsets[i + 1]):
            e, f = _pair_scores(tokens, sorted_tokens, offsets, pred_ids[i], gold_ids[k])
            best_em = max(best_em, e)
            best_f1 = max(best_f1, f)
        em[i] = best_em
        f1[i] = best_f1


@njit(cache=True, parallel=True)
def _score_parallel(tokens, sorted_tokens, offsets, pred_ids, gold_ids, gold_offsets, em, f1):
    for i in prange(pred_ids.shape[0]):
        best_em = 0.0
        best_f1 = 0.0
        for k in range(gold_offsets[i], gold_offsets[i + 1]):
            e, f = _pair_scores(tokens, sorted_tokens, offsets, pred_ids[i], gold_ids[k])
            best_em = max(best_em, e)
            best_f1 = max(best_f1, f)
        em[i] = best_em
        f1[i] = best_f1


def _flat_tokens(strings: list[str]) -> tuple[list[str], str]:
    """``normalize_answer(s).split()`` of every string, concatenated with a marker token between.

    Returns the flat token list and the marker (a string that is never a token).
    """
    probe = "".join(strings)
    sep = next((ch for ch in _SEPARATORS if ch not in probe), None)
    if sep is None:  # adversarial input holding every separator: normalise one by one
        marker = " "  # tokens never contain white space
        flat: list[str] = []
        for k, s in enumerate(strings):
            if k:
                flat.append(marker)
            flat.extend(normalize_answer(s).split())
        return flat, marker
    text = _remove_punctuation(f" {sep} ".join(strings).lower())
    return _ARTICLES.sub(" ", text).split(), sep


def _check_lengths(preds: Sequence[str], golds_lists: Sequence[Sequence[str] | str]) -> None:
    if isinstance(preds, str) or isinstance(golds_lists, str):
        raise TypeError("preds and golds_lists must be sequences, not a single str")
    if len(preds) != len(golds_lists):
        raise ValueError(
            f"preds and golds_lists must have the same length, got {len(preds)} and {len(golds_lists)}"
        )


def _validate(preds: Sequence[str], golds_lists: Sequence[Sequence[str] | str]) -> None:
    """Raise the error that names the first bad value (the slow path, only after a failure)."""
    for i, pred in enumerate(preds):
        _check_str(pred, f"preds[{i}]")
    for i, golds in enumerate(golds_lists):
        _aliases(golds, f"golds_lists[{i}]")


def _prepare(
    preds: Sequence[str], golds_lists: Sequence[Sequence[str] | str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Token ids of every distinct string (flat, with offsets) and which strings each pair uses.

    Everything here is a C-level pass over Python lists (the per-item Python work is what
    dominates batch_em_f1's time): distinct strings are normalised once, in one text.
    """
    _check_lengths(preds, golds_lists)
    if str in set(map(type, golds_lists)):  # a bare string is one alias
        golds_lists = [(g,) if isinstance(g, str) else g for g in golds_lists]
    try:
        counts = np.fromiter(map(len, golds_lists), dtype=np.int64, count=len(golds_lists))
        strings = list(dict.fromkeys(chain(preds, chain.from_iterable(golds_lists))))
    except TypeError:  # an alias list without len() or an unhashable value: say which
        _validate(preds, golds_lists)
        raise
    index = dict(zip(strings, range(len(strings)), strict=True))
    pred_ids = np.fromiter(map(index.__getitem__, preds), dtype=np.int64, count=len(preds))
    gold_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=gold_offsets[1:])
    gold_ids = np.fromiter(
        map(index.__getitem__, chain.from_iterable(golds_lists)), dtype=np.int64, count=int(gold_offsets[-1])
    )
    try:
        flat, marker = _flat_tokens(strings)  # str.join rejects anything but str
    except TypeError:
        _validate(preds, golds_lists)
        raise
    # Ids 0, 1, 2 are the special answers yes/no/noanswer (see _pair_scores); the marker's id
    # only separates strings.
    vocab = {word: k for k, word in enumerate(dict.fromkeys(chain(_SPECIAL, flat)))}
    ids = np.fromiter(map(vocab.__getitem__, flat), dtype=np.int64, count=len(flat))
    is_marker = ids == vocab.get(marker, -1)
    markers = np.flatnonzero(is_marker)
    offsets = np.empty(len(strings) + 1, dtype=np.int64)
    offsets[0] = 0
    # String k (k >= 1) starts after the (k-1)-th marker, less the k markers before it.
    offsets[1:-1] = markers + 1 - np.arange(1, len(strings))
    offsets[-1] = len(flat) - len(markers)
    return ids[~is_marker], offsets, pred_ids, gold_ids, gold_offsets


def batch_em_f1(
    preds: Sequence[str], golds_lists: Sequence[Sequence[str] | str]
) -> tuple[np.ndarray, np.ndarray]:
    """EM and F1 of every ``preds[i]`` against its aliases ``golds_lists[i]`` (float64 arrays).

    Same results as :func:`exact_match` and :func:`f1_score` pair by pair (an empty alias list
    scores 0), computed by a numba kernel.

    >>> em, f1 = batch_em_f1(["Paris", "the city of Paris", "", "no"], [["paris"], ["Paris"], [""], []])
    >>> em.tolist()
    [1.0, 0.0, 1.0, 0.0]
    >>> f1.tolist()
    [1.0, 0.5, 0.0, 0.0]
    """
    tokens, offsets, pred_ids, gold_ids, gold_offsets = _prepare(preds, golds_lists)
    sorted_tokens = _sort_segments(tokens, offsets)
    em = np.zeros(len(pred_ids), dtype=np.float64)
    f1 = np.zeros(len(pred_ids), dtype=np.float64)
    kernel = _score_parallel if len(pred_ids) >= PARALLEL_MIN_PAIRS else _score_serial
    kernel(tokens, sorted_tokens, offsets, pred_ids, gold_ids, gold_offsets, em, f1)
    return em, f1


def score_answers(
    answers: Sequence[str], golds_per_question: Sequence[Sequence[str] | str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-objective EM and F1 of a multi-objective answer list, scored by position.

    ``answers[j]`` is scored against ``golds_per_question[j]``; a missing answer scores 0 and
    answers beyond the number of questions are ignored. The env sums or averages the result.

    >>> em, f1 = score_answers(["Paris", "1912"], [["Paris"], ["1912", "in 1912"], ["Lyon"]])
    >>> em.tolist(), f1.tolist()
    ([1.0, 1.0, 0.0], [1.0, 1.0, 0.0])
    """
    if isinstance(answers, str) or isinstance(golds_per_question, str):
        raise TypeError("answers and golds_per_question must be sequences, not a single str")
    n = len(golds_per_question)
    em = np.zeros(n, dtype=np.float64)
    f1 = np.zeros(n, dtype=np.float64)
    m = min(n, len(answers))
    if m:
        em[:m], f1[:m] = batch_em_f1(list(answers[:m]), list(golds_per_question[:m]))
    return em, f1
