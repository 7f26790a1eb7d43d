"""MEM1-WebQA-Browser-v0's lifecycle: 200 episodes on one browser, then nothing left; imports without the extra."""

from __future__ import annotations

import pytest
from browser_checks import check_episodes_reuse_one_browser, check_imports_without_the_extra


@pytest.mark.browser
def test_200_episodes_reuse_one_browser_and_close_leaves_nothing() -> None:
    from mem1_envs.webqa.browser_env import WebQABrowserEnv

    # short episodes: reset, one search
    check_episodes_reuse_one_browser(
        lambda: WebQABrowserEnv(world="small", max_turns=1),
        "<think>m</think><search>city</search>",
        "mem1-webqa-server",
    )


def test_browser_modules_import_without_the_extra_and_name_it() -> None:
    check_imports_without_the_extra(
        """
import mem1_envs, mem1_envs.ax_text, mem1_envs.local_server, mem1_envs.webqa.webapp, mem1_envs.webqa.browser_env
from mem1_envs.webqa.browser_env import WebQABrowserEnv
from mem1_envs.webqa.webapp import build_app
""",
        ['lambda: WebQABrowserEnv(world="small")', "lambda: build_app(None)"],
        timeout=300,
    )
