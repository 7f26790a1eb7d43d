"""Checks both browser env families run: one browser for many episodes, nothing left; no extra, no crash.

Used by ``test_shop_browser_*`` and ``test_webqa_browser_*`` (the family passes its env and action).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from mem1_envs.shop.browser import find_processes, process_running

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def children_of_this_process() -> set[int]:
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


def check_episodes_reuse_one_browser(
    make_env: Callable[[], Any], action: str, server_name: str, episodes: int = 200
) -> None:
    """Run ``episodes`` one-step episodes on ``make_env()`` (made with ``max_turns=1``), each a
    search; then close it and check no process, port or server thread is left."""
    children_before = children_of_this_process()
    env = make_env()
    seen: set[int] = set()
    roots = set()
    try:
        for episode in range(episodes):
            env.reset(seed=episode)
            *_, terminated, truncated, info = env.step(action)
            assert truncated and info["page"] == "results" and "truncated_reason" not in info
            if episode % 25 == 0:
                seen |= env.owned_pids()
                roots.add(env.browser.root_dir)
        assert env.browser.starts == 1 and env.browser_restarts == 0 and len(roots) == 1
        port = env.server.port
        assert port_open(port)
        seen |= env.owned_pids()
        assert env.browser.driver_pid in seen and len(seen) >= 3  # chromedriver, Chromium, helpers
        assert children_of_this_process() - children_before == {
            env.browser.driver_pid,
            env.browser._watchdog.pid,
        }
    finally:
        env.close()
    assert [pid for pid in seen if process_running(pid)] == []
    assert find_processes(cmdline_contains=roots.pop()) == set()
    assert children_of_this_process() - children_before == set()
    assert not port_open(port)
    assert not [t for t in threading.enumerate() if t.name == f"{server_name}-{port}"]


_WITHOUT_EXTRA = """
import sys
for name in ("selenium", "starlette", "uvicorn"):
    sys.modules[name] = None
{imports}
for make in ({makers}):
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


def check_imports_without_the_extra(imports: str, makers: list[str], timeout: float) -> None:
    """In a subprocess that hides selenium, starlette and uvicorn: ``imports`` run, each maker raises
    ImportError naming the ``browser`` extra, and no heavy module (torch included) is loaded.

    ``makers`` are Python expressions (``"lambda: ..."``) that each make something needing the extra.
    """
    script = _WITHOUT_EXTRA.format(imports=imports.strip(), makers=", ".join(makers))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(makers) + 1, result.stdout
    for line in lines[:-1]:
        assert line.startswith("ImportError:") and "pip install 'mem1-envs[browser]'" in line
    assert lines[-1] == "heavy: []"
