"""The Gymnasium wrappers: tokenised observations, candidate actions, history modes, memory stats."""

from __future__ import annotations

import functools
import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import mem1_envs  # noqa: F401
from mem1_envs.memory import count_tokens
from wrappers import (
    ByteTokenizer,
    CandidateActions,
    HistoryMode,
    MultiQACandidates,
    RecordMemoryStatistics,
    TokenizeObservation,
    WordTokenizer,
    default_tokenizer,
)

ENV_ID = "MEM1-MultiQA-v0"


def make_text(num_objectives: int = 1, **kwargs) -> gym.Env:
    return gym.make(ENV_ID, world="small", num_objectives=num_objectives, **kwargs)


def make_wrapped(num_objectives: int = 1, max_length: int = 256) -> gym.Env:
    env = CandidateActions(make_text(num_objectives), num_candidates=12)
    return TokenizeObservation(env, max_length=max_length)


def greedy(mask: np.ndarray) -> int:
    """Search the next fact while there is one, then answer from the state."""
    return 1 if mask[1] else 0


# -- tokenizer -------------------------------------------------------------------------------
def test_word_tokenizer_counts_like_the_env_and_knows_the_world():
    env = make_text(2)
    tokenizer = default_tokenizer(env)
    observation, info = env.reset(seed=4)
    for action in (
        "<think></think><search>born</search>",
        "<think>x</think><search>city population</search>",
    ):
        ids = tokenizer.encode(observation)
        assert len(ids) == count_tokens(observation) == info["context_tokens"]
        assert tokenizer.unk_token_id not in ids  # every word of the world is in the vocabulary
        observation, _, _, _, info = env.step(action)
    observation, _ = env.reset(seed=5)
    assert tokenizer.decode(tokenizer.encode(observation)).split() == tokenizer.tokenize(observation)


def test_word_tokenizer_rejects_bad_vocabularies():
    with pytest.raises(ValueError, match="must start with"):
        WordTokenizer(["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        WordTokenizer(["[PAD]", "[UNK]", "a", "a"])
    with pytest.raises(ValueError, match="max_size must be >= 3 or None, got 2"):
        WordTokenizer.from_texts(["a b"], max_size=2)
    capped = WordTokenizer.from_texts(["a a a b b c"], max_size=4)
    assert capped.vocabulary == ["[PAD]", "[UNK]", "a", "b"] and capped.encode("c") == [1]


def test_word_tokenizer_export_gives_the_same_ids():
    pytest.importorskip("tokenizers")
    env = make_text(2)
    ours = default_tokenizer(env)
    exported = ours.to_tokenizers()
    observation, _ = env.reset(seed=1)
    observation, *_ = env.step("<think>Q1.a=x | next=Q1.b#1</think><search>born</search>")
    assert exported.encode(observation).ids == ours.encode(observation)


def test_byte_tokenizer_round_trips():
    tokenizer = ByteTokenizer()
    assert tokenizer.decode(tokenizer.encode("Zoë <think>")) == "Zoë <think>"
    assert max(tokenizer.encode("\xff")) < tokenizer.vocab_size


# -- TokenizeObservation ---------------------------------------------------------------------
def test_tokenize_observation_shapes_mask_and_truncation_sides():
    text = make_text(1)
    observation, _ = text.reset(seed=0)
    observation, *_ = text.step("<think></think><search>born</search>")
    full = default_tokenizer(text).encode(observation)
    assert len(full) > 64
    for side, expected in (("left", full[-64:]), ("right", full[:64])):
        env = TokenizeObservation(make_text(1), max_length=64, truncation_side=side)
        env.reset(seed=0)
        tokens, _, _, _, info = env.step("<think></think><search>born</search>")
        assert env.observation_space.contains(tokens)
        assert tokens["input_ids"].tolist() == expected
        assert tokens["attention_mask"].all() and info["tokens_cut"] == len(full) - 64
    env = TokenizeObservation(make_text(1), max_length=1024)
    tokens, info = env.reset(seed=0)
    length = info["context_tokens"]
    assert tokens["attention_mask"].tolist() == [1] * length + [0] * (1024 - length)
    assert (tokens["input_ids"][length:] == 0).all() and info["tokens_cut"] == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_length": 0}, "max_length must be an int >= 1, got 0"),
        ({"max_length": 2.5}, "max_length must be an int >= 1, got 2.5"),
        ({"truncation_side": "middle"}, r"truncation_side must be one of .* got 'middle'"),
    ],
)
def test_tokenize_observation_validates_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TokenizeObservation(make_text(1), **kwargs)


