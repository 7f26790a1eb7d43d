"""MEM1-WebQA-Browser-v0's lifecycle: 200 episodes on one browser, then nothing left; imports without the extra."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest

from mem1_envs.shop.browser import find_processes, process_running

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)


def _children_of_this_process() -> set[int]:
    """Live direct children of the test process (chromedriver and the watchdog while a browser runs)."""
    me, children = os.getpid(), set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] not in ("Z", "X"):
                children.add(int(name))
    return children


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.browser
def test_200_episodes_reuse_one_browser_and_close_leaves_nothing() -> None:
    from mem1_envs.webqa.browser_env import WebQABrowserEnv

    children_before = _children_of_this_process()
    env = WebQABrowserEnv(world="small", max_turns=1)  # short episodes: reset, one search
    seen: set[int] = set()
    roots = set()
    try:
        for episode in range(200):
            env.reset(seed=episode)
            *_, terminated, truncated, info = env.step("<think>m</think><search>city</search>")
            assert truncated and info["page"] == "results" and "truncated_reason" not in info
            if episode % 25 == 0:
                seen |= env.owned_pids()
                roots.add(env.browser.root_dir)
        assert env.browser.starts == 1 and env.browser_restarts == 0 and len(roots) == 1
        port = env.server.port
        assert _port_open(port)
        seen |= env.owned_pids()
        assert env.browser.driver_pid in seen and len(seen) >= 3  # chromedriver, Chromium, helpers
        assert _children_of_this_process() - children_before == {
            env.browser.driver_pid,
            env.browser._watchdog.pid,
        }
    finally:
        env.close()
    assert [pid for pid in seen if process_running(pid)] == []
    assert find_processes(cmdline_contains=roots.pop()) == set()
    assert _children_of_this_process() - children_before == set()
    assert not _port_open(port)
    assert not [t for t in threading.enumerate() if t.name == f"mem1-webqa-server-{port}"]


SCRIPT = """
import sys
for name in ("selenium", "starlette", "uvicorn"):
    sys.modules[name] = None
import mem1_envs, mem1_envs.ax_text, mem1_envs.local_server, mem1_envs.webqa.webapp, mem1_envs.webqa.browser_env
from mem1_envs.webqa.browser_env import WebQABrowserEnv
from mem1_envs.webqa.webapp import build_app
for make in (lambda: WebQABrowserEnv(world="small"), lambda: build_app(None)):
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
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3, result.stdout
    for line in lines[:2]:
        assert line.startswith("ImportError:") and "pip install 'mem1-envs[browser]'" in line
    assert lines[2] == "heavy: []"
