"""Without the ``browser`` extra: the package imports, and the browser env names the extra to install.

These run in every tox env (no Chromium needed): a subprocess hides selenium, starlette and
uvicorn by setting their ``sys.modules`` entries to None, which makes any import of them fail.
"""

from __future__ import annotations

import re

import pytest
from browser_checks import check_imports_without_the_extra

from mem1_envs.shop.browser import BrowserConfig


def test_browser_modules_import_without_the_extra_and_name_it() -> None:
    check_imports_without_the_extra(
        """
import mem1_envs, mem1_envs.shop.browser, mem1_envs.shop.webapp, mem1_envs.shop.browser_env
from mem1_envs.shop.browser import ManagedBrowser
from mem1_envs.shop.browser_env import WebShopBrowserEnv
from mem1_envs.shop.webapp import build_app
""",
        [
            "lambda: WebShopBrowserEnv(n_products=100)",
            "lambda: ManagedBrowser().start()",
            "lambda: build_app(None)",
        ],
        timeout=120,
    )


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
