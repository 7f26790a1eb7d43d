"""``MEM1-WebQA-v0``: N research questions answered by browsing a local wiki, as text.

How the browser env reuses this (``MEM1-WebQA-Browser-v0``): it subclasses :class:`WebQATextEnv`
and overrides :meth:`WebQATextEnv._display` (``(state, action) -> page text``). Here it is
``render_text(wiki, state)``; in the browser it performs ``action`` (``None``: load the page of
``state``) and reads the page's text from Chromium's accessibility tree. Every action is checked
with the pure page model (:mod:`mem1_envs.webqa.pages`) before the display is called, so invalid
actions, rewards and ``info`` cannot differ between the modes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from gymnasium import spaces

from mem1_envs import protocol as proto
from mem1_envs.base_env import BoundedMemoryEnv
from mem1_envs.memory import Turn, truncate_to_tokens
from mem1_envs.qa.data import split_by_text
from mem1_envs.qa.env import check_question_fields, split_questions
from mem1_envs.qa.world import Question
from mem1_envs.rewards import score_answers
from mem1_envs.validation import check_choice, check_instance, check_str
from mem1_envs.webqa.actions import get_tags, page_action
from mem1_envs.webqa.pages import PageState, transition
from mem1_envs.webqa.render_text import render_text
from mem1_envs.webqa.source import WebQASource, load_webqa_source
from mem1_envs.webqa.tasks import turn_budget

INSTRUCTIONS = (
    "You will answer several questions by browsing a wiki. Every turn, first write your internal "
    "state between <{state}> and </{state}>: everything you still need from what you know and what "
    "you just read, because older turns are removed from your context. Then do one action: "
    "<search> query </search> shows the articles that match; <click> label </click> follows the "
    "link shown as [label]; <back></back> returns to the previous page; <scroll>down</scroll> or "
    "<scroll>up</scroll> moves through a long article. Pages come between <{obs}> and </{obs}>. "
    "Finally give all answers at once, in question order, separated by semicolons: "
    "<answer> answer 1; answer 2 </answer>."
)
MAX_ECHO_CHARS = 400  # an action is echoed into the next context cut to this many characters


@dataclass(frozen=True)
class WebQAConfig:
    """Arguments of ``MEM1-WebQA-v0`` (all keyword arguments of ``gym.make``)."""

    num_objectives: int = 1
    """How many questions one episode asks (the answer lists them in order, ``;``-separated)."""
    max_turns: int | None = None
    """Turn limit; None scales it to the hops needed: per question a search and one click per
    article on its path (4 for ``data`` questions), plus one answer and 2 spare turns."""
    protocol: str = "webqa"
    """Tag set (:mod:`mem1_envs.webqa.actions`): ``<think>`` state, ``<search>``/``<click>``/``<back>``/
    ``<scroll>``/``<answer>`` actions, pages in ``<information>``."""
    memory: Any = "mem1"
    """Context policy: ``"mem1"`` (bounded), ``"window"`` (last ``window`` turns), ``"full"``, another
    registered name or a :class:`~mem1_envs.memory.ContextPolicy` instance."""
    window: int = 3
    """Turns kept by the ``window`` policy."""
    max_context_tokens: int = 2048
    """Token budget of the whole context under ``mem1`` (prompt included)."""
    max_observation_tokens: int = 1000
    """Cap on one page's tokens; a longer page is cut."""
    token_counter: Any = None
    """None (the default regex counter), a callable ``str -> int`` or a tokenizer with ``encode``."""
    reward_mode: str = "sum"
    """``"sum"``: number of exactly matched answers (MEM1); ``"mean"``: that divided by N."""
    invalid_action: str = "penalize"
    """``"penalize"`` (reward -penalty, page unchanged, go on) or ``"terminate"`` (reward 0, end)."""
    invalid_penalty: float = 0.1
    """Penalty of an invalid action under ``"penalize"``."""
    world: str = "default"
    """Generated world size: ``"default"`` (about 29,000 passages, 11,500 articles) or ``"small"``."""
    world_seed: int = 0
    """Seed of the generated world and its questions (the episode seed only draws questions)."""
    split: str = "all"
    """``"train"`` (90%), ``"test"`` (10%, never in train) or ``"all"``, as in ``MEM1-MultiQA-v0``."""
    corpus: str | None = None
    """Search-R1 corpus file (jsonl, plain or gzip) to browse instead of the world: one article per
    title, links where a passage mentions another title. Needs ``data``."""
    data: Any = None
    """FlashRAG QA files (as ``MEM1-MultiQA-v0``'s ``data``) asked over ``corpus``."""
    on_bad_row: str = "error"
    """Bad rows in ``data`` files: ``"error"`` or ``"skip"``."""

    def __post_init__(self) -> None:
        get_tags(self.protocol)  # raises naming protocol
        check_question_fields(self)
        check_str("corpus", self.corpus, optional=True)
        check_choice("on_bad_row", self.on_bad_row, ("error", "skip"))
        if self.data is not None:
            from mem1_envs.qa.data import parse_data_spec

            what = "a 'name=path,...' string, a {name: path} mapping or a list of paths"
            check_instance("data", self.data, (str, Mapping, list, tuple), what=what)
            parse_data_spec(self.data)  # raises naming the bad entry
        if (self.data is None) != (self.corpus is None):
            raise ValueError(
                f"corpus= and data= go together (a corpus to browse, questions to ask), got "
                f"corpus={self.corpus!r}, data={self.data!r}"
            )

    @property
    def data_key(self) -> object:
        """``data`` as a hashable (the source memo's key)."""
        if self.data is None or isinstance(self.data, str):
            return self.data
        from mem1_envs.qa.data import parse_data_spec

        return tuple(parse_data_spec(self.data).items())


