"""Find where paragraphs mention article titles, in one numba pass over the text.

A link is a span of a paragraph whose characters equal an article's title exactly (case
included), starting and ending on word boundaries. The scan tokenises each paragraph once,
hashes every run of up to ``max_title_tokens`` consecutive tokens (FNV-1a per token, combined
per run) and looks the hash up in the sorted hashes of all titles (binary search); a hit is
then checked character by character, so a hash collision never makes a wrong link. At each
token the longest matching title wins and the scan continues after it. A paragraph links each
target once (its first mention) and never to its own article. Cost: about
(tokens x max_title_tokens) lookups, never titles x paragraphs.

Titles that start or end with a non-word character (``"Weird Al" Yankovic``) or are shorter
than ``min_title_chars`` are never linked. Characters beyond the Basic Multilingual Plane are
treated as separators.

>>> links = find_links(["Oslo lies in Norway.", "Norway has Oslo and Oslo."], ["Norway", "Oslo"], [1, 0])
>>> links.spans(0), links.spans(1)  # no self-link in Oslo's paragraph; Oslo linked once
([(13, 19, 0)], [(11, 15, 1)])
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

_FNV_OFFSET = np.uint64(14695981039346656037)
_FNV_PRIME = np.uint64(1099511628211)
_MIX = np.uint64(0x9E3779B97F4A7C15)
CHUNK_CHARS = 8_000_000  # paragraphs are scanned in chunks of about this many characters (bounded memory)


@functools.cache
def _word_table() -> np.ndarray:
    """``table[c]``: whether code point ``c`` (< 65536) is a word character, as regex ``\\w`` says."""
    return np.array([chr(c).isalnum() or c == 95 for c in range(65536)], dtype=np.bool_)


def _code_points(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The texts joined by a newline as one uint32 code point array, and each text's start."""
    lengths = np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=len(texts))
    starts = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    blob = "\n".join(texts) + "\n"
    return np.frombuffer(blob.encode("utf-32-le"), dtype=np.uint32), starts


@njit(cache=True)
def _title_hashes(cps, starts, word):  # pragma: no cover - compiled
    """Per title: the hash of its token run and its token count (0 when it cannot be linked)."""
    n = len(starts) - 1
    hashes = np.zeros(n, dtype=np.uint64)
    tokens = np.zeros(n, dtype=np.int64)
    for t in range(n):
        a, b = starts[t], starts[t + 1] - 1  # the separator after each title is excluded
        if b <= a:
            continue
        first, last = cps[a], cps[b - 1]
        if first >= 65536 or last >= 65536 or not word[first] or not word[last]:
            continue
        h = np.uint64(0)
        count = 0
        i = a
        while i < b:
            c = cps[i]
            if c < 65536 and word[c]:
                th = _FNV_OFFSET
                while i < b and cps[i] < 65536 and word[cps[i]]:
                    th = (th ^ np.uint64(cps[i])) * _FNV_PRIME
                    i += 1
                h = h * _MIX + th
                count += 1
            else:
                i += 1
        hashes[t] = h
        tokens[t] = count
    return hashes, tokens


@njit(cache=True)
def _scan(
    cps, starts, owners, word, keys, key_titles, tcps, tstarts, max_tokens, stamp, base, out, emit
):  # pragma: no cover - compiled
    """Find the links of each paragraph; write them to ``out`` (rows: paragraph, start, end, target) when ``emit``."""
    n_par = len(starts) - 1
    longest = 1
    for p in range(n_par):
        longest = max(longest, starts[p + 1] - starts[p])
    tok_s = np.empty(longest, dtype=np.int64)
    tok_e = np.empty(longest, dtype=np.int64)
    tok_h = np.empty(longest, dtype=np.uint64)
    count = 0
    for p in range(n_par):
        a, b = starts[p], starts[p + 1]
        nt = 0
        i = a
        while i < b:
            c = cps[i]
            if c < 65536 and word[c]:
                s = i
                th = _FNV_OFFSET
                while i < b and cps[i] < 65536 and word[cps[i]]:
                    th = (th ^ np.uint64(cps[i])) * _FNV_PRIME
                    i += 1
                tok_s[nt] = s
                tok_e[nt] = i
                tok_h[nt] = th
                nt += 1
            else:
                i += 1
        t = 0
        while t < nt:
            best, best_n = -1, 0
            h = np.uint64(0)
            for n in range(1, max_tokens + 1):
                if t + n > nt:
                    break
                h = h * _MIX + tok_h[t + n - 1]
                k = np.searchsorted(keys, h)
                if k < len(keys) and keys[k] == h:
                    title = key_titles[k]
                    s, e = tok_s[t], tok_e[t + n - 1]
                    ts, te = tstarts[title], tstarts[title + 1] - 1
                    if te - ts == e - s:
                        same = True
                        for j in range(e - s):
                            if tcps[ts + j] != cps[s + j]:
                                same = False
                                break
                        if same:
                            best, best_n = title, n
            if best < 0:
                t += 1
                continue
            if best != owners[p] and stamp[best] != base + p:
                stamp[best] = base + p
                if emit:
                    out[count, 0] = base + p
                    out[count, 1] = tok_s[t] - a
                    out[count, 2] = tok_e[t + best_n - 1] - a
                    out[count, 3] = best
                count += 1
            t += best_n  # a mention (linked or not: its own title, a repeat) is never searched inside
    return count


