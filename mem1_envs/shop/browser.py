"""One headless Chromium driven by Selenium 4, with a lifecycle that never leaks processes.

``ManagedBrowser`` owns one chromedriver and the Chromium it starts. It is what
``WebShopBrowserEnv`` drives; it knows nothing about the shop.

Lifecycle rules (the reasons are the known problems of the original WebShop browser env):

- Nothing downloads: the driver is Debian's ``/usr/bin/chromedriver`` given to ``Service``
  explicitly, which makes Selenium skip Selenium Manager.
- Nothing is written outside one temporary folder: the ``--user-data-dir`` profile and the
  ``XDG_CONFIG_HOME``/``XDG_CACHE_HOME``/``TMPDIR`` given to chromedriver (and so to Chromium
  and its crash handler) all live under ``root_dir``, removed by ``close()``. Chromium's own
  ``org.chromium.Chromium.*`` temp folders, which a killed browser never removes, are thus
  removed too. (One exception: Chromium's singleton socket must have a path under 108 bytes;
  when ``root_dir`` is too deep for that, its ``TMPDIR`` is a folder of its own in ``/tmp``,
  ``tmp_dir``, removed the same way.)
- One Chromium is reused: ``clear_state()`` (cookies, storage, ``about:blank``) is the cheap
  per-episode reset; a browser start costs 0.3-0.8 s.
- Every process is found and killed by id: chromedriver is started in a new session (so it
  leads a process group that Chromium's children inherit), and the few Chromium helpers that
  leave the group (the crash handler) carry ``root_dir`` in their command line. ``owned_pids()``
  is the union of the three; ``close()`` quits the driver, then SIGKILLs whatever of it is left
  and waits until it is gone. ``__del__`` and an ``atexit`` hook call ``close()`` as a safety net.
- A watchdog (a tiny ``sh`` loop in its own session) kills the browser's process group and
  removes ``root_dir`` if the owning Python process dies without ``close()`` (SIGKILL, a
  terminated vector-env worker), when neither ``atexit`` nor ``__del__`` can run.
- A dead browser is detected (``is_alive()``, or any driver error) and ``restart()`` brings a
  fresh one up; the caller decides what that means for its episode.

Selenium is imported when a browser starts, never at ``import mem1_envs`` time.

>>> BrowserConfig(page_load_timeout_s=0)
Traceback (most recent call last):
...
ValueError: page_load_timeout_s must be > 0, got 0
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from mem1_envs.errors import Mem1EnvsError
from mem1_envs.validation import check_bool, check_float, check_instance, check_int, check_str

BROWSER_EXTRA_HINT = "the browser env needs selenium, starlette and uvicorn: pip install 'mem1-envs[browser]'"


@dataclass(frozen=True)
class BrowserConfig:
    """How to start Chromium.

    Attributes:
        chromium_binary: the Chromium executable (Debian's package installs ``/usr/bin/chromium``).
        chromedriver: the chromedriver executable; given to Selenium's ``Service`` so that
            Selenium Manager never runs (no download).
        headless: run without a display (``--headless=new``); False needs an X server.
        page_load_timeout_s: the most a navigation may take before the driver gives up.
        command_timeout_s: the most one WebDriver command may take (a hung browser then counts
            as dead instead of blocking the env forever).
        window_size: the window's width and height in pixels (layout does not change the
            page text the env reads, it only has to be stable).
        extra_args: more Chromium command-line flags, appended to the tested set.
    """

    chromium_binary: str = "/usr/bin/chromium"
    chromedriver: str = "/usr/bin/chromedriver"
    headless: bool = True
    page_load_timeout_s: float = 15.0
    command_timeout_s: float = 30.0
    window_size: tuple[int, int] = (1280, 1024)
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_str("chromium_binary", self.chromium_binary)
        check_str("chromedriver", self.chromedriver)
        check_bool("headless", self.headless)
        check_float("page_load_timeout_s", self.page_load_timeout_s, above=0)
        check_float("command_timeout_s", self.command_timeout_s, above=0)
        check_instance("window_size", self.window_size, (tuple, list))
        if len(self.window_size) != 2:
            raise ValueError(f"window_size must be (width, height), got {self.window_size!r}")
        for index, size in enumerate(self.window_size):
            check_int(f"window_size[{index}]", size, minimum=1)
        check_instance("extra_args", self.extra_args, (tuple, list))
        for index, flag in enumerate(self.extra_args):
            check_str(f"extra_args[{index}]", flag)


# Flags tested on this project's machines (see TESTED_SETUP): they work as root, in containers
# without /dev/shm space, and stop Chromium from talking to the network on its own.
_BASE_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--mute-audio",
    "--password-store=basic",
)


class BrowserFailure(Mem1EnvsError, RuntimeError):
    """The browser died, hung, or shows a page other than the expected one."""


def is_driver_error(error: BaseException) -> bool:
    """Errors that mean the browser or its driver is gone (selenium's, urllib3's, sockets')."""
    module = type(error).__module__
    return module.startswith(("selenium", "urllib3", "http.client")) or isinstance(error, OSError)


def _import_selenium() -> Any:
    try:
        from selenium import webdriver
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(BROWSER_EXTRA_HINT) from error
    return webdriver


# ---------------------------------------------------------------------------------------------
# Process bookkeeping through /proc (no psutil dependency).


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of a live process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses.
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def _proc_cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def process_running(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie (a zombie has exited; only its entry remains).

    >>> process_running(os.getpid())
    True
    """
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def descendants(pid: int) -> set[int]:
    """Every live process whose chain of parents reaches ``pid`` (``pid`` excluded).

    >>> descendants(os.getpid()) == set() or all(p != os.getpid() for p in descendants(os.getpid()))
    True
    """
    children: dict[int, list[int]] = {}
    for other in _all_pids():
        stat = _proc_stat(other)
        if stat is not None:
            children.setdefault(stat[1], []).append(other)
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def find_processes(*, pgid: int | None = None, cmdline_contains: str | None = None) -> set[int]:
    """Live processes in process group ``pgid`` or whose command line holds ``cmdline_contains``."""
    found: set[int] = set()
    me = os.getpid()
    for pid in _all_pids():
        if pid == me:
            continue
        stat = _proc_stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            continue
        if pgid is not None and stat[2] == pgid:
            found.add(pid)
        elif cmdline_contains and cmdline_contains in _proc_cmdline(pid):
            found.add(pid)
    return found


# ---------------------------------------------------------------------------------------------

_LIVE_BROWSERS: weakref.WeakSet[ManagedBrowser] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    for browser in list(_LIVE_BROWSERS):
        browser.close()


atexit.register(_close_all_at_exit)


class ManagedBrowser:
    """One Chromium + chromedriver pair, started lazily, restartable, leak-free on ``close()``.

    Example (needs Chromium; the env does this for you)::

        browser = ManagedBrowser()
        browser.driver.get("http://127.0.0.1:8000/")
        browser.clear_state()          # between episodes
        browser.close()                # quits and kills every process it started
    """

    def __init__(self, config: BrowserConfig | None = None) -> None:
        self.config = config if config is not None else BrowserConfig()
        self._driver: Any = None
        self._service: Any = None
        self.root_dir: str | None = None
        self.tmp_dir: str | None = None  # Chromium's TMPDIR: root_dir/tmp, or in /tmp (see _tmp_dir_for)
        self.driver_pid: int | None = None
        self.starts = 0  # how many browsers this object has started (restarts included)
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._owner_pid: int | None = None  # the process that started the browser
        self._lock = threading.RLock()
        _LIVE_BROWSERS.add(self)

    # -- starting ------------------------------------------------------------------------------

    @property
    def driver(self) -> Any:
        """The Selenium WebDriver, starting the browser on first use."""
        if self._driver is None:
            self.start()
        return self._driver

    @property
    def started(self) -> bool:
        return self._driver is not None

    def start(self) -> None:
        """Start chromedriver and Chromium (closing a previous pair first)."""
        webdriver = _import_selenium()
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        with self._lock:
            self.close()
            for path in (self.config.chromedriver, self.config.chromium_binary):
                if not os.path.isfile(path):
                    raise FileNotFoundError(
                        f"{path} not found: install Debian's packages with "
                        "'apt-get install chromium chromium-driver' (or set BrowserConfig paths)"
                    )
            root = tempfile.mkdtemp(prefix="mem1-envs-chromium-")
            self.root_dir = root
            env = dict(os.environ)
            env["XDG_CONFIG_HOME"] = os.path.join(root, "xdg-config")
            env["XDG_CACHE_HOME"] = os.path.join(root, "xdg-cache")
            # chromedriver and Chromium make org.chromium.Chromium.* folders in the temp dir and
            # remove them only on a clean quit; a killed browser would leave them behind.
            self.tmp_dir = env["TMPDIR"] = _tmp_dir_for(root)
            options = Options()
            options.binary_location = self.config.chromium_binary
            flags = list(_BASE_FLAGS)
            if self.config.headless:
                flags.append("--headless=new")
            width, height = self.config.window_size
            flags += [f"--window-size={width},{height}", f"--user-data-dir={os.path.join(root, 'profile')}"]
            for flag in (*flags, *self.config.extra_args):
                options.add_argument(flag)
            # A new session makes chromedriver a process-group leader: Chromium and its helpers
            # inherit the group, so one killpg reaches them even after they are re-parented.
            service = Service(
                self.config.chromedriver,
                env=env,
                log_output=subprocess.DEVNULL,
                popen_kw={"start_new_session": True},
            )
            self._service = service
            try:
                driver = webdriver.Chrome(options=options, service=service)
            except BaseException:
                self._record_driver_pid()
                self.close()
                raise
            self._driver = driver
            self._owner_pid = os.getpid()
            self._record_driver_pid()
            self._start_watchdog()
            self.starts += 1
            try:
                driver.command_executor._client_config.timeout = self.config.command_timeout_s
            except AttributeError:  # pragma: no cover - older Selenium
                pass
            driver.set_page_load_timeout(self.config.page_load_timeout_s)
            driver.set_script_timeout(self.config.page_load_timeout_s)

    def _start_watchdog(self) -> None:
        """A tiny shell process that cleans up if this Python process dies without ``close()``.

        ``atexit`` and ``__del__`` do not run when the owner is killed (SIGKILL, SIGTERM, a
        vector-env worker terminated), and Chromium outlives a dead chromedriver. The watchdog
        sleeps until the owner is gone, then kills chromedriver's process group and removes the
        temp folder. It runs in its own session, so a signal to the owner's group spares it;
        ``close()`` kills it by pid.
        """
        if self.driver_pid is None or self.root_dir is None:
            return
        self._watchdog = subprocess.Popen(
            [
                "/bin/sh",
                "-c",
                _WATCHDOG,
                "mem1-envs-browser-watchdog",
                str(os.getpid()),
                str(self.driver_pid),
                self.root_dir,
                self.tmp_dir or self.root_dir,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _record_driver_pid(self) -> None:
        process = getattr(self._service, "process", None)
        if process is not None:
            self.driver_pid = process.pid

    # -- state ---------------------------------------------------------------------------------

    def clear_state(self) -> None:
        """Forget cookies and storage and leave the current page (between episodes)."""
        driver = self.driver
        driver.delete_all_cookies()
        driver.get("about:blank")

    def is_alive(self) -> bool:
        """True when chromedriver runs and the browser answers a trivial script."""
        if self._driver is None or self.driver_pid is None or not process_running(self.driver_pid):
            return False
        try:
            return self._driver.execute_script("return 1") == 1
        except Exception:
            return False

    def restart(self) -> None:
        """Replace the browser by a fresh one (after a crash or a hang: no polite quit first)."""
        self.close(polite=False)
        self.start()

    def browser_pid(self) -> int | None:
        """The main Chromium process (the child of chromedriver that holds our profile dir)."""
        if self.driver_pid is None or self.root_dir is None:
            return None
        for pid in sorted(descendants(self.driver_pid)):
            stat = _proc_stat(pid)
            command = _proc_cmdline(pid)
            if stat and stat[1] == self.driver_pid and self.root_dir in command and "--type=" not in command:
                return pid
        return None

    def owned_pids(self) -> set[int]:
        """Every live process this browser started: chromedriver, its group, anything naming our dir."""
        pids: set[int] = set()
        if self.driver_pid is not None:
            if process_running(self.driver_pid):
                pids.add(self.driver_pid)
            pids |= descendants(self.driver_pid)
            pids |= find_processes(pgid=self.driver_pid)
        if self.root_dir is not None:
            pids |= find_processes(cmdline_contains=self.root_dir)  # the watchdog names it too
        return {pid for pid in pids if process_running(pid)}

    # -- stopping ------------------------------------------------------------------------------

    def close(self, timeout_s: float = 5.0, polite: bool = True) -> None:
        """Quit the driver, kill every process it left, remove the temp folder. Idempotent.

        ``polite=False`` skips the WebDriver ``quit`` (a hung browser would make it wait).
        """
        with self._lock:
            if self._owner_pid is not None and self._owner_pid != os.getpid():
                # A forked child sees its parent's browser object: the processes are the
                # parent's, so the child forgets them instead of killing them.
                self._driver = self._service = self._watchdog = None
                self.root_dir = self.tmp_dir = self.driver_pid = self._owner_pid = None
                return
            driver, self._driver = self._driver, None
            if driver is not None and polite:
                # quit() ends the session politely; it may hang or fail on a dead browser, so it
                # runs in a thread we do not wait for longer than timeout_s.
                quitter = threading.Thread(target=_quiet_quit, args=(driver,), daemon=True)
                quitter.start()
                quitter.join(timeout_s)
            watchdog, self._watchdog = self._watchdog, None
            if watchdog is not None:
                try:  # first, so it cannot race the cleanup below; its group holds its `sleep`
                    os.killpg(watchdog.pid, signal.SIGKILL)
                except OSError:
                    watchdog.kill()
                watchdog.wait()
            self._kill_owned(timeout_s)
            service, self._service = self._service, None
            process = getattr(service, "process", None)
            if process is not None:
                try:
                    process.wait(timeout=timeout_s)  # reap chromedriver: no zombie of ours remains
                except (subprocess.TimeoutExpired, OSError):
                    pass
            for folder in (self.tmp_dir, self.root_dir):
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)
            self.root_dir = self.tmp_dir = None
            self.driver_pid = None

    def _kill_owned(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            pids = self.owned_pids()
            if self.driver_pid is not None:
                try:
                    os.killpg(self.driver_pid, signal.SIGKILL)
                except OSError:
                    pass
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            if self.driver_pid is not None:
                try:  # our direct child: reap it so it does not linger as a zombie
                    os.waitpid(self.driver_pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)

    def __del__(self) -> None:
        try:
            self.close(timeout_s=2.0)
        except Exception:
            pass

    def __enter__(self) -> ManagedBrowser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# $1 owner pid, $2 chromedriver pid (= its process group), $3 the temp folder, $4 Chromium's TMPDIR.
_WATCHDOG = """
while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
kill -9 "-$2" 2>/dev/null
sleep 1
kill -9 "-$2" 2>/dev/null
rm -rf -- "$3" "$4"
"""


# Chromium's singleton socket is $TMPDIR/org.chromium.Chromium.XXXXXX/SingletonSocket, and a unix
# socket path holds at most 107 bytes: a longer one makes Chromium exit at start.
_SOCKET_TAIL = len("/org.chromium.Chromium.XXXXXX/SingletonSocket")
_MAX_SOCKET_PATH = 107


def _tmp_dir_for(root: str) -> str:
    """A new, empty TMPDIR for Chromium: ``root/tmp``, or a folder in ``/tmp`` if that is too deep."""
    inside = os.path.join(root, "tmp")
    if len(os.fsencode(inside)) + _SOCKET_TAIL <= _MAX_SOCKET_PATH:
        os.mkdir(inside)
        return inside
    return tempfile.mkdtemp(prefix="mem1-chromium-tmp-", dir="/tmp")


def _quiet_quit(driver: Any) -> None:
    try:
        driver.quit()
    except Exception:
        pass
