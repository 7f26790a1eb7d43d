"""Search-R1 corpora (``{"id", "contents"}`` jsonl, plain or gzip), streamed, and a passage store.

A Search-R1 corpus row is ``{"id": "0", "contents": "\\"Title\\"\\ntext"}``; the 21M-passage
Wikipedia-2018 dump is about 13 GB of such lines, so nothing here holds the corpus as Python
objects: :func:`iter_corpus` yields one passage at a time and :class:`PassageStore` keeps the
passages on disk as one UTF-8 blob plus an offsets array, memory-mapped when loaded.

>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> path = os.path.join(folder, "corpus.jsonl")
>>> with open(path, "w") as handle:
...     _ = handle.write('{"id": "7", "contents": "\\\\"Oslo\\\\"\\\\nOslo is a city."}\\n')
>>> [(p.doc_id, p.title, p.text) for p in iter_corpus(path)]
[('7', 'Oslo', 'Oslo is a city.')]
>>> store = PassageStore.write(os.path.join(folder, "store"), iter_corpus(path))
>>> store = PassageStore.load(os.path.join(folder, "store"))
>>> store.ids[0], store.titles[0], store.texts[0], len(store)
('7', 'Oslo', 'Oslo is a city.', 1)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np

from mem1_envs.errors import Mem1EnvsError
from mem1_envs.files import DamagedFileError, load_npy
from mem1_envs.qa.world import split_contents

FINGERPRINT_BLOCKS = 64  # sampled blocks of a corpus fingerprint (plus head, tail and size)
FINGERPRINT_BLOCK_BYTES = 1 << 16


class CorpusError(Mem1EnvsError, ValueError):
    """A corpus file that cannot be read as Search-R1 rows; the message names file and line."""


@dataclass(frozen=True)
class Passage:
    """One corpus passage: its id, title and text (``contents`` split at the first newline)."""

    doc_id: str
    title: str
    text: str

    @property
    def contents(self) -> str:
        """The Search-R1 ``contents`` string (``'"Title"\\ntext'``)."""
        return join_contents(self.title, self.text)


def join_contents(title: str, text: str) -> str:
    """The inverse of :func:`~mem1_envs.qa.world.split_contents`.

    >>> join_contents("Oslo", "A city.")
    '"Oslo"\\nA city.'
    """
    return f'"{title}"\n{text}'


def iter_corpus(path: str, limit: int | None = None) -> Iterator[Passage]:
    """Stream a Search-R1 corpus: one :class:`Passage` per non-blank line, in file order
    (the first ``limit`` passages when ``limit`` is given).

    A row needs an ``id`` (string or integer) and either ``contents`` or ``title``/``text``
    (the Wikipedia-2018 dump of FlashRAG has both layouts in the wild). A line that is not a
    JSON object with those fields, or that is not UTF-8, raises :class:`CorpusError` naming the
    file and the 1-based line number.
    """
    for _, passage in _numbered_passages(path, limit):
        yield passage


def _numbered_passages(path: str, limit: int | None = None) -> Iterator[tuple[int, Passage]]:
    """:func:`iter_corpus` with each passage's 1-based line number."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"corpus file not found: {path!r}")
    # Binary lines, decoded one at a time: an encoding error is reported at its own line.
    with open_binary(path) as handle:
        count = 0
        line_number = 0
        try:
            for line_number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                yield line_number, _passage_from_line(line, path, line_number)
                count += 1
                if limit is not None and count >= limit:
                    return
        except (OSError, EOFError) as error:  # truncated or corrupt gzip stream
            raise CorpusError(f"{path}:{line_number + 1}: cannot read ({error})") from None


def unique_ids(passages: Iterable[Passage], path: str) -> Iterator[Passage]:
    """Pass ``passages`` (read from the corpus file ``path``) through; after the last one, raise
    :class:`CorpusError` if two share an id, naming the id and both lines.

    A search result is named by its id, so an index over duplicated ids would answer ambiguously.
    Memory: 8 bytes per passage (a hash of each id; 170 MB for wiki-18's 21M passages), checked
    with one sort at the end; only when hashes collide is the file read again, for the lines.

    >>> import json, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "corpus.jsonl")
    >>> with open(path, "w") as handle:
    ...     for doc_id in ("1", "2", "1"):
    ...         _ = handle.write(json.dumps({"id": doc_id, "contents": "text"}) + chr(10))
    >>> list(unique_ids(iter_corpus(path), path))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mem1_envs.qa.corpus.CorpusError: ...corpus.jsonl:3: duplicate passage id '1' (first at line 1); ids must be unique
    """
    hashes = array("q")
    for passage in passages:
        hashes.append(hash(passage.doc_id))
        yield passage
    ordered = np.sort(np.frombuffer(hashes, dtype=np.int64))
    suspects = set(ordered[1:][ordered[1:] == ordered[:-1]].tolist())
    if not suspects:
        return
    first_line: dict[str, int] = {}
    for line_number, passage in _numbered_passages(path, len(hashes)):
        if hash(passage.doc_id) not in suspects:
            continue
        if passage.doc_id in first_line:
            raise CorpusError(
                f"{path}:{line_number}: duplicate passage id {passage.doc_id!r} "
                f"(first at line {first_line[passage.doc_id]}); ids must be unique"
            )
        first_line[passage.doc_id] = line_number


