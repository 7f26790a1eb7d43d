"""The browser and web-app lifecycle on their own (no shop): start, crash, restart, no leaks."""

from __future__ import annotations

import os
import signal
import threading
import urllib.error
import urllib.request

import pytest

from mem1_envs.shop.browser import ManagedBrowser, find_processes, process_running
from mem1_envs.shop.webapp import LocalServer

pytestmark = pytest.mark.browser


class Counter:
    """A trivial page handler: a form whose every submission increments a counter."""

    def __init__(self) -> None:
        self.count = 0
        self.last: dict[str, str] = {}

    def page_html(self) -> str:
        return (
            "<html><body><form method='post'><input type='text' name='q' id='q'>"
            f"<button id='go' type='submit' name='button' value='go'>go</button></form>"
            f"<pre id='page'>count {self.count}</pre></body></html>"
        )

    def submit(self, fields: dict[str, str]) -> str:
        if fields.get("button") == "boom":
            raise ValueError("boom")
        self.count += 1
        self.last = fields
        return self.page_html()


def _get(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, data=data, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_server_serves_sessions_static_files_and_refuses_bad_requests() -> None:
    server = LocalServer()
    try:
        handler = Counter()
        sid = server.add_session(handler)
        assert server.url.startswith("http://127.0.0.1:")
        assert _get(f"{server.url}/s/{sid}")[1].endswith(b"count 0</pre></body></html>")
        status, body = _get(f"{server.url}/s/{sid}", b"q=red+shoes&button=go")
        assert status == 200 and b"count 1" in body and handler.last == {"q": "red shoes", "button": "go"}
        assert _get(f"{server.url}/s/nope")[0] == 404
        assert _get(f"{server.url}/s/{sid}", b"button=boom")[0] == 400  # handler error: 400, server lives
        assert _get(f"{server.url}/s/{sid}", b"x=" + b"a" * 1_100_000)[0] == 413
        status, css = _get(f"{server.url}/static/shop.css")
        assert status == 200 and b"font-family" in css
        assert _get(f"{server.url}/static/jquery.js")[0] == 404  # nothing but our own assets
        assert _get(f"{server.url}/s/{sid}")[0] == 200
    finally:
        server.stop()
    assert not server.running
    assert not [t for t in threading.enumerate() if t.name.startswith("mem1-shop-server")]


def test_browser_drives_a_form_and_close_leaves_no_process() -> None:
    server = LocalServer()
    browser = ManagedBrowser()
    try:
        sid = server.add_session(Counter())
        driver = browser.driver
        driver.get(f"{server.url}/s/{sid}")
        driver.execute_script("document.getElementById('go').click()")
        assert driver.execute_script("return document.getElementById('page').innerText") == "count 1"
        pids = browser.owned_pids()
        root = browser.root_dir
        assert browser.driver_pid in pids and len(pids) >= 3  # chromedriver, chromium, its helpers
        assert root is not None and os.path.isdir(root)
        browser.clear_state()
        assert driver.current_url == "about:blank"
    finally:
        browser.close()
        server.stop()
    assert [pid for pid in pids if process_running(pid)] == []
    assert find_processes(cmdline_contains=root) == set()
    assert not os.path.exists(root)
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
