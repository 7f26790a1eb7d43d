"""Shared test setup: keep every file a library writes inside a temporary folder."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_SCRATCH = tempfile.mkdtemp(prefix="mem1-envs-tests-")
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)  # the run leaves no folder of its own
for variable, folder in {
    "HF_HOME": "hf",
    "XDG_CONFIG_HOME": "xdg-config",
    "XDG_CACHE_HOME": "xdg-cache",
    "MPLCONFIGDIR": "mpl",
}.items():
    os.environ.setdefault(variable, os.path.join(_SCRATCH, folder))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The world/catalog cache is shared by all tests of one run and kept for the next ones (building it
# is the slow part): the one folder a test run leaves in the temp dir, on purpose.
os.environ.setdefault("MEM1_ENVS_CACHE", os.path.join(tempfile.gettempdir(), "mem1-envs-test-cache"))
