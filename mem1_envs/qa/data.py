"""Real QA data: FlashRAG question files, several sources at once, MEM1's episode composition.

A FlashRAG QA file (Natural Questions, HotpotQA, 2Wiki, MuSiQue, ...) has one row per question
with ``question`` (string), ``golden_answers`` (list of strings) and optionally ``id``; it comes
as jsonl (plain or gzip) or parquet (extra ``data``: pyarrow). Rows that break those rules are an
error naming the file and line (``on_bad_row="error"``, the default) or are skipped and counted
(``on_bad_row="skip"``), never silently loaded wrong.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "nq.jsonl")
>>> with open(path, "w") as handle:
...     _ = handle.write('{"id": "q1", "question": "who wrote hamlet", "golden_answers": ["Shakespeare"]}\\n')
...     _ = handle.write('{"id": "q2", "question": "capital of norway?", "golden_answers": ["Oslo"]}\\n')
>>> loaded = load_qa_file(path, "nq")
>>> [(q.qid, q.golds) for q in loaded.questions]
[('nq:q1', ('Shakespeare',)), ('nq:q2', ('Oslo',))]
>>> join_questions([q.text for q in loaded.questions])
'who wrote hamlet?; capital of norway?'
>>> parse_data_spec("nq=data/nq.jsonl,hotpotqa=data/hotpot.parquet")
{'nq': 'data/nq.jsonl', 'hotpotqa': 'data/hotpot.parquet'}
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mem1_envs.errors import Mem1EnvsError
from mem1_envs.qa.world import Question

BAD_ROW_RULES = ("error", "skip")
SPLITS = ("train", "test", "all")
TEST_FRACTION = 0.1  # share of questions in the "test" split of a hashed split
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class QADataError(Mem1EnvsError, ValueError):
    """A QA file that breaks the FlashRAG layout; the message names the file and the line."""


@dataclass
class QAFile:
    """The questions loaded from one file, and how many bad rows were skipped."""

    name: str
    path: str
    questions: list[Question]
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    """The first few skip reasons (``file:line: reason``)."""


def parse_data_spec(spec: str | Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    """``"nq=path,hotpotqa=path"`` (or a mapping, or a list of ``name=path``) to ``{name: path}``.

    A bare path names its source after the file (``data/nq.train.jsonl`` -> ``nq``).
    """
    if isinstance(spec, Mapping):
        items = [(str(name), str(path)) for name, path in spec.items()]
    else:
        parts = spec.split(",") if isinstance(spec, str) else list(spec)
        items = []
        for part in parts:
            if not isinstance(part, str) or not part.strip():
                raise ValueError(f"data must be 'name=path[,name=path...]', got an empty entry in {spec!r}")
            name, sep, path = part.strip().partition("=")
            if not sep:
                name, path = os.path.basename(part.strip()).split(".")[0], part.strip()
            items.append((name.strip(), path.strip()))
    if not items:
        raise ValueError(f"data names no QA file: {spec!r}")
    result: dict[str, str] = {}
    for name, path in items:
        if not _SOURCE_NAME.match(name):
            raise ValueError(
                f"data source names use letters, digits, '_', '.', '-'; got {name!r} in {spec!r}"
            )
        if not path:
            raise ValueError(f"data source {name!r} has no path in {spec!r}")
        if name in result:
            raise ValueError(f"data source {name!r} is named twice in {spec!r}")
        result[name] = path
    return result


def load_qa_file(path: str, name: str | None = None, on_bad_row: str = "error") -> QAFile:
    """Load one FlashRAG QA file (``.parquet``, else jsonl, plain or gzip) as source ``name``.

    Question ids become ``name:id`` (``name:line`` without an ``id``), so several sources never
    collide. Each question's ``source`` is ``name``.
    """
    if on_bad_row not in BAD_ROW_RULES:
        raise ValueError(f"on_bad_row must be one of {BAD_ROW_RULES}, got {on_bad_row!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"QA file not found: {path!r}")
    name = name or os.path.basename(path).split(".")[0]
    rows = _parquet_rows(path) if path.endswith(".parquet") else _jsonl_rows(path)
    result = QAFile(name, path, [])
    seen: set[str] = set()
    for line, row in rows:
        try:
            question = _question(row, name, line)
            if question.qid in seen:
                raise QADataError(f"duplicate id {question.qid.split(':', 1)[1]!r}")
        except QADataError as error:
            reason = f"{path}:{line}: {error}"
            if on_bad_row == "error":
                raise QADataError(reason + " (on_bad_row='skip' skips such rows)") from None
            result.skipped += 1
            if len(result.skipped_examples) < 5:
                result.skipped_examples.append(reason)
            continue
        seen.add(question.qid)
        result.questions.append(question)
    if result.skipped:
        warnings.warn(
            f"{path}: skipped {result.skipped} bad rows, kept {len(result.questions)} "
            f"(first: {result.skipped_examples[0]})",
            stacklevel=2,
        )
    if not result.questions:
        raise QADataError(f"{path}: no usable questions ({result.skipped} bad rows skipped)")
    return result


def load_qa_sources(spec: str | Mapping[str, str] | Sequence[str], on_bad_row: str = "error") -> list[QAFile]:
    """Load every file of a :func:`parse_data_spec` spec, in order."""
    return [load_qa_file(path, name, on_bad_row) for name, path in parse_data_spec(spec).items()]


def _jsonl_rows(path: str) -> Iterator[tuple[int, object]]:
    """``(line number, parsed row or an error)`` per non-blank line; each line decoded on its own,
    so one badly encoded line can be skipped without losing the rest of the file."""
    import json

    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    with gzip.open(path, "rb") if gzipped else open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield number, QADataError(f"not UTF-8 ({error.reason} at byte {error.start})")
                continue
            if number == 1:
                text = text.removeprefix("\ufeff")
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as error:
                yield number, QADataError(f"broken JSON ({error.msg}, column {error.colno})")


def _parquet_rows(path: str) -> Iterator[tuple[int, object]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("reading parquet QA files needs pyarrow: pip install mem1-envs[data]") from None
    handle = pq.ParquetFile(path)
    columns = [c for c in ("id", "question", "golden_answers") if c in handle.schema_arrow.names]
    number = 0
    for batch in handle.iter_batches(columns=columns, batch_size=4096):
        for row in batch.to_pylist():
            number += 1
            yield number, row


def _question(row: object, name: str, line: int) -> Question:
    if isinstance(row, QADataError):
        raise row
    if not isinstance(row, dict):
        raise QADataError(f"expected a JSON object, got {type(row).__name__}")
    text = row.get("question")
    if not isinstance(text, str) or not text.strip():
        raise QADataError(f"missing or empty 'question' ({text!r})")
    golds = row.get("golden_answers")
    if isinstance(golds, np.ndarray):
        golds = golds.tolist()
    if not isinstance(golds, list | tuple):
        raise QADataError(f"'golden_answers' must be a list of strings, got {golds!r}")
    answers = []
    for gold in golds:
        if isinstance(gold, bool) or not isinstance(gold, str | int | float):
            raise QADataError(f"'golden_answers' must hold strings, got {gold!r}")
        if str(gold).strip():
            answers.append(str(gold).strip())
    if not answers:
        raise QADataError(f"'golden_answers' has no non-empty answer ({golds!r})")
    raw_id = row.get("id")
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        raw_id = str(line)
    elif isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise QADataError(f"'id' must be a string or integer, got {raw_id!r}")
    return Question(f"{name}:{raw_id}", " ".join(text.split()), tuple(answers), "single", (), name)


def join_questions(texts: Sequence[str]) -> str:
    """MEM1's prompt line: each question with ``?`` appended where missing, joined with ``"; "``."""
    return "; ".join(t if t.endswith("?") else t + "?" for t in texts)


