"""Import a file of ``scripts/`` as a module (the entry points are files, not a package), or run one."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as the module ``name``, registered in ``sys.modules``.

    Registration matters: pickling (stable-baselines3 saves classes by reference) and
    dataclasses look a module up by its name.
    """
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_script(name: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/<name>.py *args`` with this interpreter and the repository on ``PYTHONPATH``;
    stdout and stderr are captured as text, a non-zero exit is returned, not raised."""
    return subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(SCRIPTS.parent)},
        check=False,
    )
