"""Without the ``browser`` extra: the package imports, and the browser env names the extra to install.

These run in every tox env (no Chromium needed): a subprocess hides selenium, starlette and
uvicorn by setting their ``sys.modules`` entries to None, which makes any import of them fail.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from mem1_envs.shop.browser import BrowserConfig

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)

SCRIPT = """
import sys
for name in ("selenium", "starlette", "uvicorn"):
    sys.modules[name] = None
import mem1_envs, mem1_envs.shop.browser, mem1_envs.shop.webapp, mem1_envs.shop.browser_env
from mem1_envs.shop.browser import ManagedBrowser
from mem1_envs.shop.browser_env import WebShopBrowserEnv
from mem1_envs.shop.webapp import build_app
for make in (lambda: WebShopBrowserEnv(n_products=100), lambda: ManagedBrowser().start(), lambda: build_app(None)):
    try:
        make()
    except ImportError as error:
        print("ImportError:", error)
    else:
        print("no error")
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("selenium", "starlette", "uvicorn", "torch")
               and sys.modules[m] is not None)
print("heavy:", heavy)
"""


def test_browser_modules_import_without_the_extra_and_name_it() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4, result.stdout
    for line in lines[:3]:
        assert line.startswith("ImportError:") and "pip install 'mem1-envs[browser]'" in line
    assert lines[3] == "heavy: []"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"page_load_timeout_s": 0}, "page_load_timeout_s must be > 0, got 0"),
        ({"command_timeout_s": -1.0}, "command_timeout_s must be > 0, got -1.0"),
        ({"window_size": (0, 10)}, "window_size[0] must be >= 1, got 0"),
    ],
)
def test_browser_config_names_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        BrowserConfig(**kwargs)


def test_browser_env_names_bad_arguments() -> None:
    from mem1_envs.shop.browser_env import WebShopBrowserEnv

    with pytest.raises(ValueError, match=r"input_mode must be one of \('native', 'script'\), got 'mouse'"):
        WebShopBrowserEnv(input_mode="mouse")
    with pytest.raises(TypeError, match=r"browser_config must be a BrowserConfig or None, got .* \(dict\)"):
        WebShopBrowserEnv(browser_config={"headless": True})
