"""``MEM1-WebShop-Browser-v0``: the shop served by a local web app, driven in headless Chromium.

The text env's episode core (:class:`~mem1_envs.shop.episode.ShopEpisode`) is reused as is; only
its *display* changes. Where the text env renders a state with ``render_text``, this env performs
the action in a real browser and reads the page back from the live DOM:

- ``search[q]``: fills the page's search box and submits its form (``input_mode="native"``:
  types the query and presses Enter); the form's GET goes to the web app, which runs the page
  model's transition and serves the results page;
- ``click[b]``: clicks the ``<a class="btn">`` whose ``data-action`` is the action (its link
  goes to the web app, which applies it; ``"native"``: a WebDriver element click);
- then waits for the new document and reads ``textContent`` of every ``#page .line`` element
  (the reading contract of :mod:`mem1_envs.shop.render_html`), which is the observation's page.

The action is validated by the pure page model before the browser sees it, so invalid actions,
paging, rewards and ``info`` follow the text env's rules exactly; the parity test checks that
observations, rewards and ``info`` are identical for the same seeds and actions. The page's
``data-state`` is checked against the state the page model expects: a browser showing anything
else counts as a failure.

Browser failures (a killed Chromium or chromedriver, a frozen one that does not answer a
command within ``command_timeout_s``, a page that does not load in ``page_load_timeout_s``, a
page that is not the expected one) never raise from ``step``: the
browser is restarted, and the step returns ``truncated=True`` with
``info["truncated_reason"] = "browser_failure: <error>"`` and ``info["browser_restarts"]``; the
reward is what a turn limit at that point would give. ``reset`` retries once on a fresh browser.

One Chromium and one server per env, reused across episodes; ``close()`` stops both and kills
every process the env started (see :mod:`mem1_envs.shop.browser`). Selenium, Starlette and
uvicorn are imported when the env is made, not at ``import mem1_envs``.
"""

from __future__ import annotations

import time
from typing import Any

from mem1_envs.browser_lifecycle import INPUT_MODES, BrowserLifecycle, require_selenium
from mem1_envs.shop.browser import (
    BrowserConfig,
    BrowserFailure,
    ManagedBrowser,
)  # BrowserFailure: re-exported
from mem1_envs.shop.engine import ShopEngine
from mem1_envs.shop.pages import PageState, build_page, normalize_label, parse_action, transition
from mem1_envs.shop.text_env import WebShopTextEnv
from mem1_envs.validation import check_choice, check_instance

# Reads the page under render_html's contract, or null while the old document is still shown
# (it carries the mark set before the action) or the new one is still loading.
_READ = """
if (window.__mem1Old !== undefined || document.readyState !== 'complete') { return null; }
const page = document.getElementById('page');
if (page === null) { return [null, (document.body ? document.body.textContent : '').slice(0, 300)]; }
return [page.getAttribute('data-state'),
        Array.from(page.querySelectorAll('.line'), (el) => el.textContent).join('\\n')];
"""

# Finds the button to press (first whose data-action is one of the candidates) and marks the
# current document, so that the read above can tell the next document from this one.
_FIND_BUTTON = """
const wanted = arguments[0];
for (const el of document.querySelectorAll('#page a.btn')) {
  if (wanted.includes(el.getAttribute('data-action'))) {
    window.__mem1Old = true;
    if (arguments[1]) { el.click(); }
    return el;
  }
}
return null;
"""

_FIND_SEARCH = """
const form = document.querySelector('#page form[data-action="search"]');
if (form === null) { return null; }
const input = form.querySelector('input[name="query"]');
input.value = '';
window.__mem1Old = true;
if (arguments[1]) { input.value = arguments[0]; form.requestSubmit(); }
return input;
"""


