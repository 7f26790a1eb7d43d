"""The browser and web-app lifecycle on their own (no shop): start, crash, restart, no leaks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

import pytest
from browser_checks import check_episodes_reuse_one_browser, port_open

from mem1_envs.shop.browser import ManagedBrowser, find_processes, process_running
from mem1_envs.shop.catalog import generate_catalog
from mem1_envs.shop.engine import ShopEngine
from mem1_envs.shop.pages import PageState, transition
from mem1_envs.shop.render_html import text_from_html
from mem1_envs.shop.render_text import render_text
from mem1_envs.shop.webapp import LocalServer, build_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def shop() -> ShopEngine:
    return ShopEngine.build(generate_catalog(300, seed=0))


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_web_app_serves_the_page_model_and_refuses_bad_addresses(shop: ShopEngine) -> None:
    server = LocalServer(build_app(shop))
    try:
        url = server.url
        assert url.startswith("http://127.0.0.1:")
        status, _, body = _get(url + "/")
        assert status == 200 and text_from_html(body.decode()) == render_text(shop, PageState())
        status, headers, body = _get(url + "/search?query=" + quote("  gluten   free chips "))
        results = PageState("results", query="gluten free chips")
        assert status == 200 and headers["cache-control"] == "no-store"
        assert text_from_html(body.decode()) == render_text(shop, results)
        first = shop.catalog.code(shop.search("gluten free chips")[0]).lower()
        status, _, body = _get(f"{url}/act?{results.to_query()}&action={quote(f'click[{first}]')}")
        item = transition(shop, results, f"click[{first}]").state
        assert status == 200 and item.kind == "item"
        assert text_from_html(body.decode()) == render_text(shop, item)
        assert _get(f"{url}/page?{item.to_query()}")[2] == body
        # Refused actions show the unchanged page with the page model's error.
        status, headers, body = _get(f"{url}/act?{results.to_query()}&action=click%5Bno+such%5D")
        assert status == 400 and headers["x-shop-error"] == "unknown_button"
        assert text_from_html(body.decode()) == render_text(shop, results)
        assert _get(url + "/search?query=")[1]["x-shop-error"] == "empty_query"
        assert _get(url + "/search?query=" + "a" * 5000)[1]["x-shop-error"] == "too_long"
        # Hand-made addresses: a product out of range, an over-long address, unknown routes.
        assert _get(f"{url}/page?kind=item&product=99999999")[0] == 400
        assert _get(f"{url}/act?kind=item&product=-5&action=click%5Bbuy+now%5D")[0] == 400
        assert _get(f"{url}/page?kind=nonsense")[0] == 200  # unknown kinds fall back to the start
        assert _get(f"{url}/page?x={'a' * 20000}")[0] == 414
        assert _get(url + "/favicon.ico")[0] == 204
        assert _get(url + "/static/jquery.js")[0] == 404  # nothing but the shop's own pages
        assert _get(url + "/")[0] == 200  # and the server still answers
        port = server.port
    finally:
        server.stop()
    assert not server.running and not port_open(port)
    assert not [t for t in threading.enumerate() if t.name.startswith("mem1-shop-server")]
    server.stop()  # idempotent


def test_browser_close_leaves_no_process() -> None:
    browser = ManagedBrowser()
    try:
        driver = browser.driver
        driver.get("data:text/html,<p id='x'>hello</p>")
        assert driver.execute_script("return document.getElementById('x').textContent") == "hello"
        pids = browser.owned_pids()
        root = browser.root_dir
        assert browser.driver_pid in pids and len(pids) >= 3  # chromedriver, chromium, its helpers
        assert root is not None and os.path.isdir(os.path.join(root, "profile"))
        browser.clear_state()
        assert driver.current_url == "about:blank"
        child = os.fork()
        if child == 0:  # a forked child closing its copy must not kill the parent's browser
            browser.close()
            os._exit(0)
        os.waitpid(child, 0)
        assert browser.is_alive() and process_running(browser.driver_pid)
    finally:
        browser.close()
    assert [pid for pid in pids if process_running(pid)] == []
    assert find_processes(cmdline_contains=root) == set()
    assert not os.path.exists(root)
    assert not browser.started and browser.owned_pids() == set()
    browser.close()  # idempotent


def test_killed_browser_is_detected_and_restarted() -> None:
    browser = ManagedBrowser()
    try:
        browser.driver.get("about:blank")
        assert browser.is_alive()
        first = browser.owned_pids()
        chromium = browser.browser_pid()
        assert chromium is not None
        os.kill(chromium, signal.SIGKILL)
        assert not browser.is_alive()
        browser.restart()
        assert browser.is_alive() and browser.starts == 2
        assert browser.driver.execute_script("return 6 * 7") == 42
        # The crashed browser's leftovers were killed by the restart.
        assert [pid for pid in first if process_running(pid)] == []
        os.kill(browser.driver_pid, signal.SIGKILL)  # now the driver itself dies
        assert not browser.is_alive()
        browser.restart()
        assert browser.is_alive()
        second = browser.owned_pids()
    finally:
        browser.close()
    assert [pid for pid in second if process_running(pid)] == []


def test_200_episodes_reuse_one_browser_and_close_leaves_nothing() -> None:
    from mem1_envs.shop.browser_env import WebShopBrowserEnv
    from mem1_envs.shop.engine import load_shop

    check_episodes_reuse_one_browser(
        lambda: WebShopBrowserEnv(shop=load_shop(2000, 0), n_products=2000, max_turns=1),
        "<summary>m</summary><answer>search[chips]</answer>",
        "mem1-shop-server",
    )


def test_watchdog_cleans_up_after_an_owner_killed_without_close(tmp_path: Any) -> None:
    """SIGKILL skips atexit and __del__: the watchdog still removes the browser and its folder."""
    script = (
        "import os, signal, sys\n"
        "from mem1_envs.shop.browser import ManagedBrowser\n"
        "browser = ManagedBrowser()\n"
        "browser.driver.get('data:text/html,hi')\n"
        "print(browser.root_dir, *sorted(browser.owned_pids()), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    root_of_repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=root_of_repo
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    root, *pids = result.stdout.split()
    assert len(pids) >= 4  # chromedriver, chromium and helpers, the watchdog
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [int(pid) for pid in pids if process_running(int(pid))]
        if not left and not find_processes(cmdline_contains=root) and not os.path.exists(root):
            break
        time.sleep(0.2)
    assert [int(pid) for pid in pids if process_running(int(pid))] == []
    assert find_processes(cmdline_contains=root) == set()
    assert not os.path.exists(root)
