"""The on-disk cache (``$MEM1_ENVS_CACHE``, default ``~/.cache/mem1_envs``), each entry built once.

Generated worlds, shop catalogs and corpus indexes are built on first use and kept here. When
several processes need the same missing entry at once (the workers of a vector env, parallel
test runs), :func:`build_once` lets one of them build it while the others wait on a lock file
beside it (removed once the entry is built); then all of them load the same files. The lock is
the kernel's (``flock``), so it is released when its holder dies, and builders write a private
folder that they rename into place, so a build killed halfway never leaves an entry that loads.

A cache folder that cannot be written (read-only, not a folder) is a :class:`CacheDirError`
whose one-line message names ``MEM1_ENVS_CACHE``.

>>> import tempfile
>>> entry = os.path.join(tempfile.mkdtemp(), "entry")
>>> def build(folder):
...     os.makedirs(folder)
...     open(os.path.join(folder, "done"), "w").close()
>>> build_once(entry, "done", build), build_once(entry, "done", build)
(True, False)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: concurrent builds each build, the first rename wins
    fcntl = None  # type: ignore[assignment]

from mem1_envs.errors import Mem1EnvsError

CACHE_VARIABLE = "MEM1_ENVS_CACHE"


class CacheDirError(Mem1EnvsError, OSError):
    """The cache folder cannot be written; set ``MEM1_ENVS_CACHE`` to one that can."""


def cache_dir() -> str:
    """The cache folder: ``$MEM1_ENVS_CACHE``, else ``~/.cache/mem1_envs``."""
    return os.environ.get(CACHE_VARIABLE) or os.path.join(os.path.expanduser("~"), ".cache", "mem1_envs")


def build_once(folder: str, marker: str, build: Callable[[str], object]) -> bool:
    """Make sure ``folder`` holds a complete entry (its file ``marker`` exists).

    ``build(folder)`` makes it, in at most one process at a time; a process that waited for
    another's build finds the marker and builds nothing. Returns True when this call built.
    """
    if os.path.exists(os.path.join(folder, marker)):
        return False
    parent = os.path.dirname(os.path.abspath(folder))
    try:
        os.makedirs(parent, exist_ok=True)
        lock = open(f"{folder}.lock", "ab")  # held (and locked) for the whole build
    except OSError as error:
        setting = os.environ.get(CACHE_VARIABLE)
        where = f"{CACHE_VARIABLE}={setting!r}" if setting else f"{CACHE_VARIABLE} is not set"
        raise CacheDirError(
            f"cannot write the cache folder {parent!r} ({error.strerror or error}; {where}): "
            f"set {CACHE_VARIABLE} to a writable folder"
        ) from None
    with lock:
        if fcntl is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released on close, or when we die
        if os.path.exists(os.path.join(folder, marker)):  # built by the process we waited for
            return False
        build(folder)
        # Done: the lock file goes (the waiters hold it open and will find the marker; later
        # callers find the marker before they look for a lock). After a failed build it stays.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{folder}.lock")
        return True
