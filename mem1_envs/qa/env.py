"""``MEM1-MultiQA-v0``: N questions in one episode, a local search engine, a bounded context."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from gymnasium import spaces

from mem1_envs import protocol as proto
from mem1_envs.base_env import BoundedMemoryEnv
from mem1_envs.memory import Turn, check_memory, make_token_counter, truncate_to_tokens
from mem1_envs.qa.data import compose_consecutive, split_by_text
from mem1_envs.qa.remote import RetrievalServiceError
from mem1_envs.qa.sources import QASource, load_source, world_config
from mem1_envs.qa.world import QUESTION_KINDS, Question
from mem1_envs.rewards import score_answers
from mem1_envs.search import SearchEngine
from mem1_envs.validation import (
    check_choice,
    check_float,
    check_instance,
    check_int,
    check_items,
    check_str,
)

INSTRUCTIONS = (
    "You will answer several questions by searching a knowledge source. Every turn, first write "
    "your internal state between <{state}> and </{state}>: everything you still need from what you "
    "know and what you just read, because older turns are removed from your context. Then either "
    "search with <{search}> query </{search}>, and the results will come between <{obs}> and "
    "</{obs}>, or give all answers at once, in question order, separated by semicolons: "
    "<{answer}> answer 1; answer 2 </{answer}>."
)


def check_question_fields(config: Any) -> None:
    """Check the fields every question-answering env config shares (MultiQA, WebQA): objectives,
    turns, context policy and budgets, reward and invalid-action rules, world and split. Each
    check raises a one-line error naming its field."""
    check_int("num_objectives", config.num_objectives, minimum=1)
    check_int("max_turns", config.max_turns, minimum=1, optional=True)
    check_memory(config.memory)
    check_int("window", config.window, minimum=1)
    check_int("max_context_tokens", config.max_context_tokens, minimum=1)
    check_int("max_observation_tokens", config.max_observation_tokens, minimum=1)
    make_token_counter(config.token_counter)  # raises naming token_counter
    check_choice("reward_mode", config.reward_mode, ("sum", "mean"))
    check_choice("invalid_action", config.invalid_action, ("terminate", "penalize"))
    check_float("invalid_penalty", config.invalid_penalty, minimum=0)
    check_str("world", config.world)
    world_config(config.world)  # raises naming world
    check_int("world_seed", config.world_seed, minimum=0)
    check_choice("split", config.split, ("train", "test", "all"))


@dataclass(frozen=True)
class MultiQAConfig:
    """Arguments of ``MEM1-MultiQA-v0`` (all keyword arguments of ``gym.make``)."""

    num_objectives: int = 1
    """How many questions one episode asks (the answer lists them in order, ``;``-separated)."""
    max_turns: int | None = None
    """Turn limit; None means ``2 * num_objectives + 2`` (one search per hop plus slack)."""
    top_k: int = 3
    """Documents returned per search (MEM1: 3)."""
    protocol: str = "mem1"
    """Tag set: ``"mem1"`` (<think>/<search>/<answer>/<information>) or ``"paper"`` (<IS>/<query>/...)."""
    memory: Any = "mem1"
    """Context policy: ``"mem1"`` (bounded), ``"window"`` (last ``window`` turns), ``"full"``, another
    registered name or a :class:`~mem1_envs.memory.ContextPolicy` instance."""
    window: int = 3
    """Turns kept by the ``window`` policy."""
    max_context_tokens: int = 2048
    """Token budget of the whole context under ``mem1`` (prompt included)."""
    max_observation_tokens: int = 1000
    """Cap on one observation's tokens (MEM1: 1000); longer document lists are cut."""
    token_counter: Any = None
    """None (the default regex counter), a callable ``str -> int`` or a tokenizer with ``encode``."""
    reward_mode: str = "sum"
    """``"sum"``: number of exactly matched answers (MEM1); ``"mean"``: that divided by N."""
    invalid_action: str = "terminate"
    """``"terminate"`` (MEM1: reward 0, episode over) or ``"penalize"`` (reward -penalty, go on)."""
    invalid_penalty: float = 0.1
    """Penalty of an invalid action under ``"penalize"``."""
    world: str = "default"
    """Generated world size: ``"default"`` (about 29,000 passages) or ``"small"``."""
    world_seed: int = 0
    """Seed of the generated world (the episode seed only draws questions)."""
    split: str = "all"
    """Questions to draw from: ``"train"`` (90%), ``"test"`` (10%, never in train) or ``"all"``.
    World questions split by position; ``data`` questions by a hash of their text, so a question
    that appears twice is never on both sides (use ``"all"`` with FlashRAG's own split files)."""
    question_kinds: tuple[str, ...] | None = None
    """Ask only questions of these kinds (None: all): ``"single"`` (one hop), ``"bridge"`` (two
    hops, the second needs the first's answer), ``"comparison"`` (one fact of two entities);
    ``data`` questions are all ``"single"``. A curriculum knob: the split is drawn first, so a
    kind filter never moves a question across it."""
    question_ids: tuple[str, ...] | None = None
    """Ask only these questions (ids from the split; None: all of it), e.g. to hold some training
    questions back from a warm start for RL. An id outside the split is an error."""
    data: Any = None
    """FlashRAG QA files to ask instead of the world's questions: ``"nq=path,hotpotqa=path"``, a
    mapping ``{name: path}`` or one path; jsonl (plain or gzip) or parquet (:mod:`mem1_envs.qa.data`)."""
    corpus: str | None = None
    """Search-R1 corpus file (``{"id", "contents"}`` jsonl, plain or gzip) to search; without
    ``index`` it is BM25-indexed into the cache on first use (keyed by its fingerprint)."""
    index: str | None = None
    """Index folder made by ``python -m mem1_envs build-index`` (BM25 or dense); with ``corpus``
    too, the index must have been built from that corpus (fingerprint check)."""
    search: str | None = None
    """URL of a Search-R1 ``/retrieve`` server to search instead, e.g.
    ``"http://127.0.0.1:8000/retrieve"`` (ours: ``python -m mem1_envs serve-retriever``)."""
    compose: str = "random"
    """How an episode's N questions are picked: ``"random"`` (N distinct questions of the split,
    any source) or ``"consecutive"`` (MEM1's rule: N consecutive questions of one source file)."""
    on_bad_row: str = "error"
    """Bad rows in ``data`` files: ``"error"`` (names file and line) or ``"skip"`` (skipped, counted)."""
    on_search_error: str = "raise"
    """A search that fails mid-episode (a ``search`` server down after the client's retries):
    ``"raise"`` (``RetrievalServiceError`` from ``step``; call ``reset`` after) or ``"truncate"``
    (the episode ends truncated, reward 0, the error in ``info["search_error"]``)."""

    def __post_init__(self) -> None:
        # Every field is checked here, at gym.make time, with a message naming it
        # (tests/test_env_arguments.py fails for a field that is not).
        check_int("top_k", self.top_k, minimum=1)
        proto.get_tag_set(self.protocol)  # raises naming protocol
        check_question_fields(self)
        check_items(
            "question_kinds", self.question_kinds, lambda n, v: check_choice(n, v, QUESTION_KINDS), "kind"
        )
        check_items("question_ids", self.question_ids, check_str, "question id")
        check_choice("compose", self.compose, ("random", "consecutive"))
        check_choice("on_bad_row", self.on_bad_row, ("error", "skip"))
        check_choice("on_search_error", self.on_search_error, ("raise", "truncate"))
        self._check_data_arguments()

    def _check_data_arguments(self) -> None:
        for name in ("corpus", "index", "search"):
            check_str(name, getattr(self, name), optional=True)
        if self.search is not None and not self.search.startswith(("http://", "https://")):
            raise ValueError(f"search must be an http(s) URL of a /retrieve endpoint, got {self.search!r}")
        if self.search is not None and (self.index is not None or self.corpus is not None):
            raise ValueError(
                f"search={self.search!r} names a retrieval server; do not also give index= or corpus= "
                f"(got index={self.index!r}, corpus={self.corpus!r})"
            )
        if self.data is not None:
            from mem1_envs.qa.data import parse_data_spec

            what = "a 'name=path,...' string, a {name: path} mapping or a list of paths"
            check_instance("data", self.data, (str, Mapping, list, tuple), what=what)
            parse_data_spec(self.data)  # raises naming the bad entry
            if self.corpus is None and self.index is None and self.search is None:
                raise ValueError(
                    f"data={self.data!r} needs something to search: corpus=, index= or search= "
                    "(the generated world's passages do not answer real questions)"
                )

    @property
    def turn_limit(self) -> int:
        return self.max_turns if self.max_turns is not None else 2 * self.num_objectives + 2


