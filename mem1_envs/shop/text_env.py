"""``MEM1-WebShop-v0``: the shop in text mode, in-process, no server.

How the browser env reuses this (``MEM1-WebShop-Browser-v0``): it subclasses
:class:`WebShopTextEnv` and changes one thing, the *display*
given to :class:`~mem1_envs.shop.episode.ShopEpisode`. Here it is ``_display_text(state,
action) -> render_text(shop, state)``; in the browser it performs ``action`` in Chromium (click
the element whose ``data-action`` equals the action, or submit the search form; ``None`` means
load the start page) and returns the text read from the live DOM under the reading contract of
:mod:`mem1_envs.shop.render_html`. The episode core already validates actions with the pure page
model before the display is called, so invalid actions, rewards, paging and ``info`` are the same
in both modes by construction; ``info["page_state"]`` (``PageState.to_query()``) can be compared
with the page's ``data-state`` to detect a browser that drifted. A display that raises leaves
the episode's state untouched; ``episode.truncate(response, {"truncated_reason": ...})`` then
ends the episode as a turn limit would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from gymnasium import spaces

from mem1_envs import protocol as proto
from mem1_envs.base_env import BoundedMemoryEnv
from mem1_envs.memory import check_memory, make_token_counter
from mem1_envs.shop.engine import ShopEngine, load_shop
from mem1_envs.shop.episode import ShopEpisode
from mem1_envs.shop.goals import Goal, sample_goal
from mem1_envs.shop.pages import PageState
from mem1_envs.shop.render_text import render_text
from mem1_envs.validation import check_choice, check_float, check_instance, check_int


@dataclass(frozen=True)
class WebShopConfig:
    """Arguments of ``MEM1-WebShop-v0`` (all keyword arguments of ``gym.make``)."""

    n_products: int = 10_000
    """Size of the generated catalog (built once, then cached on disk)."""
    catalog_seed: int = 0
    """Seed of the generated catalog (the episode seed only draws goals)."""
    n_items: int = 1
    """Items per goal: 1 is WebShop's task; k > 1 is a shopping list under one total budget."""
    max_turns: int | None = None
    """Turn limit; None means ``15 * n_items``."""
    instruction: str = "always"
    """``"always"``: the goal is in every context; ``"first"``: only in the first (tests memory)."""
    protocol: str = "webshop"
    """Tag set; ``"webshop"`` is MEM1's WebShop form (<summary>, action in <answer>, page in <state>)."""
    memory: Any = "mem1"
    """Context policy: ``"mem1"`` (bounded), ``"window"`` (last ``window`` turns), ``"full"``, another
    registered name or a :class:`~mem1_envs.memory.ContextPolicy` instance."""
    window: int = 3
    """Turns kept by the ``window`` policy."""
    max_context_tokens: int = 2048
    """Token budget of the whole context under ``mem1`` (the memory is cut first)."""
    screen_tokens: int = 300
    """Tokens of page text per screen; longer pages are shown in screens, never cut."""
    token_counter: Any = None
    """None (the default regex counter), a callable ``str -> int`` or a tokenizer with ``encode``."""
    invalid_action: str = "penalize"
    """``"penalize"`` (reward -penalty, page unchanged, go on) or ``"terminate"`` (reward 0, end)."""
    invalid_penalty: float = 0.1
    """Penalty of an invalid action under ``"penalize"``."""

    def __post_init__(self) -> None:
        # Every field is checked here, at gym.make time, with a message naming it
        # (tests/test_env_arguments.py fails for a field that is not).
        check_int("n_products", self.n_products, minimum=1)
        check_int("catalog_seed", self.catalog_seed, minimum=0)
        check_int("n_items", self.n_items, minimum=1)
        check_int("max_turns", self.max_turns, minimum=1, optional=True)
        check_choice("instruction", self.instruction, ("always", "first"))
        if "answer" not in dict(proto.get_tag_set(self.protocol).actions).values():  # raises naming protocol
            raise ValueError(f"protocol {self.protocol!r} has no answer tag to carry shop actions")
        check_memory(self.memory)
        check_int("window", self.window, minimum=1)
        check_int("max_context_tokens", self.max_context_tokens, minimum=1)
        check_int("screen_tokens", self.screen_tokens, minimum=50)
        make_token_counter(self.token_counter)  # raises naming token_counter
        check_choice("invalid_action", self.invalid_action, ("penalize", "terminate"))
        check_float("invalid_penalty", self.invalid_penalty, minimum=0)

    @property
    def turn_limit(self) -> int:
        return self.max_turns if self.max_turns is not None else 15 * self.n_items


def _check_goals(goals: Any) -> None:
    check_instance("goals", goals, (list, tuple), optional=True)
    if goals is not None and not goals:
        raise ValueError("goals must be None or a non-empty list of Goal, got an empty list")
    for index, goal in enumerate(goals or ()):
        check_instance(f"goals[{index}]", goal, Goal)


