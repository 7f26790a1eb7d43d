"""``MEM1-WebQA-Browser-v0``: the wiki served by a local web app, browsed in headless Chromium.

The text env (:class:`~mem1_envs.webqa.env.WebQATextEnv`) is reused as is; only its *display*
changes. Where the text env renders a state with ``render_text``, this env performs the action
in a real browser and reads the page back through Chromium's accessibility tree
(:mod:`mem1_envs.ax_text`, generic rules, no knowledge of the markup):

- ``click[label]``: finds, in the accessibility tree of the page shown, the first link whose
  accessible name is ``label`` (compared as the page model compares labels: lower-case, spaces
  collapsed) and clicks that DOM element (``input_mode``: its ``click()``, or mouse events at
  its box); the browser follows its ``href``;
- ``search[q]`` / ``scroll[d]``: the browser goes to the web app's ``/act`` address for the
  action, where the app applies it and redirects to the next page (a scroll replaces the
  history entry, as the page model's back stack does not record scrolls);
- ``back[]``: the browser's own history (``history.back()``); where the history and the page
  model's back stack differ (a history lost to a browser restart, or the model's stack capped at
  ``MAX_BACK``), the expected page is loaded in place and ``back_reloads`` counts it;
- then waits for the new document, checks its address is the state the page model expects, and
  reads the accessibility tree: that text is the observation's page.

The action is validated by the pure page model before the browser sees it, so invalid actions,
rewards and ``info`` follow the text env's rules; the parity test checks that observations,
rewards and ``info`` are identical for the same seeds and actions.

Browser failures (a killed or frozen Chromium or chromedriver, a page that does not load in
``page_load_timeout_s``, an unexpected address, a link the browser does not show) never raise
from ``step``: the browser is restarted and the step returns ``truncated=True`` (reward 0, as a
turn limit) with ``info["truncated_reason"] = "browser_failure: <error>"`` and
``info["browser_restarts"]``. ``reset`` retries once on a fresh browser. After an invalid action
the page the browser shows is read again (nothing is done in it).

One Chromium and one server per env, reused across episodes; ``close()`` stops both and kills
every process the env started (:class:`~mem1_envs.shop.browser.ManagedBrowser`). Selenium,
Starlette and uvicorn are imported when the env is made, not at ``import mem1_envs``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import urlsplit

from mem1_envs.ax_text import ax_text, find_links, read_ax_nodes
from mem1_envs.browser_lifecycle import INPUT_MODES, BrowserLifecycle, require_selenium
from mem1_envs.shop.browser import BrowserConfig, BrowserFailure, ManagedBrowser
from mem1_envs.validation import check_choice, check_instance
from mem1_envs.webqa.env import WebQATextEnv
from mem1_envs.webqa.pages import PageState, normalize_label
from mem1_envs.webqa.render_html import PAGE_PATH
from mem1_envs.webqa.source import WebQASource
from mem1_envs.webqa.webapp import act_url, page_url

# A page left by a pending navigation carries this mark; the next document does not. A
# back-forward cache would bring a marked page back, so it is off (the app also says no-store).
_MARK = "window.__mem1Old = true;"
_NO_BFCACHE = "--disable-features=BackForwardCache"
_NEW_DOCUMENT = (
    "return (window.__mem1Old === undefined && document.readyState === 'complete') ? location.href : null;"
)
_CLICK = "function() { window.__mem1Old = true; this.click(); }"


class WebQABrowserEnv(BrowserLifecycle, WebQATextEnv):
    """WebQA in a real headless browser, with the text env's rules, rewards and observations.

    ## Description
    The same wiki, questions and episode rules as ``MEM1-WebQA-v0`` (see
    :class:`~mem1_envs.webqa.env.WebQATextEnv`), but every page is served by a local web app
    (Starlette + uvicorn on ``127.0.0.1``, a free port), every action is performed in headless
    Chromium through Selenium 4, and every page is read from Chromium's accessibility tree.

    ## Action Space
    As ``MEM1-WebQA-v0``.

    ## Observation Space
    As ``MEM1-WebQA-v0``; the page part is read from the browser and equals the text renderer's.

    ## Rewards
    As ``MEM1-WebQA-v0``.

    ## Episode End
    As ``MEM1-WebQA-v0``; also truncated (reward 0) when the browser fails.

    ## Info
    As ``MEM1-WebQA-v0``; after a browser failure also ``truncated_reason`` and
    ``browser_restarts`` (how many times this env restarted its browser).

    ## Arguments
    Every ``MEM1-WebQA-v0`` argument, plus ``browser_config`` (a
    :class:`~mem1_envs.shop.browser.BrowserConfig`: binaries, timeouts, extra flags) and
    ``input_mode``, how a link is clicked once found: ``"script"`` (default: the element's own
    ``click()``, called through CDP) or ``"native"`` (a left mouse press and release at the middle
    of the link's box, dispatched as input events: the browser's hit test picks the target).

    ## Version History
    * v0: initial version.

    Example (starts Chromium, so it is not a doctest; the tests run it)::

        env = gym.make("MEM1-WebQA-Browser-v0", world="small")
        observation, info = env.reset(seed=0)
        observation, reward, terminated, truncated, info = env.step("<think></think><search>Oslo</search>")
        env.close()   # quits Chromium, kills its processes, stops the server
    """

    env_id: ClassVar[str] = "MEM1-WebQA-Browser-v0"
    _unpickled_browser: ClassVar[tuple[str, ...]] = (*BrowserLifecycle._unpickled_browser, "_nodes")

    def __init__(
        self,
        render_mode: str | None = None,
        source: WebQASource | None = None,
        browser_config: BrowserConfig | None = None,
        input_mode: str = "script",
        **kwargs: Any,
    ):
        # Every argument is checked (the text env's in super().__init__) before Chromium starts.
        check_instance("browser_config", browser_config, BrowserConfig, optional=True)
        check_choice("input_mode", input_mode, INPUT_MODES)
        require_selenium()
        super().__init__(render_mode=render_mode, source=source, **kwargs)
        self._start_browser(browser_config, input_mode)
        self.back_reloads = 0
        self._open()

    def _open(self) -> None:
        from mem1_envs.webqa.webapp import serve

        config = self.browser_config
        if _NO_BFCACHE not in config.extra_args:
            config = replace(config, extra_args=(*config.extra_args, _NO_BFCACHE))
        self.browser = ManagedBrowser(config)
        self.server = serve(self.wiki)
        # The state the browser shows now (None: nothing of ours, after a start or a restart),
        # the state the episode is on, and the accessibility tree last read (links to click).
        self._loaded: PageState | None = None
        self._shown = PageState()
        self._nodes: list[dict[str, Any]] = []

    # -- the display: act in the browser, read the accessibility tree ------------------------
    def _display(self, state: PageState, action: tuple[str, str] | None) -> str:
        return self._guarded(self._browse, state, action)

    def _current_text(self) -> str:
        """The page the browser shows, read again (after an invalid action; nothing is done)."""
        return self._guarded(self._reread)

    def _browse(self, state: PageState, action: tuple[str, str] | None) -> str:
        driver = self.browser.driver
        if action is None:
            self._go(state, "get")
        else:
            if self._loaded != self._shown:  # a fresh browser: bring back the page the episode is on
                self._go(self._shown, "get")
                self._arrive(self._shown, self._wait())
            verb, argument = action
            if verb == "click":
                self._click(argument)
            elif verb == "back":
                driver.execute_script(_MARK + "history.back();")
            else:  # search pushes a page, scroll moves the window of the same one
                how = "assign" if verb == "search" else "replace"
                self._go_to(act_url(self._shown, f"{verb}[{argument}]"), how)
        shown = self._wait()
        if action is not None and action[0] == "back" and shown != state:
            self.back_reloads += 1
            self._go(state, "replace")
            shown = self._wait()
        return self._arrive(state, shown)

    def _arrive(self, state: PageState, shown: PageState) -> str:
        """Check the browser shows ``state`` and read its page (the links to click included)."""
        if shown != state:
            raise BrowserFailure(f"the browser shows {shown.to_query()!r}, expected {state.to_query()!r}")
        self._nodes = read_ax_nodes(self.browser.driver)
        self._loaded = self._shown = state
        return ax_text(self._nodes)

    def _reread(self) -> str:
        if self._loaded != self.page:  # a fresh browser: bring back the page the episode is on
            self._go(self.page, "get")
            return self._arrive(self.page, self._wait())
        self._nodes = read_ax_nodes(self.browser.driver)
        return ax_text(self._nodes)

    def _click(self, label: str) -> None:
        found = find_links(self._nodes, label, key=normalize_label)
        if not found:
            raise BrowserFailure(f"no link named {label!r} in the page's accessibility tree")
        driver, node = self.browser.driver, {"backendNodeId": found[0]}
        if self.input_mode == "script":
            element = driver.execute_cdp_cmd("DOM.resolveNode", node)["object"]
            driver.execute_cdp_cmd(
                "Runtime.callFunctionOn", {"objectId": element["objectId"], "functionDeclaration": _CLICK}
            )
            return
        # native: a left click at the middle of the link's first box, as a mouse would; the
        # browser's hit test decides what is clicked.
        driver.execute_cdp_cmd("DOM.scrollIntoViewIfNeeded", node)
        quads = driver.execute_cdp_cmd("DOM.getContentQuads", node)["quads"]
        if not quads:
            raise BrowserFailure(f"the link {label!r} has no box on the screen")
        x, y = sum(quads[0][0::2]) / 4, sum(quads[0][1::2]) / 4
        driver.execute_script(_MARK)
        for kind in ("mousePressed", "mouseReleased"):
            event = {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}
            driver.execute_cdp_cmd("Input.dispatchMouseEvent", event)

    def _go(self, state: PageState, how: str) -> None:
        if how == "get":
            self._loaded = None
            self.browser.driver.get(self.server.url + page_url(state))
        else:
            self._go_to(page_url(state), how)

    def _go_to(self, path: str, how: str) -> None:
        self.browser.driver.execute_script(_MARK + f"location.{how}(arguments[0]);", self.server.url + path)

    def _wait(self) -> PageState:
        """The state of the next document, once it has loaded."""
        driver = self.browser.driver
        deadline = time.monotonic() + self.browser_config.page_load_timeout_s
        while True:
            try:
                href = driver.execute_script(_NEW_DOCUMENT)
            except Exception as error:
                if type(error).__name__ != "JavascriptException":
                    raise
                href = None  # the old document unloaded under the script: the new one is coming
            if href is not None:
                break
            if time.monotonic() > deadline:
                raise BrowserFailure(f"no new page within {self.browser_config.page_load_timeout_s} s")
            time.sleep(0.001)
        address = urlsplit(href)
        if not href.startswith(self.server.url) or address.path != PAGE_PATH:
            raise BrowserFailure(f"the browser left the wiki: {href[:200]!r}")
        return PageState.from_query(address.query)

    # -- episode -------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        return self._retry_once(lambda: super(WebQABrowserEnv, self).reset(seed=seed, options=options))

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if not self._questions:
            raise RuntimeError("call reset() before step()")
        return self._step_or_truncate(super().step, action)

    def _truncate(self, action: object, reason: str) -> tuple[str, float, bool, bool, dict]:
        """End the episode as a turn limit would (reward 0), on a fresh browser."""
        self._restart()
        self._shown = self.page  # a step after this one reloads the page the episode is on
        response_tokens = self.count_tokens(action) if isinstance(action, str) else 0
        extra = {
            "invalid_action": None,
            "parse_notes": [],
            "truncated_reason": f"browser_failure: {reason}",
            "browser_restarts": self.browser_restarts,
        }
        observation, info = self._observe(response_tokens, extra)
        return observation, 0.0, False, True, info

    def _restart(self) -> None:
        self._nodes = []  # the links of a page the new browser does not show
        super()._restart()
