"""The lifecycle both browser envs share: one Chromium and one web app per env, restarted on failure.

:class:`BrowserLifecycle` is a mixin placed before a text env in a browser env's bases
(``class WebShopBrowserEnv(BrowserLifecycle, WebShopTextEnv)``). The family's env supplies
``_open`` (start a :class:`~mem1_envs.shop.browser.ManagedBrowser` as ``self.browser`` and a
server as ``self.server``, and set ``_loaded`` / ``_shown``), ``_truncate`` (the family's
turn-limit reward and ``info``) and its own display; the mixin owns what is the same in both:

- ``_guarded``: any browser-side error (selenium, urllib3, socket) becomes a
  :class:`~mem1_envs.shop.browser.BrowserFailure`;
- ``_retry_once``: ``reset`` retries once on a fresh browser after a browser failure;
- ``_step_or_truncate``: ``step`` never raises a browser failure, it truncates the episode;
- ``_restart``, ``owned_pids``, ``close`` (idempotent, also from ``__del__``) and pickling (a live
  browser and server do not travel: the copy starts its own and reloads its page).

Selenium is imported only by :func:`require_selenium` (when an env is made), never at import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from mem1_envs.shop.browser import (
    BROWSER_EXTRA_HINT,
    BrowserConfig,
    BrowserFailure,
    ManagedBrowser,
    is_driver_error,
)

INPUT_MODES = ("native", "script")
"""How a browser env performs a click: WebDriver/mouse events (``native``) or a script ``click()``."""

T = TypeVar("T")


def require_selenium() -> None:
    """Raise ImportError naming the ``browser`` extra when selenium is not installed."""
    try:
        import selenium  # noqa: F401
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(BROWSER_EXTRA_HINT) from error


class BrowserLifecycle:
    """Mixin: restart on browser failure, truncate instead of raising, close, pickle.

    The env's ``__init__`` checks its arguments, calls :func:`require_selenium` and the text env's
    ``__init__``, then :meth:`_start_browser`.
    """

    browser: ManagedBrowser
    server: Any  # has ``url`` and ``stop()``
    browser_config: BrowserConfig
    _unpickled_browser: ClassVar[tuple[str, ...]] = ("browser", "server", "_loaded")
    """Live or per-browser attributes a pickled copy does not carry (its ``_open`` rebuilds them)."""

    def _start_browser(self, browser_config: BrowserConfig | None, input_mode: str) -> None:
        self.browser_config = browser_config if browser_config is not None else BrowserConfig()
        self.input_mode = input_mode
        self.browser_restarts = 0

    def _guarded(self, read: Callable[..., str], *args: Any) -> str:
        """``read(*args)``, with every browser-side error raised as a BrowserFailure."""
        try:
            return read(*args)
        except BrowserFailure:
            raise
        except Exception as error:  # selenium, urllib3 and socket errors all mean the same here
            raise BrowserFailure(f"{type(error).__name__}: {str(error).strip()[:300]}") from error

    def _retry_once(self, reset: Callable[[], T]) -> T:
        """``reset()``, once more on a fresh browser if the first try hits a browser failure."""
        for attempt in (1, 2):
            try:
                return reset()
            except Exception as error:
                if attempt == 2 or not (isinstance(error, BrowserFailure) or is_driver_error(error)):
                    raise
                self._restart()
        raise AssertionError("unreachable")

    def _step_or_truncate(
        self, step: Callable[[str], tuple[str, float, bool, bool, dict]], action: str
    ) -> tuple[str, float, bool, bool, dict]:
        try:
            return step(action)
        except BrowserFailure as failure:
            return self._truncate(action, str(failure))

    def _restart(self) -> None:
        self.browser_restarts += 1
        self._loaded = None
        self.browser.restart()

    # -- lifecycle -----------------------------------------------------------------------------
    def owned_pids(self) -> set[int]:
        """Every live process this env started (chromedriver, Chromium and its helpers)."""
        return self.browser.owned_pids()

    def close(self) -> None:
        """Quit Chromium (killing every process it left) and stop the web app. Idempotent."""
        browser = getattr(self, "browser", None)
        if browser is not None:
            browser.close()
        server = getattr(self, "server", None)
        if server is not None:
            server.stop()
        super().close()  # the text env's close

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self) -> dict[str, Any]:
        # A live browser and server do not travel: the copy starts its own, lazily, and reloads
        # the page its episode is on before the next action.
        state = super().__getstate__()
        for name in self._unpickled_browser:
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        shown = state.get("_shown")
        super().__setstate__(state)
        self._open()  # sets _shown to the first page; the copy's episode is on the pickled one
        if shown is not None:
            self._shown = shown