def test_tokenize_observation_needs_text_and_a_tokenizer():
    with pytest.raises(TypeError, match="Text observation space"):
        TokenizeObservation(gym.make("CartPole-v1"))
    with pytest.raises(TypeError, match="tokenizer must be"):
        TokenizeObservation(make_text(1), tokenizer=object())


def test_tokenize_observation_takes_a_hugging_face_tokenizer():
    transformers = pytest.importorskip("transformers")
    env = make_text(1)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=default_tokenizer(env).to_tokenizers())
    fast.pad_token = "[PAD]"
    ours = TokenizeObservation(make_text(1), max_length=200)
    theirs = TokenizeObservation(make_text(1), tokenizer=fast, max_length=200)
    assert theirs.vocab_size == ours.vocab_size
    np.testing.assert_array_equal(ours.reset(seed=2)[0]["input_ids"], theirs.reset(seed=2)[0]["input_ids"])


# -- CandidateActions ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("num_objectives", "memory"), [(1, "mem1"), (2, "mem1"), (3, "mem1"), (3, "window"), (3, "full")]
)
def test_candidates_contain_a_winning_line(num_objectives, memory):
    env = CandidateActions(make_text(num_objectives, memory=memory), num_candidates=12)
    total = 0.0
    for seed in range(15):
        _, info = env.reset(seed=seed)
        done = False
        while not done:
            assert info["action_mask"][0]  # "answer from the state" is always there
            _, reward, terminated, truncated, info = env.step(greedy(env.action_masks()))
            total += reward
            done = terminated or truncated
    assert total / 15 >= 0.9 * num_objectives


def test_candidates_never_read_the_hidden_answers():
    """Every answer a candidate gives is "unknown" or text of the observation it was built from."""
    env = CandidateActions(make_text(2), num_candidates=16)
    rng = np.random.default_rng(0)
    answers_seen = 0
    for seed in range(20):
        observation, _ = env.reset(seed=seed)
        done = False
        while not done:
            for candidate in filter(None, env.candidates):
                if candidate.kind == "answer":
                    parts = candidate.label.removeprefix("answer: ").split("; ")
                    assert all(part == "unknown" or part in observation for part in parts), candidate.label
                    answers_seen += sum(part != "unknown" for part in parts)
            # The generator is a function of the observation text alone.
            again = MultiQACandidates(16)(observation)
            assert [c and c.text for c in again] == [c and c.text for c in env.candidates]
            mask = env.action_masks()
            action = greedy(mask) if rng.random() < 0.7 else int(rng.choice(np.flatnonzero(mask)))
            observation, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    assert answers_seen > 100


def test_candidate_slots_follow_the_layout():
    env = CandidateActions(make_text(1), num_candidates=12)
    env.reset(seed=0)  # a bridge question: the university attended by someone, then its founding year
    kinds = [c and c.kind for c in env.candidates]
    assert kinds[0] == "answer" and kinds[1] == "search" and kinds[4] == "search"
    env.step(1)
    assert "Q1.a=Torvaemtesk" in env.candidates[0].text  # the first hop, consolidated into the state
    labels = [c.label for c in env.candidates[7:] if c is not None]
    assert labels[0] == "answer: Torvaemtesk" and all(label.startswith("answer: ") for label in labels)
    assert "answer: Geirkrourk Group" in labels  # a span of the documents just read


@pytest.mark.parametrize("bad_action", [11, 99, -1, "x", 1.5, None])
def test_bad_candidate_actions_are_reported_not_raised(bad_action):
    env = CandidateActions(make_text(1), num_candidates=12)
    env.reset(seed=0)
    assert not env.action_masks()[11]
    _, reward, terminated, _, info = env.step(bad_action)
    assert info["candidate"] is None and info["invalid_action"] == "empty"
    assert reward == 0.0 and terminated  # MultiQA's default rule for an invalid response