class WebShopBrowserEnv(BrowserLifecycle, WebShopTextEnv):
    """WebShop in a real headless browser, with the text env's rules, rewards and observations.

    ## Description
    The same shop, goals and episode rules as ``MEM1-WebShop-v0`` (see
    :class:`~mem1_envs.shop.text_env.WebShopTextEnv`), but every page is served by a local web
    app (Starlette + uvicorn on ``127.0.0.1``, a free port) and every action is performed in
    headless Chromium through Selenium 4 (Debian's ``chromium`` and ``chromium-driver``).

    ## Action Space
    As ``MEM1-WebShop-v0``: ``Text``, ``<summary>memory</summary><answer>search[q]</answer>`` or
    ``...<answer>click[button]</answer>``.

    ## Observation Space
    As ``MEM1-WebShop-v0``; the page part is read from the live DOM and equals the text
    renderer's output for the same state.

    ## Rewards
    As ``MEM1-WebShop-v0``.

    ## Episode End
    As ``MEM1-WebShop-v0``; also truncated when the browser fails (``info["truncated_reason"]``).

    ## Info
    As ``MEM1-WebShop-v0``; after a browser failure also ``truncated_reason`` and
    ``browser_restarts`` (how many times this env restarted its browser).

    ## Arguments
    Every ``MEM1-WebShop-v0`` argument, plus ``browser_config`` (a
    :class:`~mem1_envs.shop.browser.BrowserConfig`: binaries, timeouts, extra flags) and
    ``input_mode``: ``"script"`` (default: the page's own ``click()`` on the button element and
    ``requestSubmit()`` on the search form, called through WebDriver; the browser then issues
    the same requests and loads the same pages as for a user) or ``"native"`` (WebDriver's
    element click, with its visibility and hit tests, and the query typed as key events, as a
    user would; about 50 ms more per step, see BENCHMARKS.md).

    ## Version History
    * v0: initial version.

    Example (starts Chromium, so it is not a doctest; the tests run it)::

        env = gym.make("MEM1-WebShop-Browser-v0", n_products=2000)
        observation, info = env.reset(seed=0)
        observation, reward, terminated, truncated, info = env.step(
            "<summary>s</summary><answer>search[potato chips]</answer>")
        env.close()   # quits Chromium, kills its processes, stops the server
    """

    def __init__(
        self,
        render_mode: str | None = None,
        shop: ShopEngine | None = None,
        browser_config: BrowserConfig | None = None,
        input_mode: str = "script",
        **kwargs: Any,
    ):
        # Every argument is checked (the text env's in super().__init__) before Chromium starts.
        check_choice("input_mode", input_mode, INPUT_MODES)
        check_instance("browser_config", browser_config, BrowserConfig, optional=True)
        require_selenium()
        super().__init__(render_mode=render_mode, shop=shop, **kwargs)
        self._start_browser(browser_config, input_mode)
        self._open()

    def _open(self) -> None:
        from mem1_envs.shop.webapp import LocalServer, build_app

        self.browser = ManagedBrowser(self.browser_config)
        self.server = LocalServer(build_app(self.shop))
        # The state the browser shows now (None: nothing of ours, after a start or a restart).
        self._loaded: PageState | None = None
        self._shown = PageState()

    # -- the display: act in the browser, read the DOM ------------------------------------------
    def _display(self, state: PageState, action: str | None) -> str:
        return self._guarded(self._browse, state, action)

    def _browse(self, state: PageState, action: str | None) -> str:
        driver = self.browser.driver
        if action is None:
            self._load(state)
        else:
            if self._loaded != self._shown:
                self._load(self._shown)  # a fresh browser: bring back the page the episode is on
            native = self.input_mode == "native"
            parsed = parse_action(action)
            if not isinstance(parsed, tuple):
                raise BrowserFailure(
                    f"the page model accepted an action the browser cannot parse: {action!r}"
                )
            if parsed[0] == "search":
                element = driver.execute_script(_FIND_SEARCH, state.query, not native)
                if element is None:
                    raise BrowserFailure("the page has no search box")
                if native:
                    from selenium.webdriver.common.keys import Keys

                    # state.query is the page model's normalised query: what the box must hold.
                    element.send_keys(state.query + Keys.ENTER)
            else:
                candidates = self._button_candidates(state, parsed[1])
                element = driver.execute_script(_FIND_BUTTON, candidates, not native)
                if element is None:
                    raise BrowserFailure(f"no button for {action!r} on the page")
                if native:
                    element.click()
        text = self._read(state)
        self._loaded = self._shown = state
        return text

    def _button_candidates(self, state: PageState, argument: str) -> list[str]:
        """The ``data-action`` values that perform the click (aliases such as ``prev`` resolved)."""
        direct = f"click[{normalize_label(argument)}]"
        buttons = [button.action for button in build_page(self.shop, self._shown).buttons()]
        if direct in buttons:
            return [direct]
        # An alias the page model resolves itself: the buttons that lead to the same state.
        return [b for b in buttons if transition(self.shop, self._shown, b).state == state]

    def _load(self, state: PageState) -> None:
        self._loaded = None
        self.browser.driver.get(f"{self.server.url}/page?{state.to_query()}")

    def _read(self, state: PageState) -> str:
        driver = self.browser.driver
        deadline = time.monotonic() + self.browser_config.page_load_timeout_s
        while True:
            result = driver.execute_script(_READ)
            if result is not None:
                break
            if time.monotonic() > deadline:
                raise BrowserFailure(f"no new page within {self.browser_config.page_load_timeout_s} s")
            time.sleep(0.001)
        shown, text = result
        if shown != state.to_query():
            raise BrowserFailure(
                f"the browser shows {shown!r}, expected {state.to_query()!r}: {text[:100]!r}"
            )
        return text

    # -- episode -------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        def attempt() -> tuple[str, dict]:
            self._shown = PageState()
            if self.browser.started:
                self.browser.driver.delete_all_cookies()  # per-episode state (the shop sets none)
            return super(WebShopBrowserEnv, self).reset(seed=seed, options=options)

        return self._retry_once(attempt)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        return self._step_or_truncate(self.episode.step, action)

    def _truncate(self, action: object, reason: str) -> tuple[str, float, bool, bool, dict]:
        self._restart()
        episode = self.episode
        reward = episode._final_reward()  # what a turn limit here would give
        response_tokens = self.count_tokens(action) if isinstance(action, str) else 0
        extra = {"truncated_reason": f"browser_failure: {reason}", "browser_restarts": self.browser_restarts}
        observation, info = episode._observe(response_tokens, extra)
        self._shown = episode.page  # a step after this one reloads the page the episode is on
        return observation, reward, False, True, info