def split_questions(questions: list[Question], split: str) -> list[Question]:
    """Every 10th question (by position) is a test question; the others are train questions."""
    if split == "all":
        return questions
    return [q for i, q in enumerate(questions) if (i % 10 == 9) == (split == "test")]


class MultiQAEnv(BoundedMemoryEnv):
    """Multi-objective retrieval QA with a bounded, MEM1-style context.

    ## Description
    An episode asks ``num_objectives`` questions about a fictional world at once ("Answer the
    following questions: q1?; q2?; ..."). Each turn the agent writes its internal state and
    either searches the world's passages or answers all questions. Under the default ``mem1``
    context policy the agent then sees only the prompt, its last internal state and action and
    the last search results: it must consolidate what it learnt into its state.

    ## Action Space
    ``Text``: one model response, e.g. ``<think>...</think><search>query</search>`` or
    ``<think>...</think><answer>a1; a2</answer>``. Parsing follows :mod:`mem1_envs.protocol`;
    any string is accepted (characters outside the charset too).

    ## Observation Space
    ``Text``: the agent's whole context for the next turn, built by the context policy
    (:mod:`mem1_envs.memory`). Charset: printable ASCII on the generated world; with ``data``,
    ``corpus``, ``index`` or ``search`` (real, unicode text) the printable characters of Unicode's
    Basic Multilingual Plane (:func:`mem1_envs.qa.sources.wide_charset`). Characters outside the
    charset are replaced by ``?``.

    ## Rewards
    On an answer: the number of sub-answers that match a gold alias exactly after SQuAD
    normalisation (``reward_mode="sum"``, MEM1's reward) or that number divided by N (``"mean"``).
    Answers are scored by position; missing ones score 0, extra ones are ignored. Searches
    earn 0. An invalid action earns 0 and ends the episode (``invalid_action="terminate"``) or
    earns ``-invalid_penalty`` and the episode goes on (``"penalize"``).

    ## Episode End
    Terminated on an answer, or on an invalid action under ``"terminate"``. Truncated when
    ``max_turns`` turns pass without an answer, or when a search fails under
    ``on_search_error="truncate"`` (under the default ``"raise"``, ``step`` raises
    ``RetrievalServiceError`` instead and the episode must be reset).

    ## Info
    ``turn``, ``prompt`` (the task prompt every observation of the episode starts with),
    ``context_tokens`` (this observation), ``peak_context_tokens``,
    ``response_tokens``, ``dependency`` (sum over turns of context x response tokens),
    ``context_cut`` (what the budget cut), ``invalid_action`` (None or the parser's error),
    ``parse_notes``, ``searches``, ``support_recall`` (share of the questions' supporting
    passages the searches retrieved; 0 for ``data`` questions, which name no supporting
    passages), and after an answer ``em`` and ``f1`` per objective and ``answer_count_ok``;
    ``search_error`` when a failed search truncated the episode.

    ## Vector envs
    ``gym.vector.SyncVectorEnv`` works as is; ``AsyncVectorEnv`` needs ``shared_memory=False``
    (Gymnasium's shared-memory path garbles ``Text`` observations across processes).

    ## Arguments
    See :class:`MultiQAConfig`; e.g. ``gym.make("MEM1-MultiQA-v0", num_objectives=4, memory="full")``.
    ``reset(options={"question_ids": [...]})`` pins the questions of an episode.

    ## Version History
    * v0: initial version.

    >>> import gymnasium as gym, mem1_envs
    >>> env = gym.make("MEM1-MultiQA-v0", world="small", num_objectives=2)
    >>> observation, info = env.reset(seed=0)
    >>> observation.count("?;")
    1
    >>> observation, reward, terminated, truncated, info = env.step("<think></think><answer>a; b</answer>")
    >>> reward, terminated, info["em"]
    (0.0, True, [0.0, 0.0])
    """

    env_id: ClassVar[str] = "MEM1-MultiQA-v0"
    config_class: ClassVar[type] = MultiQAConfig
    # The corpus and index are reloaded from the cache, not pickled with every env.
    _unpickled: ClassVar[tuple[str, ...]] = ("questions", "engine", "_question_index", "_groups", "_allowed")

    def __init__(self, render_mode: str | None = None, source: QASource | None = None, **kwargs: Any):
        self._configure(render_mode, kwargs)
        check_instance("source", source, QASource, optional=True)
        self.tags = proto.get_tag_set(self.config.protocol)
        self._source = source
        self._attach_source()
        self.observation_space = spaces.Text(proto.MAX_OBSERVATION_CHARS, charset=self.charset)
        # Longer responses are accepted too; the parser reads their first DEFAULT_MAX_CHARS.
        self.action_space = spaces.Text(proto.DEFAULT_MAX_CHARS, charset=proto.ASCII_CHARSET)
        self._questions: list[Question] = []
        self._turns: list[Turn] = []

    # -- data -------------------------------------------------------------------------------
    def _attach_source(self) -> None:
        config = self.config
        source = self._source or load_source(
            config.data,
            config.corpus,
            config.index,
            config.search,
            config.world,
            config.world_seed,
            config.on_bad_row,
        )
        split = split_by_text if source.split_rule == "text" else split_questions
        self.questions = split(source.questions, config.split)
        if config.question_kinds is not None:
            self.questions = [q for q in self.questions if q.kind in config.question_kinds]
        if config.question_ids is not None:
            known = {q.qid for q in self.questions}
            unknown = [qid for qid in config.question_ids if qid not in known]
            if unknown:
                raise ValueError(
                    f"question_ids must be ids of the {config.split!r} split's questions"
                    f"{' of kinds ' + str(config.question_kinds) if config.question_kinds else ''}, "
                    f"got unknown ids {unknown[:5]}"
                )
            wanted = set(config.question_ids)
            self.questions = [q for q in self.questions if q.qid in wanted]
        self.engine: SearchEngine = source.engine
        # The ASCII default keeps to_charset's fast path; a wide charset is checked as a frozenset.
        self.charset = source.charset
        self._allowed = source.charset if source.charset == proto.ASCII_CHARSET else frozenset(source.charset)
        if len(self.questions) < config.num_objectives:
            raise ValueError(
                f"num_objectives must be <= {len(self.questions)} questions available, got {config.num_objectives}"
            )
        self._question_index = {q.qid: q for q in self.questions}
        self._groups = (
            compose_consecutive(self.questions, config.num_objectives)
            if config.compose == "consecutive"
            else []
        )
        if config.compose == "consecutive" and not self._groups:
            raise ValueError(
                f"compose='consecutive' needs a source with >= num_objectives={config.num_objectives} "
                f"questions in the {config.split!r} split"
            )

    def _reattach(self) -> None:
        self._attach_source()

    # -- episode ----------------------------------------------------------------------------
    def task_prompt(self) -> str:
        """The prompt of the current questions: instructions, then the questions."""
        tags = self.tags
        instructions = INSTRUCTIONS.format(
            state=tags.state,
            search=tags.tag_for("search"),
            answer=tags.tag_for("answer"),
            obs=tags.observation,
        )
        questions = "; ".join(q.text if q.text.endswith("?") else q.text + "?" for q in self._questions)
        return proto.to_charset(f"{instructions}\nAnswer the following questions: {questions}", self._allowed)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self._questions = self._draw_questions(options or {})
        self._turns, self._turn = [], 0
        self._retrieved: set[str] = set()
        self._searches: list[str] = []
        self.start_episode(self.task_prompt(), "raise it or lower num_objectives")
        return self._observe(response_tokens=0, extra={})

    def _draw_questions(self, options: dict[str, Any]) -> list[Question]:
        pinned = options.get("question_ids")
        if pinned is None and self._groups:
            return list(self._groups[int(self.np_random.integers(len(self._groups)))])
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
        state = proto.wrap(self.tags.state, proto.to_charset(parsed.state, self._allowed))
        if parsed.kind == "search":
            query = proto.to_charset(parsed.content, self._allowed)
            try:
                observation = self._search(query)
            except RetrievalServiceError as error:
                if self.config.on_search_error == "raise":
                    self._questions = []  # this episode cannot go on: step() now asks for reset()
                    raise
                observation = proto.wrap(self.tags.observation, f"Search failed: {error}")
                extra["search_error"] = str(error)
            self._turns.append(Turn(state, proto.wrap(self.tags.tag_for("search"), query), observation))
        elif parsed.kind == "answer":
            em, f1 = score_answers(list(parsed.answers), [q.golds for q in self._questions])
            reward = float(em.sum()) if self.config.reward_mode == "sum" else float(em.mean())
            extra.update(em=em.tolist(), f1=f1.tolist(), answer_count_ok=len(parsed.answers) == n)
            terminated = True
        elif self.config.invalid_action == "terminate":
            terminated = True
        else:
            reward = -self.config.invalid_penalty
            message = (
                f"Your last response was invalid ({parsed.error}). Write <{self.tags.state}>state"
                f"</{self.tags.state}> then <{self.tags.tag_for('search')}>query"
                f"</{self.tags.tag_for('search')}> or <{self.tags.tag_for('answer')}>answers"
                f"</{self.tags.tag_for('answer')}>."
            )
            self._turns.append(Turn(state, "", proto.wrap(self.tags.observation, self._hint() + message)))
        truncated = not terminated and (self._turn >= self.config.turn_limit or "search_error" in extra)
        observation, info = self._observe(response_tokens, extra)
        return observation, reward, terminated, truncated, info

    def _hint(self) -> str:
        hint = proto.turn_hint(self.config.turn_limit - self._turn)
        return hint + "\n\n" if hint else ""

    def _search(self, query: str) -> str:
        hits = self.engine.search([query], self.config.top_k)[0] if query.strip() else []
        self._searches.append(query)
        self._retrieved.update(hit.doc_id for hit in hits)
        documents = proto.render_documents([(hit.title, hit.text) for hit in hits]) or "No documents found."
        documents = proto.to_charset(documents, self._allowed)
        documents = truncate_to_tokens(documents, self.config.max_observation_tokens, self.count_tokens)
        # MEM1's block, "\n\n" included on the last turn where the hint is empty.
        hint = proto.turn_hint(self.config.turn_limit - self._turn)
        return proto.wrap(self.tags.observation, f"{hint}\n\n{documents}")

    def _observe(self, response_tokens: int, extra: dict[str, Any]) -> tuple[str, dict]:
        context, memory = self.observe(self.prompt, self._turns, response_tokens)
        support = {d for q in self._questions for d in q.support_ids}
        info = {
            "turn": self._turn,
            **memory,
            "invalid_action": None,
            "parse_notes": [],
            "searches": len(self._searches),
            "support_recall": len(support & self._retrieved) / len(support) if support else 0.0,
            "question_ids": [q.qid for q in self._questions],
            **extra,
        }
        return context.text, info