def test_candidate_actions_validates_arguments():
    with pytest.raises(ValueError, match="num_candidates must be an int >= 4, got 3"):
        CandidateActions(make_text(1), num_candidates=3)
    with pytest.raises(TypeError, match="generator must be None or a callable, got 5"):
        CandidateActions(make_text(1), generator=5)
    with pytest.raises(TypeError, match="Text observation and action spaces"):
        CandidateActions(gym.make("CartPole-v1"))
    env = CandidateActions(make_text(1), num_candidates=4, generator=lambda observation: [None])
    with pytest.raises(ValueError, match="generator must return 4 slots, got 1"):
        env.reset(seed=0)


def test_candidates_follow_the_paper_protocol():
    env = CandidateActions(make_text(1, protocol="paper"), num_candidates=8)
    env.reset(seed=1)
    assert env.candidates[1].text.startswith("<IS>") and "<query>" in env.candidates[1].text
    env.step(1)
    _, reward, *_ = env.step(0)
    assert reward == 1.0


# -- HistoryMode -----------------------------------------------------------------------------
def test_history_mode_switches_a_running_env():
    env = HistoryMode(make_text(1), mode="window", window=2)
    env.reset(seed=0)
    for query in ("a", "b", "c"):
        observation, *_, info = env.step(f"<think></think><search>{query} born</search>")
    assert observation.count("[HINT]") == 2 and info["history_mode"] == "window"
    env.set_mode("full")
    observation, *_ = env.step("<think></think><answer>x</answer>")
    assert observation.count("[HINT]") == 3


def test_history_mode_validates_arguments():
    with pytest.raises(ValueError, match=r"mode must be one of .* got 'all'"):
        HistoryMode(make_text(1), mode="all")
    with pytest.raises(ValueError, match="window must be an int >= 1 or None, got 0"):
        HistoryMode(make_text(1), mode="window", window=0)
    with pytest.raises(TypeError, match="set_context_policy"):
        HistoryMode(gym.make("CartPole-v1"))


# -- RecordMemoryStatistics ------------------------------------------------------------------
def play(env: gym.Env, seed: int) -> dict:
    env.reset(seed=seed)
    for query in ("born", "city population", "university founded"):
        env.step(f"<think>some state</think><search>{query}</search>")
    *_, info = env.step("<think></think><answer>x</answer>")
    return info


def test_memory_statistics_match_the_env_and_rank_the_policies():
    per_mode = {}
    for mode in ("mem1", "full"):
        env = RecordMemoryStatistics(HistoryMode(make_text(1), mode=mode), buffer_length=2)
        for seed in range(3):
            info = play(env, seed)
        stats = info["episode_memory"]
        assert stats["peak_context_tokens"] == info["peak_context_tokens"]
        assert stats["dependency"] == info["dependency"] and stats["turns"] == 4
        assert len(env.episodes) == 2 and set(env.summary()) >= {"mean_context_tokens", "dependency"}
        per_mode[mode] = env.summary()
    assert per_mode["full"]["peak_context_tokens"] > per_mode["mem1"]["peak_context_tokens"]
    assert per_mode["full"]["dependency"] > per_mode["mem1"]["dependency"]


def test_memory_statistics_validates_arguments():
    with pytest.raises(ValueError, match="buffer_length must be an int >= 1, got 0"):
        RecordMemoryStatistics(make_text(1), buffer_length=0)
    assert RecordMemoryStatistics(make_text(1)).summary() == {}


# -- Gymnasium compliance --------------------------------------------------------------------
WRAPPED = {
    "tokenize": lambda: TokenizeObservation(make_text(1), max_length=128),
    "candidates": lambda: CandidateActions(make_text(2)),
    "both": lambda: make_wrapped(2),
    "history+stats": lambda: RecordMemoryStatistics(HistoryMode(make_text(1), mode="full")),
}


@pytest.mark.parametrize("name", sorted(WRAPPED))
def test_gymnasium_check_env_passes_on_wrapped_envs(name):
    with pytest.warns(UserWarning):  # Gymnasium warns that a wrapped env is being checked
        gym_check_env(WRAPPED[name](), skip_render_check=True)


@pytest.mark.parametrize("name", sorted(WRAPPED))
def test_spec_rebuilds_the_wrapper_stack(name):
    env = WRAPPED[name]()
    rebuilt = gym.make(env.spec)
    assert [type(w).__name__ for w in _stack(rebuilt)] == [type(w).__name__ for w in _stack(env)]
    first, _ = env.reset(seed=3)
    second, _ = rebuilt.reset(seed=3)
    assert pickle.dumps(first) == pickle.dumps(second)


