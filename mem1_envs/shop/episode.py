"""The mode-independent core of one WebShop episode: turns, paging, rewards, ``info``.

:class:`ShopEpisode` owns everything but how a page is displayed: it parses the response
(protocol tags, then ``search[...]``/``click[...]``), runs the pure page model
(:func:`mem1_envs.shop.pages.transition`) to validate the action and know the new state,
asks its *display* for the page text of the new state, splits that text into screens that fit
``screen_tokens``, scores purchases, and builds ``info``; the context itself is built and
accounted for by the env's ``observe`` (:class:`~mem1_envs.base_env.BoundedMemoryEnv`).

A display is any callable ``display(state, action) -> page text``: it is called after every
valid navigating action with the new :class:`PageState` and the action string that led there
(``None`` on reset), and must return the full page text (what ``render_text`` gives for that
state). The text env passes ``render_text``; a browser env performs ``action`` in the browser
and returns the text read from the live DOM. Scrolling (``click[next page]``,
``click[prev page]``, ``click[page N]``) never reaches the display.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from mem1_envs import protocol as proto
from mem1_envs.memory import Context, TokenCounter, Turn, truncate_to_tokens
from mem1_envs.shop.engine import ShopEngine
from mem1_envs.shop.goals import Goal
from mem1_envs.shop.pages import PageState, normalize_label, parse_action, transition
from mem1_envs.shop.render_text import ACTIONS_PREFIX
from mem1_envs.shop.reward import goal_reward

Display = Callable[[PageState, "str | None"], str]
Observe = Callable[[str, "list[Turn]", int], "tuple[Context, dict[str, Any]]"]
"""``observe(prompt, turns, response_tokens) -> (context, memory info)``: the env's
:meth:`~mem1_envs.base_env.BoundedMemoryEnv.observe` (policy and memory accounting)."""

PROMPT = (
    "You are shopping in a web shop. Every turn, first write your memory between <{state}> and "
    "</{state}>: everything you still need (the instruction, what you have found, what you have "
    "bought), because older turns are removed from your context. Then write exactly one action "
    "between <{answer}> and </{answer}>: search[your query] on a page with a search box, or "
    "click[button] with a button of the page. A long page is shown one screen at a time: "
    "click[next page], click[prev page] or click[page N] move between its screens. The page comes "
    "between <{obs}> and </{obs}>."
)

_SCROLL = re.compile(r"^(?:(next|prev|previous) page|page (\d{1,6}))$")
SCROLL_ERROR = "no_such_screen"
MAX_ECHO_CHARS = 400


@lru_cache(maxsize=2048)
def _split_cached(page_text: str, screen_tokens: int, count: TokenCounter) -> tuple[tuple[str, ...], str]:
    screens, footer = split_screens(page_text, screen_tokens, count)
    return tuple(screens), footer


def split_screens(page_text: str, screen_tokens: int, count: TokenCounter) -> tuple[list[str], str]:
    """Split a page's body lines into screens of at most ``screen_tokens`` tokens.

    The last line (the actions) is the footer shown on every screen. Lines are never cut
    silently: a line longer than a screen continues on the next screen.
    """
    lines = page_text.split("\n")
    footer = lines[-1] if lines and lines[-1].startswith(ACTIONS_PREFIX) else ""
    body = lines[:-1] if footer else lines
    budget = max(20, screen_tokens - count(footer) - 16)
    screens: list[list[str]] = [[]]
    used = 0
    for line in body:
        cost = count(line)
        while cost > budget:  # a line longer than a screen: split it at a token boundary
            room = budget - used if screens[-1] else budget
            head = truncate_to_tokens(line, max(1, room), count)
            if not head.strip():
                screens.append([])
                used = 0
                continue
            screens[-1].append(head)
            screens.append([])
            used = 0
            line = line[len(head) :].lstrip()
            cost = count(line)
        if used + cost > budget and screens[-1]:
            screens.append([])
            used = 0
        if line:
            screens[-1].append(line)
            used += cost
    return ["\n".join(screen) for screen in screens], footer


class ShopEpisode:
    """One episode's state and rules (see the module docstring for the display contract)."""

    def __init__(
        self,
        shop: ShopEngine,
        display: Display,
        tags: proto.TagSet,
        observe: Observe,
        count: TokenCounter,
        *,
        screen_tokens: int,
        turn_limit: int,
        instruction: str,
        invalid_action: str,
        invalid_penalty: float,
    ):
        self.shop, self.display, self.tags, self.observe, self.count = shop, display, tags, observe, count
        self.screen_tokens, self.turn_limit, self.instruction = screen_tokens, turn_limit, instruction
        self.invalid_action, self.invalid_penalty = invalid_action, invalid_penalty

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("shop", "display", "observe", "count"):
            state.pop(name, None)
        return state

    def attach(self, shop: ShopEngine, display: Display, observe: Observe, count: TokenCounter) -> None:
        """Re-attach the unpicklable parts after unpickling."""
        self.shop, self.display, self.observe, self.count = shop, display, observe, count

    # -- episode ------------------------------------------------------------------------------
    def start(self, goal: Goal) -> tuple[str, dict[str, Any]]:
        self.goal = goal
        self.page = PageState()
        self.turn = 0
        self.turns: list[Turn] = []
        self.purchases: list[tuple[int, dict[str, str]]] = []
        self.invalid_count = 0
        self._show(self.display(self.page, None))
        self.last_components: dict[str, Any] = {}
        self.success = False
        return self._observe(0, {})

    @property
    def system_prompt(self) -> str:
        return PROMPT.format(
            state=self.tags.state, answer=self.tags.tag_for("answer"), obs=self.tags.observation
        )

    def first_prompt(self, goal: Goal) -> str:
        """The prompt of the first context: the system prompt and the instruction."""
        return f"{self.system_prompt}\nInstruction: {goal.instruction}"

    def fixed_prompt(self, goal: Goal) -> str:
        """The prefix every context of the episode starts with (``instruction="first"``: no instruction)."""
        return self.system_prompt if self.instruction == "first" else self.first_prompt(goal)

    def prompt(self) -> str:
        """This turn's prompt (the instruction only on the first turn under ``"first"``)."""
        if self.instruction == "first" and self.turn > 0:
            return self.system_prompt
        return self.first_prompt(self.goal)

    def _show(self, page_text: str) -> None:
        self.page_query = self.page.to_query()
        # Pages repeat (same state, same text): their screens are memoised.
        screens, self.footer = _split_cached(proto.to_charset(page_text), self.screen_tokens, self.count)
        self.screens = list(screens)
        self.screen = 0

    def _hint(self) -> str:
        hint = proto.turn_hint(self.turn_limit - self.turn)
        return hint + "\n\n" if hint else ""

    def _page_block(self, message: str = "") -> str:
        parts = [self.screens[self.screen]]
        if len(self.screens) > 1:
            parts.append(
                f"(Screen {self.screen + 1} of {len(self.screens)}; "
                "click[next page], click[prev page] or click[page N] show the others.)"
            )
        if self.footer:
            parts.append(self.footer)
        body = "\n".join(p for p in parts if p)
        return proto.wrap(self.tags.observation, self._hint() + message + body)

    def step(self, response: object) -> tuple[str, float, bool, bool, dict[str, Any]]:
        self.turn += 1
        parsed = proto.parse_response(response, self.tags)
        # Tokens of the part the parser reads (a 10 MB response costs a bounded count).
        response_tokens = self.count(response[: proto.DEFAULT_MAX_CHARS]) if isinstance(response, str) else 0
        state_block = proto.wrap(self.tags.state, proto.to_charset(parsed.state))
        error = parsed.error
        action = proto.to_charset(parsed.content) if parsed.valid else ""
        purchase = None
        if error is None:
            error, purchase = self._act(action)
        extra: dict[str, Any] = {"invalid_action": error, "parse_notes": list(parsed.notes)}
        reward, terminated = 0.0, False
        if error is not None and len(action) > MAX_ECHO_CHARS:
            # An invalid giant action is echoed in the next context only in part.
            action = action[:MAX_ECHO_CHARS] + " [...]"
        action_block = proto.wrap(self.tags.tag_for("answer"), action) if action else ""
        if error is not None:
            self.invalid_count += 1
            if self.invalid_action == "terminate":
                terminated = True
                self.turns.append(Turn(state_block, action_block, self._page_block()))
            else:
                reward = -self.invalid_penalty
                message = (
                    f"Invalid action ({error}). Write <{self.tags.state}>memory</{self.tags.state}> then "
                    f"<{self.tags.tag_for('answer')}>search[query] or click[button]</{self.tags.tag_for('answer')}>"
                    " with a button of this page.\n"
                )
                self.turns.append(Turn(state_block, action_block, self._page_block(message)))
        else:
            self.turns.append(Turn(state_block, action_block, self._page_block()))
            if purchase is not None:
                self.purchases.append(purchase)
                terminated = len(self.purchases) >= len(self.goal.items)
        truncated = not terminated and self.turn >= self.turn_limit
        if (terminated and error is None) or truncated:
            reward += self._final_reward()  # a last invalid turn keeps its penalty
        observation, info = self._observe(response_tokens, extra)
        return observation, reward, terminated, truncated, info

    def _act(self, action: str) -> tuple[str | None, tuple[int, dict[str, str]] | None]:
        """Apply a shop action; return (error, purchase)."""
        parsed = parse_action(action)
        if isinstance(parsed, tuple) and parsed[0] == "click":
            scroll = _SCROLL.match(normalize_label(parsed[1]))
            if scroll is not None:
                if scroll.group(1) == "next":
                    target = self.screen + 1
                elif scroll.group(1):
                    target = self.screen - 1
                else:
                    target = int(scroll.group(2)) - 1
                if not 0 <= target < len(self.screens):
                    return SCROLL_ERROR, None
                self.screen = target
                return None, None
        result = transition(self.shop, self.page, action)
        if result.error is not None:
            return result.error, None
        page_text = self.display(result.state, action)  # may raise (a browser): state untouched
        self.page = result.state
        self._show(page_text)
        if result.purchase is None:
            return None, None
        product, options = result.purchase
        return None, (product, dict(options))

    def truncate(
        self, response: object, extra: dict[str, Any]
    ) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """End the episode now as truncated (e.g. its display failed during ``step``).

        The reward is what a turn limit would give; the observation shows the page the
        episode is on; ``extra`` goes into ``info`` (say why).
        """
        response_tokens = self.count(response[: proto.DEFAULT_MAX_CHARS]) if isinstance(response, str) else 0
        reward = self._final_reward()
        observation, info = self._observe(
            response_tokens, {"invalid_action": None, "parse_notes": [], **extra}
        )
        return observation, reward, False, True, info

    def _final_reward(self) -> float:
        reward, scores = goal_reward(self.shop.catalog, self.goal, self.purchases)
        self.last_components = {
            "items": [s.as_dict() if s is not None else None for s in scores],
            "spent": round(sum(self.shop.catalog.price(p) for p, _ in self.purchases), 2),
            "budget": self.goal.budget,
            "reward": reward,
        }
        if len(scores) == 1 and scores[0] is not None:
            self.last_components.update(scores[0].as_dict())
        self.success = reward >= 1.0 - 1e-9
        return reward

    def _observe(self, response_tokens: int, extra: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        turns = self.turns or [Turn("", "", self._page_block())]
        context, memory = self.observe(self.prompt(), turns, response_tokens)
        catalog = self.shop.catalog
        info = {
            "turn": self.turn,
            **memory,
            "invalid_action": None,
            "parse_notes": [],
            "invalid_actions": self.invalid_count,
            "page": self.page.kind,
            "page_state": self.page_query,
            "screen": self.screen + 1,
            "screens": len(self.screens),
            "purchases": [catalog.code(p) for p, _ in self.purchases],
            "reward_components": copy.deepcopy(self.last_components),
            "success": self.success,
            **extra,
        }
        self.observation = context.text
        return context.text, info
