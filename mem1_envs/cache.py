"""The on-disk cache folder both env families (and the tiny model) build their files under."""

from __future__ import annotations

import os


def cache_dir() -> str:
    """``$MEM1_ENVS_CACHE``, or ``~/.cache/mem1_envs`` when it is unset or empty."""
    return os.environ.get("MEM1_ENVS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mem1_envs")