class WebShopTextEnv(BoundedMemoryEnv):
    """WebShop with a bounded, MEM1-style context, in text mode.

    ## Description
    The agent shops in a generated catalog (10,000 products by default, 3-level taxonomy) for
    the product an instruction describes ("Find me potato chips that is gluten free, with
    flavor: sea salt, and price lower than 30.00 dollars"), or for a whole shopping list under
    one total budget (``n_items > 1``). Pages: search, results (10 per page, 50 results),
    item (options, Description, Features, Buy Now), sub pages and an order confirmation (see
    :mod:`mem1_envs.shop.pages`). Long pages come in screens of ``screen_tokens`` tokens.

    ## Action Space
    ``Text``: one model response, ``<summary>memory</summary><answer>search[query]</answer>`` or
    ``<summary>memory</summary><answer>click[button]</answer>``; ``click[next page]``,
    ``click[prev page]``, ``click[page N]`` move between screens of a long page. The space's
    length is the parser's 100,000 characters; any string is accepted (a longer one is cut,
    characters outside the charset too).

    ## Observation Space
    ``Text`` (printable ASCII): the next context: the prompt (with the instruction, always or
    only at first), the last memory, the last action and the current screen with the turn hint,
    the page's available actions and the screen position. Other characters become ``?``.

    ## Rewards
    WebShop's reward (:mod:`mem1_envs.shop.reward`) on buying: for a single goal when the item is
    bought; for a list when all items are bought or at truncation (items not bought score 0).
    Other steps earn 0. An invalid action (protocol error, ``malformed``, ``too_long``,
    ``empty_query``, ``no_search_box``, ``unknown_button``, ``no_such_screen``) leaves the page
    unchanged and earns ``-invalid_penalty`` (``"penalize"``), or ends the episode with reward 0
    (``"terminate"``). On the last turn the penalty adds to the end reward. An invalid action is
    echoed in the next context cut to 400 characters.

    ## Episode End
    Terminated when the goal's items are bought (one purchase per item) or on an invalid action
    under ``"terminate"``. Truncated after ``max_turns`` turns.

    ## Info
    ``turn``, ``prompt`` (the prefix of every observation of the episode: with ``instruction="first"``
    the instruction is not part of it), ``context_tokens``, ``peak_context_tokens``, ``response_tokens``, ``dependency``,
    ``context_cut``, ``invalid_action`` (None or the error name), ``parse_notes``,
    ``invalid_actions`` (count), ``page`` (page kind), ``page_state`` (the page model's state),
    ``screen``/``screens``, ``purchases`` (product codes), ``reward_components`` (at the end:
    ``r_type``, attribute/option matches and totals, ``price_ok``, per-item scores, spent,
    budget) and ``success`` (reward == 1).

    ## Arguments
    See :class:`WebShopConfig`; e.g. ``gym.make("MEM1-WebShop-v0", n_items=3, instruction="first")``.
    ``reset(options={"goal": Goal})`` pins the goal of an episode. ``shop=`` and ``goals=`` (e.g.
    from :func:`mem1_envs.shop.webshop_data.load_webshop`) replace the generated catalog and goals.

    ## Version History
    * v0: initial version.

    >>> import gymnasium as gym, mem1_envs
    >>> env = gym.make("MEM1-WebShop-v0", n_products=500)
    >>> observation, info = env.reset(seed=0)
    >>> "Instruction: Find me" in observation, info["page"]
    (True, 'search')
    >>> observation, reward, terminated, truncated, info = env.step("<summary>s</summary><answer>click[buy now]</answer>")
    >>> info["invalid_action"], reward
    ('unknown_button', -0.1)
    """

    env_id: ClassVar[str] = "MEM1-WebShop-v0"
    config_class: ClassVar[type] = WebShopConfig
    # The catalog and index are reloaded from the cache, not pickled with every env.
    _unpickled: ClassVar[tuple[str, ...]] = ("shop",)

    def __init__(
        self,
        render_mode: str | None = None,
        shop: ShopEngine | None = None,
        goals: list[Goal] | None = None,
        **kwargs: Any,
    ):
        self._configure(render_mode, kwargs)
        check_instance("shop", shop, ShopEngine, optional=True)
        _check_goals(goals)
        self.tags = proto.get_tag_set(self.config.protocol)
        self._given_shop = shop
        self.goals = list(goals) if goals is not None else None
        self._attach()
        self.observation_space = spaces.Text(proto.MAX_OBSERVATION_CHARS, charset=proto.ASCII_CHARSET)
        # The parser reads the first DEFAULT_MAX_CHARS characters of a response (a longer one is
        # accepted and cut), so that is the action space's length.
        self.action_space = spaces.Text(proto.DEFAULT_MAX_CHARS, charset=proto.ASCII_CHARSET)
        config = self.config
        self.episode = ShopEpisode(
            self.shop,
            self._display,
            self.tags,
            self.observe,
            self.count_tokens,
            screen_tokens=config.screen_tokens,
            turn_limit=config.turn_limit,
            instruction=config.instruction,
            invalid_action=config.invalid_action,
            invalid_penalty=config.invalid_penalty,
        )
        self._started = False

    def _attach(self) -> None:
        self.shop = self._given_shop or load_shop(self.config.n_products, self.config.catalog_seed)

    def _display(self, state: PageState, action: str | None) -> str:
        return render_text(self.shop, state)

    def _reattach(self) -> None:
        self._attach()
        self.episode.attach(self.shop, self._display, self.observe, self.count_tokens)

    def _attach_memory(self) -> None:
        super()._attach_memory()
        if "episode" in self.__dict__:  # a new counter (set_context_policy, unpickling) reaches the episode
            self.episode.count = self.count_tokens

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        goal = (options or {}).get("goal")
        if goal is None and self.goals is not None:
            goal = self.goals[int(self.np_random.integers(len(self.goals)))]
        elif goal is None:
            goal = sample_goal(self.shop, self.np_random, self.config.n_items)
        elif not isinstance(goal, Goal):
            raise ValueError(
                f"options['goal'] must be a mem1_envs.shop.goals.Goal, got {type(goal).__name__}"
            )
        self.goal = goal
        self._started = True
        if self.config.instruction == "first":  # the first context shows the instruction too
            self.policy.check_prompt(self.episode.first_prompt(goal), "raise it or lower n_items")
        self.start_episode(self.episode.fixed_prompt(goal), "raise it or lower n_items")
        return self.episode.start(goal)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        return self.episode.step(action)
