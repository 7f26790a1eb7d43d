"""Checked reads of the files an index or a cache entry is made of: a damaged file is one clear line.

numpy, ``json`` and ``bm25s`` report a truncated or overwritten file with a traceback deep in
their own code (``mmap length is greater than file size``, a ``tokenize`` error from a garbled
``.npy`` header, ``EOFError``), and a BM25 ``indices`` array pointing past the documents makes
the numba search kernel write out of bounds (a segfault). The functions here check the files
first (:func:`load_bm25s` then loads a ``bm25s`` folder) and raise :class:`DamagedFileError`,
whose message names the file and what is wrong with it.

What is checked: every ``.npy`` header parses and the file holds exactly the bytes its header
promises; every JSON file parses to the expected type; a ``bm25s`` folder's arrays agree with
each other (``indptr`` starts at 0, never decreases, ends at the length of ``data`` and
``indices``, has a column for every word id of the vocabulary) and, up to
:data:`SCAN_LIMIT` entries, every document index is in range. Values inside an array of the
right size are not checksummed: a flipped score bit gives a wrong score, not a crash.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "a.npy")
>>> np.save(path, np.arange(1000))
>>> npy_shape(path)
(1000,)
>>> with open(path, "r+b") as handle:
...     _ = handle.truncate(500)
>>> npy_shape(path)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
mem1_envs.files.DamagedFileError: ...a.npy' is damaged (truncated: 500 bytes, its header promises 8128)
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from mem1_envs.errors import Mem1EnvsError

SCAN_LIMIT = 1 << 28
"""Largest ``indices`` array (entries) scanned for out-of-range documents at load: 1 GiB of int32.
Bigger indexes (Wikipedia-scale) would read the whole file at every load; they are not scanned."""


class DamagedFileError(Mem1EnvsError, ValueError):
    """A file of an index or cache entry that is missing, truncated or corrupted (named in the message)."""

    def __init__(self, path: str, reason: str, hint: str = "") -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path!r} is damaged ({reason})" + (f"; {hint}" if hint else ""))


@contextlib.contextmanager
def hint(text: str) -> Iterator[None]:
    """Add what to do (``text``) to a :class:`DamagedFileError` raised in the block."""
    try:
        yield
    except DamagedFileError as error:
        raise DamagedFileError(error.path, error.reason, text) from None


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:120]}"


def npy_shape(path: str) -> tuple[int, ...]:
    """The shape in a ``.npy`` file's header, once the file is checked to hold exactly that array."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(handle)
            start = handle.tell()
            size = os.fstat(handle.fileno()).st_size
    except FileNotFoundError:
        raise DamagedFileError(path, "missing") from None
    except OSError:
        raise  # unreadable (permissions, I/O): the OS's own message names the file
    except Exception as error:  # numpy reports a garbled header in many ways (tokenize, syntax...)
        raise DamagedFileError(path, f"not a .npy array: {_short(error)}") from None
    if dtype.hasobject:
        raise DamagedFileError(path, "holds Python objects, which are never loaded")
    expected = start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size != expected:
        what = "truncated" if size < expected else "too long"
        raise DamagedFileError(path, f"{what}: {size} bytes, its header promises {expected}")
    return tuple(shape)


def load_npy(path: str, mmap: bool = True) -> np.ndarray:
    """``np.load`` of a checked ``.npy`` file (memory-mapped by default)."""
    npy_shape(path)
    return np.load(path, mmap_mode="r" if mmap else None)


def load_json(path: str, kind: type = dict) -> Any:
    """A JSON file's content, which must be a ``kind`` (``dict`` or ``list``)."""
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except FileNotFoundError:
        raise DamagedFileError(path, "missing") from None
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise DamagedFileError(path, f"not JSON: {_short(error)}") from None
    if not isinstance(value, kind):
        raise DamagedFileError(path, f"holds a {type(value).__name__}, not a {kind.__name__}")
    return value


def load_bm25s(folder: str, mmap: bool = True) -> Any:
    """``bm25s.BM25.load(folder)`` once the folder's files are checked (see the module docstring)."""
    import bm25s

    params_path, vocab_path = (
        os.path.join(folder, "params.index.json"),
        os.path.join(folder, "vocab.index.json"),
    )
    num_docs = load_json(params_path).get("num_docs")
    if not isinstance(num_docs, int) or num_docs < 0:
        raise DamagedFileError(params_path, f"num_docs is {num_docs!r}")
    indptr_path = os.path.join(folder, "indptr.csc.index.npy")
    indptr = load_npy(indptr_path)
    if indptr.ndim != 1 or not len(indptr):
        raise DamagedFileError(indptr_path, f"shape {indptr.shape}")
    nnz = int(indptr[-1])
    if int(indptr[0]) != 0 or bool(np.any(np.diff(indptr) < 0)):
        raise DamagedFileError(indptr_path, "its offsets do not start at 0 and never decrease")
    for name in ("data.csc.index.npy", "indices.csc.index.npy"):
        shape = npy_shape(os.path.join(folder, name))
        if shape != (nnz,):
            raise DamagedFileError(os.path.join(folder, name), f"shape {shape}, indptr says ({nnz},)")
    if nnz <= SCAN_LIMIT:
        indices_path = os.path.join(folder, "indices.csc.index.npy")
        indices = np.load(indices_path, mmap_mode="r")
        for start in range(0, nnz, 1 << 24):  # 64 MiB at a time
            chunk = indices[start : start + (1 << 24)]
            if int(chunk.min()) < 0 or int(chunk.max()) >= num_docs:
                raise DamagedFileError(indices_path, f"document indices outside 0..{num_docs - 1}")
    if not os.path.isfile(vocab_path):
        raise DamagedFileError(vocab_path, "missing")
    try:  # the vocabulary is parsed once, by bm25s (millions of words for a Wikipedia index)
        retriever = bm25s.BM25.load(folder, mmap=mmap)
    except (ValueError, UnicodeDecodeError, TypeError, AttributeError) as error:  # the rest is checked
        raise DamagedFileError(vocab_path, f"unreadable: {_short(error)}") from None
    vocab, columns = retriever.vocab_dict, len(indptr) - 1
    if not isinstance(vocab, dict):
        raise DamagedFileError(vocab_path, f"holds a {type(vocab).__name__}, not a dict")
    try:
        ids = np.fromiter(vocab.values(), dtype=np.int64, count=len(vocab))
    except (TypeError, ValueError, OverflowError):
        raise DamagedFileError(vocab_path, "its word ids are not all integers") from None
    # bm25s gives its empty-query token "" the id after the last column, and no column.
    allowed = int(vocab.get("") == columns)
    if len(ids) and (ids.min() < 0 or int(np.count_nonzero(ids >= columns)) > allowed):
        raise DamagedFileError(vocab_path, f"word ids outside the {columns} columns of {indptr_path!r}")
    return retriever