def _stack(env: gym.Env) -> list[gym.Env]:
    out = [env]
    while isinstance(out[-1], gym.Wrapper):
        out.append(out[-1].env)
    return out


def test_wrapped_env_pickles_and_steps_the_same():
    env = make_wrapped(1)
    env.reset(seed=5)
    clone = pickle.loads(pickle.dumps(env))
    a = env.step(1)
    b = clone.step(1)
    np.testing.assert_array_equal(a[0]["input_ids"], b[0]["input_ids"])
    assert a[1:4] == b[1:4]


# -- vector envs -----------------------------------------------------------------------------
def _run_vector(envs: gym.vector.VectorEnv, wrapped: bool) -> None:
    observations, infos = envs.reset(seed=0)
    for _ in range(6):
        if wrapped:
            masks = np.stack(envs.call("action_masks"))
            assert masks.shape == (4, 12) and masks[:, 0].all()
            actions = np.array([greedy(mask) for mask in masks])
        else:
            actions = tuple("<think></think><search>born</search>" for _ in range(4))
        observations, rewards, terminated, truncated, infos = envs.step(actions)
        assert rewards.shape == (4,) and "context_tokens" in infos
    if wrapped:
        assert observations["input_ids"].shape == (4, 256)
    else:
        assert len(observations) == 4 and all(isinstance(o, str) for o in observations)
    envs.close()


@pytest.mark.parametrize("wrapped", [False, True], ids=["text", "wrapped"])
def test_sync_vector_env(wrapped):
    make = functools.partial(make_wrapped, 1) if wrapped else functools.partial(make_text, 1)
    _run_vector(gym.vector.SyncVectorEnv([make] * 4), wrapped)


@pytest.mark.slow
@pytest.mark.parametrize("wrapped", [False, True], ids=["text", "wrapped"])
def test_async_vector_env_spawn(wrapped):
    make = functools.partial(make_wrapped, 1) if wrapped else functools.partial(make_text, 1)
    _run_vector(gym.vector.AsyncVectorEnv([make] * 4, context="spawn", shared_memory=wrapped), wrapped)


# -- the shop --------------------------------------------------------------------------------
SHOP_ID = "MEM1-WebShop-v0"


def make_shop(**kwargs) -> gym.Env:
    return gym.make(SHOP_ID, n_products=500, **kwargs)


@pytest.mark.parametrize(
    "kwargs", [{}, {"instruction": "first"}, {"n_items": 2}], ids=["one", "first", "list"]
)
def test_shop_candidates_hold_every_scripted_action(kwargs):
    """The scripted shopper (reads observations only) always finds its action among the candidates."""
    import re

    from agents.scripted_shop import WebShopScriptedAgent

    env = CandidateActions(make_shop(**kwargs), num_candidates=24)
    agent = WebShopScriptedAgent()
    total = 0.0
    for seed in range(6):
        observation, info = env.reset(seed=seed)
        agent.reset(seed=seed)
        done = False
        while not done:
            wanted = re.search(r"<answer>(.*)</answer>", agent.act(observation, info)).group(1)
            labels = [c and c.label for c in env.candidates]
            assert wanted in labels
            observation, reward, terminated, truncated, info = env.step(labels.index(wanted))
            assert info["invalid_action"] is None and info["candidate"] == wanted
            total += reward
            done = terminated or truncated
    assert total / 6 >= 0.8


def test_shop_candidates_follow_the_page():
    env = CandidateActions(make_shop(), num_candidates=24)
    env.reset(seed=0)
    assert [c and c.kind for c in env.candidates[:4]] == ["search", "search", None, None]
    assert not env.action_masks()[4:].any()  # the start page has nothing to click
    env.step(0)
    labels = [c.label for c in env.candidates if c is not None]
    assert "click[back to search]" in labels and "click[next page]" in labels
    assert not any(label.startswith("search[") for label in labels)  # no search box on results
    assert all(c.text.startswith("<summary>Instruction: Find me") for c in env.candidates if c is not None)