class WebQATextEnv(BoundedMemoryEnv):
    """Multi-objective research by browsing a local wiki, with a bounded, MEM1-style context.

    ## Description
    An episode asks ``num_objectives`` questions at once whose answers are reached by following
    links ("In which city was the founder of the studio that produced The Vrask Tide born?":
    the film's article links its studio, the studio's its founder, whose article names the
    city). The wiki has one article per entity of the generated world (or per title of a
    Search-R1 corpus), a search page and results pages (:mod:`mem1_envs.webqa.pages`). Under the
    default ``mem1`` context the agent sees only the prompt, its last internal state and action
    and the current page: what it found must go into its state.

    ## Action Space
    ``Text``: one model response (:mod:`mem1_envs.webqa.actions`): ``<think>...</think>`` then
    one of ``<search>q</search>``, ``<click>label</click>``, ``<back></back>``,
    ``<scroll>down</scroll>``, ``<answer>a1; a2</answer>``. Any string is accepted.

    ## Observation Space
    ``Text``: the next context: the prompt (instructions and questions), then the turns the
    context policy keeps, each the state, the action and the page in ``<information>`` (with the
    turn hint). Pages are the canonical text of :mod:`mem1_envs.webqa.render_text`. Charset:
    printable ASCII on the generated world, the Basic Multilingual Plane with ``corpus``;
    other characters become ``?``.

    ## Rewards
    On an answer: the number of sub-answers matching a gold alias exactly after SQuAD
    normalisation (``reward_mode="sum"``) or that divided by N (``"mean"``), as in
    ``MEM1-MultiQA-v0``. Navigation earns 0. An invalid action earns ``-invalid_penalty`` and
    leaves the page unchanged (``"penalize"``), or earns 0 and ends the episode (``"terminate"``).

    Invalid actions (``info["invalid_action"]``): the protocol parser's errors (``not_a_string``,
    ``empty``, ``no_action``, ``unclosed_tag``) and the page model's (``too_long``,
    ``empty_query``, ``unknown_link``, ``no_back``, ``bad_scroll``, ``no_scroll``). Forged
    protocol tags in a response are removed (note ``forged_tag``), and none can appear in a page.

    ## Episode End
    Terminated on an answer, or on an invalid action under ``"terminate"``. Truncated (reward
    0) when ``max_turns`` turns pass without an answer.

    ## Info
    ``turn``, ``prompt``, ``context_tokens``, ``peak_context_tokens``, ``response_tokens``,
    ``dependency``, ``context_cut`` (base class), ``invalid_action``, ``parse_notes``,
    ``page`` (kind), ``page_state`` (``PageState.to_query()``), ``page_title``, ``searches``,
    ``clicks``, ``question_ids``, ``path_recall`` (share of the questions' path articles
    opened), and after an answer ``em`` and ``f1`` per objective and ``answer_count_ok``.

    ## Arguments
    See :class:`WebQAConfig`; e.g. ``gym.make("MEM1-WebQA-v0", num_objectives=4, memory="full")``.
    ``reset(options={"question_ids": [...]})`` pins the questions. ``source=`` gives a
    :class:`~mem1_envs.webqa.source.WebQASource` directly.

    ## Version History
    * v0: initial version.

    >>> import gymnasium as gym, mem1_envs
    >>> env = gym.make("MEM1-WebQA-v0", world="small", num_objectives=2)
    >>> observation, info = env.reset(seed=0)
    >>> observation.count("?;"), info["page"]
    (1, 'search')
    >>> observation, reward, terminated, truncated, info = env.step("<think></think><click>Nowhere</click>")
    >>> info["invalid_action"], reward
    ('unknown_link', -0.1)
    >>> observation, reward, terminated, truncated, info = env.step("<think></think><answer>a; b</answer>")
    >>> reward, terminated, info["em"]
    (0.0, True, [0.0, 0.0])
    """

    env_id: ClassVar[str] = "MEM1-WebQA-v0"
    config_class: ClassVar[type] = WebQAConfig
    # The wiki is rebuilt from the per-process memo (and the disk cache), not pickled with every env.
    _unpickled: ClassVar[tuple[str, ...]] = ("source", "wiki", "questions", "_question_index")

    def __init__(self, render_mode: str | None = None, source: WebQASource | None = None, **kwargs: Any):
        self._configure(render_mode, kwargs)
        check_instance("source", source, WebQASource, optional=True)
        self.tags = get_tags(self.config.protocol)
        self._given_source = source
        self._attach_source()
        self.observation_space = spaces.Text(proto.MAX_OBSERVATION_CHARS, charset=self.charset)
        self.action_space = spaces.Text(proto.DEFAULT_MAX_CHARS, charset=proto.ASCII_CHARSET)
        self._questions: list[Question] = []
        self._turns: list[Turn] = []

    # -- data -------------------------------------------------------------------------------
    def _attach_source(self) -> None:
        config = self.config
        self.source = self._given_source or load_webqa_source(
            config.world, config.world_seed, config.corpus, config.data_key, config.on_bad_row
        )
        self.wiki = self.source.wiki
        split = split_by_text if self.source.split_rule == "text" else split_questions
        self.questions = split(self.source.questions, config.split)
        self.charset = self.source.charset
        self._allowed = self.charset if self.charset == proto.ASCII_CHARSET else frozenset(self.charset)
        if len(self.questions) < config.num_objectives:
            raise ValueError(
                f"num_objectives must be <= {len(self.questions)} questions available, got {config.num_objectives}"
            )
        self._question_index = {q.qid: q for q in self.questions}

    def _reattach(self) -> None:
        self._attach_source()

    def _display(self, state: PageState, action: tuple[str, str] | None) -> str:
        """The text of the page of ``state``, reached by ``action`` (None: the episode's first page)."""
        return render_text(self.wiki, state)

    def _current_text(self) -> str:
        """The text of the page the episode is on, shown again after an invalid action."""
        return render_text(self.wiki, self.page)

    # -- episode ----------------------------------------------------------------------------
    def task_prompt(self) -> str:
        """Instructions, then the questions (``Answer the following questions: q1?; q2?``)."""
        instructions = INSTRUCTIONS.format(state=self.tags.state, obs=self.tags.observation)
        questions = "; ".join(q.text if q.text.endswith("?") else q.text + "?" for q in self._questions)
        return proto.to_charset(f"{instructions}\nAnswer the following questions: {questions}", self._allowed)

    @property
    def turn_limit(self) -> int:
        if self.config.max_turns is not None:
            return self.config.max_turns
        return turn_budget(self._questions)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self._questions = self._draw_questions(options or {})
        self._turns, self._turn = [], 0
        self._searches = self._clicks = 0
        self._opened: set[str] = set()
        self.page = PageState()
        self._display(self.page, None)  # the browser loads the start page
        self.start_episode(self.task_prompt(), "raise it or lower num_objectives")
        return self._observe(0, {})

    def _draw_questions(self, options: dict[str, Any]) -> list[Question]:
        pinned = options.get("question_ids")
        if pinned is None:
            picks = self.np_random.choice(len(self.questions), size=self.config.num_objectives, replace=False)
            return [self.questions[int(i)] for i in picks]
        check_instance("options['question_ids']", pinned, (list, tuple), what="a list of question ids")
        unknown = [qid for qid in pinned if not isinstance(qid, str) or qid not in self._question_index]
        if unknown or len(pinned) != self.config.num_objectives:
            raise ValueError(
                f"options['question_ids'] must name {self.config.num_objectives} known questions, "
                f"got {list(pinned)} (unknown: {unknown})"
            )
        return [self._question_index[qid] for qid in pinned]

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if not self._questions:
            raise RuntimeError("call reset() before step()")
        self._turn += 1
        n = self.config.num_objectives
        parsed = proto.parse_response(action, self.tags, expected_answers=n)
        response_tokens = self.count_tokens(action) if isinstance(action, str) else 0
        extra: dict[str, Any] = {"invalid_action": parsed.error, "parse_notes": list(parsed.notes)}
        reward, terminated = 0.0, False
        state_text = proto.wrap(self.tags.state, proto.to_charset(parsed.state, self._allowed))
        navigation = page_action(parsed)
        if parsed.kind == "answer":
            em, f1 = score_answers(list(parsed.answers), [q.golds for q in self._questions])
            reward = float(em.sum()) if self.config.reward_mode == "sum" else float(em.mean())
            extra.update(em=em.tolist(), f1=f1.tolist(), answer_count_ok=len(parsed.answers) == n)
            terminated = True
        elif navigation is not None:
            moved = transition(self.wiki, self.page, navigation)
            echo = proto.wrap(navigation[0], proto.to_charset(navigation[1][:MAX_ECHO_CHARS], self._allowed))
            if moved.error is None:
                self.page = moved.state
                self._count(navigation[0])
                page = self._page_text(self._display(self.page, navigation))
                self._turns.append(Turn(state_text, echo, page))
            else:
                extra["invalid_action"] = moved.error
                reward, terminated = self._invalid(state_text, echo, moved.error)
        else:
            reward, terminated = self._invalid(state_text, "", str(parsed.error))
        truncated = not terminated and self._turn >= self.turn_limit
        observation, info = self._observe(response_tokens, extra)
        return observation, reward, terminated, truncated, info

    def _count(self, verb: str) -> None:
        if verb == "search":
            self._searches += 1
        elif verb == "click":
            self._clicks += 1
        if self.page.kind == "article":
            self._opened.add(self.page.title)

    def _invalid(self, state_text: str, echo: str, error: str) -> tuple[float, bool]:
        """Apply the invalid-action rule: ``(reward, terminated)``; under "penalize" show the page again."""
        if self.config.invalid_action == "terminate":
            return 0.0, True
        # No literal tag here: an agent reading its last state block must not find one in a page.
        message = (
            f"Your last action was invalid ({error}). Write your state in the {self.tags.state} tag, then "
            "one action tag: search, click, back, scroll or answer. The page is unchanged."
        )
        page = self._page_text(self._current_text(), prefix=message + "\n")
        self._turns.append(Turn(state_text, echo, page))
        return -self.config.invalid_penalty, False

    def _page_text(self, text: str, prefix: str = "") -> str:
        """A page as an observation block: turn hint, page text (tags removed, charset, token cap)."""
        if "<" in text:  # only a corpus's text could hold a protocol tag
            text, _ = proto.remove_tags(text, self.tags)
        text = proto.to_charset(prefix + text, self._allowed)
        # The default counter's tokens hold at least one character each: a short page needs no cut.
        if self.config.token_counter is not None or len(text) > self.config.max_observation_tokens:
            text = truncate_to_tokens(text, self.config.max_observation_tokens, self.count_tokens)
        hint = proto.turn_hint(self.turn_limit - self._turn)
        return proto.wrap(self.tags.observation, f"{hint}\n\n{text}")

    def _observe(self, response_tokens: int, extra: dict[str, Any]) -> tuple[str, dict]:
        context, memory = self.observe(self.prompt, self._turns, response_tokens)
        path = {title for q in self._questions for title in getattr(q, "path", ())}
        info = {
            "turn": self._turn,
            **memory,
            "invalid_action": None,
            "parse_notes": [],
            "page": self.page.kind,
            "page_state": self.page.to_query(),
            "page_title": self.page.title,
            "searches": self._searches,
            "clicks": self._clicks,
            "question_ids": [q.qid for q in self._questions],
            "path_recall": len(path & self._opened) / len(path) if path else 0.0,
            **extra,
        }
        return context.text, info