def compose_consecutive(questions: Sequence[Question], n: int) -> list[tuple[Question, ...]]:
    """MEM1's rule: groups of ``n`` consecutive questions of one source, in file order.

    Each source is cut into groups on its own (a group never mixes sources); a source's last
    group, if shorter than ``n``, is dropped.

    >>> qs = [Question(str(i), f"q{i}", ("a",), "single", (), "nq" if i < 5 else "hq") for i in range(8)]
    >>> [[q.qid for q in g] for g in compose_consecutive(qs, 2)]
    [['0', '1'], ['2', '3'], ['5', '6']]
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    by_source: dict[str, list[Question]] = {}
    for question in questions:
        by_source.setdefault(question.source, []).append(question)
    return [tuple(group[i : i + n]) for group in by_source.values() for i in range(0, len(group) - n + 1, n)]


def compose_mixed(questions: Sequence[Question], n: int, seed: int) -> list[tuple[Question, ...]]:
    """A seeded random mix: all questions shuffled (any source), cut into groups of ``n``.

    >>> qs = [Question(str(i), f"q{i}", ("a",), "single", (), "nq") for i in range(5)]
    >>> compose_mixed(qs, 2, seed=0) == compose_mixed(qs, 2, seed=0), len(compose_mixed(qs, 2, seed=0))
    (True, 2)
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    order = np.random.default_rng(seed).permutation(len(questions))
    return [tuple(questions[int(i)] for i in order[j : j + n]) for j in range(0, len(order) - n + 1, n)]


def question_key(text: str) -> str:
    """What makes two questions "the same" for splitting: lower-cased words, no final ``?``."""
    return " ".join(text.lower().rstrip(" ?").split())


def is_test_question(text: str, test_fraction: float = TEST_FRACTION) -> bool:
    """Deterministic hashed split: the same question text is always on the same side."""
    digest = hashlib.sha1(question_key(text).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def split_by_text(questions: list[Question], split: str) -> list[Question]:
    """``"train"`` / ``"test"`` (10%) / ``"all"`` by a hash of the question text.

    Unlike a split by position, duplicates (the same question in two files, or twice in one) can
    never land on both sides, and the split does not change when files are reordered or grow.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "all":
        return questions
    return [q for q in questions if is_test_question(q.text) == (split == "test")]