@pytest.mark.parametrize("kwargs", [{"instruction": "first"}, {"instruction": "first", "n_items": 2}, {}])
def test_shop_candidates_read_the_instruction_from_the_task_prompt_every_turn(kwargs):
    # Under instruction="first" only the first context shows the instruction; the generator
    # reads it from the task prompt at reset (it used to take "...dollars</summary>" out of the
    # memory from the second turn on).
    env = CandidateActions(make_shop(**kwargs), num_candidates=20)
    for seed in range(2):
        observation, info = env.reset(seed=seed)
        goal = env.unwrapped.goal.instruction
        searched = False
        for turn in range(8):
            assert env.generator.instruction == goal, (seed, turn)
            memories = {c.text.partition("</summary>")[0] for c in env.candidates if c is not None}
            assert memories == {f"<summary>Instruction: {goal}"}, (seed, turn)
            if turn and "first" in kwargs.values():
                assert goal not in observation.partition("<summary>")[0]  # not in the prompt
            labels = [c and c.label for c in env.candidates]
            searched |= labels[0] is not None and turn > 0  # back on a search page later on
            # Alternate: a search or the first clickable, then back to search.
            action = labels.index("click[back to search]") if "click[back to search]" in labels else 0
            if turn % 2 == 0:
                action = 0 if labels[0] else int(env.action_masks().nonzero()[0][-1])
            observation, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        assert searched  # the search candidates were built again after the first turn


def test_shop_candidates_need_the_episode_start():
    from wrappers.candidates_shop import WebShopCandidates

    observation, _ = make_shop().reset(seed=0)
    with pytest.raises(RuntimeError, match="start"):
        WebShopCandidates(20)(observation)


def test_shop_wrapped_passes_the_checker_and_runs_vectorised():
    def make() -> gym.Env:
        return TokenizeObservation(CandidateActions(make_shop(), num_candidates=24), max_length=512)

    env = make()
    assert isinstance(env.get_wrapper_attr("tokenizer"), ByteTokenizer)  # no world text: bytes
    with pytest.warns(UserWarning):
        gym_check_env(env, skip_render_check=True)
    with pytest.warns(UserWarning):
        gym_check_env(RecordMemoryStatistics(make_shop()), skip_render_check=True)
    envs = gym.vector.SyncVectorEnv([make] * 4)
    envs.reset(seed=0)
    for _ in range(3):
        masks = np.stack(envs.call("action_masks"))
        observations, *_ = envs.step(masks.argmax(axis=1))
    assert observations["input_ids"].shape == (4, 512)
    envs.close()


def test_bench_wrappers_script_quick():
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, os.path.join(root, "scripts", "bench_wrappers.py"), "--quick"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=root, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "+ TokenizeObservation" in done.stdout and "ratio to text env" in done.stdout


def test_history_mode_switches_the_shop_env():
    env = HistoryMode(gym.make("MEM1-WebShop-v0", n_products=2000), mode="full")
    env.reset(seed=0)
    for _ in range(3):
        observation, *_, info = env.step("<summary>m</summary><answer>search[red shirt]</answer>")
    assert info["history_mode"] == "full" and observation.count("<summary>m</summary>") == 3
    env.set_mode("mem1")
    observation, *_ = env.step("<summary>m</summary><answer>search[blue]</answer>")
    assert observation.count("<summary>m</summary>") == 1


def test_default_tokenizer_is_bytes_on_real_data(tmp_path, monkeypatch):
    import os

    from wrappers.tokenizer import ByteTokenizer, WordTokenizer

    monkeypatch.setenv("MEM1_ENVS_CACHE", str(tmp_path / "cache"))
    data = os.path.join(os.path.dirname(__file__), "data")
    real = gym.make(
        "MEM1-MultiQA-v0",
        data=os.path.join(data, "nq_sample.jsonl"),
        corpus=os.path.join(data, "wiki_sample.jsonl"),
    )
    assert isinstance(default_tokenizer(real), ByteTokenizer)
    assert isinstance(default_tokenizer(gym.make("MEM1-MultiQA-v0", world="small")), WordTokenizer)


def test_the_browser_env_finds_the_shop_parts_through_its_parent_class():
    # Dispatch is by env id along the class hierarchy, not by class name (it used to be a TypeError).
    from mem1_envs.registry import find_part
    from mem1_envs.shop.browser_env import WebShopBrowserEnv
    from wrappers.candidates_shop import WebShopCandidates

    browser = object.__new__(WebShopBrowserEnv)  # no Chromium needed to look its parts up
    assert find_part(browser, "candidates") == WebShopCandidates.for_env
    assert find_part(browser, "scripted_agent").__qualname__ == "WebShopScriptedAgent.for_env"