@dataclass(frozen=True)
class Links:
    """Links of every paragraph, CSR-style: paragraph ``p``'s are rows ``first[p]:first[p + 1]``."""

    first: np.ndarray
    start: np.ndarray
    end: np.ndarray
    target: np.ndarray

    def spans(self, paragraph: int) -> list[tuple[int, int, int]]:
        """``(start, end, target title index)`` of one paragraph's links, in text order."""
        a, b = int(self.first[paragraph]), int(self.first[paragraph + 1])
        return [
            (int(s), int(e), int(t))
            for s, e, t in zip(self.start[a:b], self.end[a:b], self.target[a:b], strict=True)
        ]

    def __len__(self) -> int:
        return len(self.start)


def find_links(
    texts: Sequence[str], titles: Sequence[str], owners: Sequence[int] | np.ndarray, min_title_chars: int = 3
) -> Links:
    """Links from ``texts`` (paragraphs; ``owners[i]`` is the index in ``titles`` of paragraph i's article).

    ``titles`` must be distinct. See the module docstring for the matching rule.
    """
    if len(owners) != len(texts):
        raise ValueError(
            f"owners must give one title index per text, got {len(owners)} for {len(texts)} texts"
        )
    # Hashes wrap around on purpose; under NUMBA_DISABLE_JIT numpy would warn at each overflow.
    with np.errstate(over="ignore"):
        return _find_links(texts, titles, owners, min_title_chars)


def _find_links(
    texts: Sequence[str], titles: Sequence[str], owners: Sequence[int] | np.ndarray, min_title_chars: int
) -> Links:
    word = _word_table()
    tcps, tstarts = _code_points(titles)
    hashes, tokens = _title_hashes(tcps, tstarts, word)
    lengths = np.diff(tstarts) - 1
    usable = np.flatnonzero((tokens > 0) & (lengths >= min_title_chars))
    order = usable[np.argsort(hashes[usable], kind="stable")]
    keys, key_titles = hashes[order], order.astype(np.int64)
    max_tokens = int(tokens.max()) if len(tokens) else 1
    owners = np.asarray(owners, dtype=np.int64)
    stamp = np.full(max(len(titles), 1), -1, dtype=np.int64)
    rows: list[np.ndarray] = []
    begin = 0
    while begin < len(texts):
        end, chars = begin, 0
        while end < len(texts) and (chars < CHUNK_CHARS or end == begin):
            chars += len(texts[end]) + 1
            end += 1
        cps, starts = _code_points(texts[begin:end])
        arguments = (
            cps,
            starts,
            owners[begin:end],
            word,
            keys,
            key_titles,
            tcps,
            tstarts,
            max(max_tokens, 1),
        )
        saved = stamp.copy()
        n = _scan(*arguments, stamp, begin, np.empty((0, 4), dtype=np.int64), False)
        out = np.empty((n, 4), dtype=np.int64)
        _scan(*arguments, saved, begin, out, True)
        stamp = saved
        rows.append(out)
        begin = end
    table = np.concatenate(rows) if rows else np.empty((0, 4), dtype=np.int64)
    first = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.bincount(table[:, 0], minlength=len(texts)), out=first[1:])
    return Links(
        first, table[:, 1].astype(np.int32), table[:, 2].astype(np.int32), table[:, 3].astype(np.int32)
    )
