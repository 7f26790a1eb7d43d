"""What every index folder records (``meta.json``), checked the same way for BM25 and dense.

Its own module so that :mod:`mem1_envs.qa.index` (BM25, and ``open_index`` for both kinds) and
:mod:`mem1_envs.qa.dense` share it without importing each other.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from mem1_envs.errors import Mem1EnvsError
from mem1_envs.files import DamagedFileError, hint, load_json
from mem1_envs.qa.corpus import corpus_fingerprint

META_FILE = "meta.json"
REBUILD_HINT = "rebuild the index: python -m mem1_envs build-index --corpus CORPUS --out DIR --overwrite"


class IndexMismatchError(Mem1EnvsError, ValueError):
    """An index folder that does not belong to the corpus it is used with, or is damaged."""


@dataclass(frozen=True)
class IndexInfo:
    """What ``meta.json`` of an index folder records."""

    kind: str
    """``"bm25"`` or ``"dense"``."""
    format: int
    """On-disk layout version (:data:`mem1_envs.qa.index.INDEX_FORMAT` for BM25)."""
    corpus_path: str
    """Absolute path of the corpus at build time (informative; the fingerprint is what counts)."""
    corpus_fingerprint: str
    """:func:`~mem1_envs.qa.corpus.corpus_fingerprint` of the corpus at build time."""
    num_passages: int
    """Passages in the index."""
    build_seconds: float
    """Wall time of the build."""
    params: dict
    """Kind-specific parameters (BM25: k1, b, tokenizer, vocabulary size; dense: model, prefixes...)."""


def read_info(folder: str) -> IndexInfo:
    """The :class:`IndexInfo` of an index folder; a clear error if it is not one."""
    path = os.path.join(folder, META_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"not an index folder (no {META_FILE}): {folder!r}")
    with hint(REBUILD_HINT):
        recorded = load_json(path)
        try:
            return IndexInfo(**recorded)
        except TypeError:
            raise DamagedFileError(path, f"its fields are {sorted(recorded)}") from None


def write_info(folder: str, info: IndexInfo) -> None:
    with open(os.path.join(folder, META_FILE), "w", encoding="utf-8") as handle:
        json.dump(asdict(info), handle, indent=2)


def check_corpus(info: IndexInfo, corpus: str | None, folder: str) -> None:
    """Raise :class:`IndexMismatchError` when ``corpus`` is not the file the index was built from."""
    if corpus is None:
        return
    found = corpus_fingerprint(corpus)
    if found != info.corpus_fingerprint:
        raise IndexMismatchError(
            f"index {folder!r} was built from a corpus with fingerprint {info.corpus_fingerprint} "
            f"({info.corpus_path}), but {corpus!r} has fingerprint {found}; rebuild the index "
            f"(python -m mem1_envs build-index --corpus {corpus} --out DIR)"
        )


@contextlib.contextmanager
def building_folder(out: str, overwrite: bool) -> Iterator[str]:
    """A scratch folder beside ``out`` that is renamed to ``out`` when the block ends cleanly.

    An interrupted build never leaves a half index that loads, and a build that finds ``out``
    filled by another build meanwhile fails on the rename rather than clobber it.
    """
    if os.path.exists(out) and os.listdir(out) and not overwrite:
        raise FileExistsError(
            f"index folder {out!r} exists and is not empty; pass overwrite=True (--overwrite)"
        )
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".building-", dir=parent)
    try:
        yield scratch
        if overwrite and os.path.exists(out):
            shutil.rmtree(out)
        elif os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)
        os.rename(scratch, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