def open_binary(path: str) -> IO[bytes]:
    """Open a file for binary reading, transparently gunzipping it (detected by its magic bytes)."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _passage_from_line(line: bytes, path: str, line_number: int) -> Passage:
    try:
        row = json.loads(line)
    except UnicodeDecodeError as error:
        raise CorpusError(f"{path}:{line_number}: not UTF-8 ({error.reason})") from None
    except json.JSONDecodeError as error:
        raise CorpusError(f"{path}:{line_number}: broken JSON ({error.msg})") from None
    if not isinstance(row, dict):
        raise CorpusError(f"{path}:{line_number}: expected a JSON object, got {type(row).__name__}")
    doc_id = row.get("id")
    if isinstance(doc_id, bool) or not isinstance(doc_id, str | int) or str(doc_id) == "":
        raise CorpusError(f"{path}:{line_number}: missing or invalid 'id' ({doc_id!r})")
    if isinstance(row.get("contents"), str):
        title, text = split_contents(row["contents"])
    elif isinstance(row.get("text"), str):
        title, text = str(row.get("title", "")), row["text"]
    else:
        raise CorpusError(f"{path}:{line_number}: missing 'contents' (or 'title'/'text') string")
    return Passage(str(doc_id), title, text)


def corpus_fingerprint(path: str, full: bool = False) -> str:
    """A hex digest identifying a corpus file's bytes.

    By default it hashes the size, the first and last 64 KiB and 64 evenly spaced 64 KiB blocks,
    so checking a 13 GB corpus takes milliseconds; any change of length, and most edits, change
    it. ``full=True`` hashes every byte (about 30 s per 13 GB).
    """
    size = os.path.getsize(path)
    digest = hashlib.sha256(f"size={size};full={full}".encode())
    with open(path, "rb") as handle:
        if full or size <= (FINGERPRINT_BLOCKS + 2) * FINGERPRINT_BLOCK_BYTES:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        else:
            last = size - FINGERPRINT_BLOCK_BYTES
            for offset in np.linspace(0, last, FINGERPRINT_BLOCKS + 2).astype(np.int64):
                handle.seek(int(offset))
                digest.update(handle.read(FINGERPRINT_BLOCK_BYTES))
    return digest.hexdigest()[:32]


class _StringColumn:
    """A read-only sequence of strings stored as one UTF-8 blob and an ``int64`` offsets array."""

    def __init__(self, blob: np.ndarray, offsets: np.ndarray, path: str = "<memory>"):
        self._blob, self._offsets, self.path = blob, offsets, path

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int | np.integer) -> str:
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"passage index out of range: {index}")
        start, end = int(self._offsets[index]), int(self._offsets[index + 1])
        try:
            return bytes(self._blob[start:end]).decode("utf-8")
        except UnicodeDecodeError:  # written as UTF-8: the file was overwritten since
            raise DamagedFileError(self.path, f"entry {index} is not UTF-8") from None

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))


class PassageStore:
    """Passages on disk: ids, titles and texts as memory-mapped UTF-8 columns.

    ``ids``, ``titles`` and ``texts`` are indexable like lists, so a :class:`BM25Engine` or a
    dense engine can return hits from a store of millions of passages without loading it.
    """

    COLUMNS = ("ids", "titles", "texts")

    def __init__(self, columns: dict[str, _StringColumn]):
        self.ids, self.titles, self.texts = (columns[name] for name in self.COLUMNS)

    def __len__(self) -> int:
        return len(self.ids)

    def passage(self, index: int) -> Passage:
        return Passage(self.ids[index], self.titles[index], self.texts[index])

    @classmethod
    def write(cls, folder: str, passages: Iterable[Passage]) -> PassageStore:
        """Write ``passages`` (any iterable, consumed once) into ``folder``; returns the store."""
        os.makedirs(folder, exist_ok=True)
        handles = {name: open(os.path.join(folder, f"{name}.bin"), "wb") for name in cls.COLUMNS}
        # array("q") keeps 8 bytes per offset: a Python list of ints would cost 36 per passage.
        offsets = {name: array("q", [0]) for name in cls.COLUMNS}
        try:
            for passage in passages:
                for name, value in zip(
                    cls.COLUMNS, (passage.doc_id, passage.title, passage.text), strict=True
                ):
                    data = value.encode("utf-8")
                    handles[name].write(data)
                    offsets[name].append(offsets[name][-1] + len(data))
        finally:
            for handle in handles.values():
                handle.close()
        for name in cls.COLUMNS:
            np.save(os.path.join(folder, f"{name}.offsets.npy"), np.frombuffer(offsets[name], dtype=np.int64))
        return cls.load(folder)

    @classmethod
    def load(cls, folder: str) -> PassageStore:
        """Open a store written by :meth:`write` (memory-mapped: loading costs no passage reads)."""
        columns = {}
        for name in cls.COLUMNS:
            offsets_path = os.path.join(folder, f"{name}.offsets.npy")
            offsets = load_npy(offsets_path)
            if offsets.ndim != 1 or not len(offsets) or int(offsets[0]) != 0:
                raise DamagedFileError(offsets_path, "not a list of offsets from 0")
            blob_path = os.path.join(folder, f"{name}.bin")
            if not os.path.isfile(blob_path):
                raise DamagedFileError(blob_path, "missing")
            if os.path.getsize(blob_path) == 0:  # numpy cannot memory-map an empty file
                blob = np.zeros(0, dtype=np.uint8)
            else:
                blob = np.memmap(blob_path, dtype=np.uint8, mode="r")
            if len(blob) != int(offsets[-1]):
                raise DamagedFileError(
                    blob_path, f"{len(blob)} bytes, {name}.offsets.npy says {int(offsets[-1])}"
                )
            columns[name] = _StringColumn(blob, offsets, blob_path)
        sizes = {len(column) for column in columns.values()}
        if len(sizes) != 1:
            raise DamagedFileError(folder, f"the passage store's columns differ in length {sorted(sizes)}")
        return cls(columns)
