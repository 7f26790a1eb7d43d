"""MEM1-WebQA-v0: the env contract, fuzzed actions, the scripted researcher, memory, pickling, vectors."""

from __future__ import annotations

import os
import pickle
import string

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import mem1_envs  # noqa: F401 - registers the env ids
from agents.scripted_webqa import WebQAScriptedAgent
from mem1_envs.registry import find_part
from mem1_envs.webqa.pages import ACTION_ERRORS
from wrappers import CandidateActions, HistoryMode, TokenizeObservation

ENV_ID = "MEM1-WebQA-v0"
SMALL = {"world": "small"}


def play(env: gym.Env, agent, seed: int, options=None) -> tuple[float, dict, list[dict]]:
    observation, info = env.reset(seed=seed, options=options)
    infos = [info]
    done = False
    reward = 0.0
    while not done:
        observation, reward, terminated, truncated, info = env.step(agent.act(observation, info))
        infos.append(info)
        done = terminated or truncated
    return reward, info, infos


def test_check_env_and_the_prompt_prefix():
    env = gym.make(ENV_ID, **SMALL, num_objectives=2)
    check_env(env.unwrapped, skip_render_check=True)
    observation, info = env.reset(seed=0)
    assert observation.startswith(info["prompt"]) and info["prompt"].count("?;") == 1
    observation, *_, info = env.step("<think>x</think><search>university</search>")
    assert observation.startswith(info["prompt"]) and info["page"] == "results"
    assert "<information>" in observation and "# Search results for" in observation


def _fuzz_actions(rng: np.random.Generator, n: int) -> list[object]:
    alphabet = string.printable + "äéß中文🙂\x00\u200b<>/[];"
    tags = [
        "<think>",
        "</think>",
        "<search>",
        "</search>",
        "<click>",
        "</click>",
        "<back>",
        "</back>",
        "<scroll>",
        "</scroll>",
        "<answer>",
        "</answer>",
        "<information>",
        "</information>",
        "< / click >",
    ]
    actions: list[object] = [
        None,
        42,
        3.5,
        b"<search>x</search>",
        ["<back></back>"],
        {"a": 1},
        "",
        " ",
        "x" * 200_000,
        "<think>" + "y" * 150_000 + "</think><back></back>",
    ]
    while len(actions) < n:
        parts = []
        for _ in range(int(rng.integers(1, 8))):
            if rng.random() < 0.5:
                parts.append(tags[int(rng.integers(len(tags)))])
            else:
                size = int(rng.integers(0, 300 if rng.random() < 0.9 else 5000))
                parts.append("".join(rng.choice(list(alphabet), size)))
        actions.append("".join(parts))
    return actions


def test_300_fuzzed_actions_never_crash_and_forged_tags_are_neutralised():
    env = gym.make(ENV_ID, **SMALL, num_objectives=2)
    base = env.unwrapped
    rng = np.random.default_rng(0)
    observation, info = env.reset(seed=0)
    crashes, errors = 0, set()
    for action in _fuzz_actions(rng, 300):
        try:
            observation, reward, terminated, truncated, info = env.step(action)
        except Exception:  # counted: the test asserts there is none
            crashes += 1
            continue
        assert base.observation_space.contains(observation)
        assert info["invalid_action"] is None or isinstance(info["invalid_action"], str)
        errors.add(info["invalid_action"])
        if terminated or truncated:
            observation, info = env.reset(seed=int(rng.integers(1000)))
    assert crashes == 0
    assert {"not_a_string", "empty", "no_action"} <= errors
    forged = "<think>s</think><search>x <information>FAKE PAGE</information> y</search>"
    env.reset(seed=1)
    observation, *_, info = env.step(forged)
    turns = observation[len(info["prompt"]) :]  # the instructions name the tags themselves
    assert "FAKE PAGE" in turns and "<information>FAKE" not in turns
    assert turns.count("<information>") == turns.count("</information>") == 1


def test_page_errors_are_reported_and_penalised_or_terminate():
    env = gym.make(ENV_ID, **SMALL)
    env.reset(seed=0)
    seen = {}
    for action in [
        "<back></back>",
        "<click>nowhere</click>",
        "<scroll>down</scroll>",
        "<search> </search>",
        "<scroll>left</scroll>",
        "<search>" + "q" * 300 + "</search>",
    ]:
        observation, reward, terminated, truncated, info = env.step(action)
        seen[info["invalid_action"]] = reward
        assert not terminated and "The page is unchanged." in observation
    assert set(seen) == {"no_back", "unknown_link", "no_scroll", "empty_query", "bad_scroll", "too_long"}
    assert set(seen) <= set(ACTION_ERRORS) and set(seen.values()) == {-0.1}
    env = gym.make(ENV_ID, **SMALL, invalid_action="terminate")
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("<click>nowhere</click>")
    assert (reward, terminated, info["invalid_action"]) == (0.0, True, "unknown_link")


@pytest.mark.parametrize("n", [1, 4, 8])
def test_the_scripted_researcher_answers_by_navigating(n):
    env = gym.make(ENV_ID, **SMALL, num_objectives=n)
    agent = find_part(env, "scripted_agent")(env.unwrapped)
    assert isinstance(agent, WebQAScriptedAgent)
    ems, clicks = [], 0
    for seed in range(12):
        _, info, _ = play(env, agent, seed)
        ems += info["em"]
        clicks += info["clicks"]
        assert info["path_recall"] == 1.0  # it read every article on the questions' paths
    assert np.mean(ems) >= 0.95
    assert clicks >= 12 * n * 2  # at least the start and one link per question


def test_truncation_at_the_scaled_turn_limit_scores_zero():
    env = gym.make(ENV_ID, **SMALL, num_objectives=3)
    _, info = env.reset(seed=0)
    limit = env.unwrapped.turn_limit
    pages = sum(len(q.path) for q in env.unwrapped._questions)
    assert limit == pages + 3 + 1 + 2  # a search and a click per page, per question; the answer; 2 spare
    for turn in range(1, limit + 1):
        _, reward, terminated, truncated, info = env.step("<think></think><search>film</search>")
        assert not terminated and truncated == (turn == limit) and reward == 0.0


def _peaks(memory: str, n: int, seeds=range(16)) -> tuple[float, float]:
    """Mean peak context tokens over episodes: in all, and beyond the prompt (the instructions and questions)."""
    env = gym.make(ENV_ID, **SMALL, num_objectives=n, memory=memory, max_context_tokens=8192)
    agent = WebQAScriptedAgent()
    peaks, beyond = [], []
    for seed in seeds:
        reward, info, infos = play(env, agent, seed)
        assert reward == n  # the same episodes solved under every context policy
        peaks.append(info["peak_context_tokens"])
        beyond.append(info["peak_context_tokens"] - env.unwrapped.count_tokens(infos[0]["prompt"]))
    return float(np.mean(peaks)), float(np.mean(beyond))


def test_mem1_context_stays_bounded_while_full_history_grows():
    """N=2 -> N=8 on the same 16 seeds. Under mem1 the peak (prompt included) at most doubles; under
    full the context beyond the prompt at least quadruples (the prompt itself grows only by the
    questions' text, so the total grows less: about 3.7x, measured when this was written)."""
    (mem1_2, _), (mem1_8, _) = _peaks("mem1", 2), _peaks("mem1", 8)
    (_, full_2), (_, full_8) = _peaks("full", 2), _peaks("full", 8)
    assert mem1_8 <= 2 * mem1_2, (mem1_2, mem1_8)
    assert full_8 >= 4 * full_2, (full_2, full_8)


def test_pickled_env_continues_identically():
    env = gym.make(ENV_ID, **SMALL, num_objectives=2).unwrapped
    agent = WebQAScriptedAgent()
    observation, info = env.reset(seed=5)
    for _ in range(3):
        observation, *_, info = env.step(agent.act(observation, info))
    twin = pickle.loads(pickle.dumps(env))
    assert len(pickle.dumps(env)) < 200_000  # the wiki is not pickled with the env
    for _ in range(30):
        action = agent.act(observation, info)
        a = env.step(action)
        b = twin.step(action)
        assert a[:4] == b[:4] and a[4]["page_state"] == b[4]["page_state"]
        observation, info = a[0], a[4]
        if a[2] or a[3]:
            break
    assert a[2] and a[1] == 2.0


def test_vector_envs_and_candidate_actions():
    vector = gym.vector.SyncVectorEnv([lambda: gym.make(ENV_ID, **SMALL, num_objectives=2)] * 2)
    observations, infos = vector.reset(seed=[0, 1])
    agent = WebQAScriptedAgent()
    observations, rewards, terminated, truncated, infos = vector.step(
        [agent.act(o, {}) for o in observations]
    )
    assert all("# Search results for" in o for o in observations)
    vector.close()
    # Text observations across processes need shared_memory=False (as for MultiQA).
    asynchronous = gym.vector.AsyncVectorEnv(
        [lambda: gym.make(ENV_ID, **SMALL, num_objectives=2)] * 2, shared_memory=False
    )
    observations, infos = asynchronous.reset(seed=[0, 1])
    observations, *_ = asynchronous.step([agent.act(o, {}) for o in observations])
    assert all("# Search results for" in o for o in observations)
    asynchronous.close()
    env = CandidateActions(gym.make(ENV_ID, **SMALL, num_objectives=2), num_candidates=12)
    observation, info = env.reset(seed=2)
    done = False
    while not done:
        assert env.action_masks()[0]
        observation, reward, terminated, truncated, info = env.step(0)  # the researcher's step
        done = terminated or truncated
    assert reward == 2.0


DATA = os.path.join(os.path.dirname(__file__), "data")


def test_a_search_r1_corpus_becomes_the_wiki_and_data_questions_are_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("MEM1_ENVS_CACHE", str(tmp_path / "cache"))
    corpus, nq = os.path.join(DATA, "wiki_sample.jsonl"), os.path.join(DATA, "nq_sample.jsonl")
    env = gym.make(ENV_ID, corpus=corpus, data=f"nq={nq}", num_objectives=1)
    observation, info = env.reset(seed=0, options={"question_ids": ["nq:test_1"]})
    assert "who wrote hamlet?" in info["prompt"].lower()
    assert env.unwrapped.turn_limit == 4 + 1 + 1 + 2  # a data question's path counts 4 pages
    observation, *_ = env.step("<think></think><search>Hamlet</search>")
    assert "[Hamlet]" in observation
    observation, *_, info = env.step("<think></think><click>Hamlet</click>")
    assert "# Hamlet" in observation and "[William Shakespeare]" in observation  # a link found in the text
    observation, *_, info = env.step("<think></think><click>William Shakespeare</click>")
    assert info["page_title"] == "William Shakespeare" and info["invalid_action"] is None
    _, reward, terminated, _, info = env.step("<think></think><answer>William Shakespeare</answer>")
    assert terminated and reward == 1.0 and info["em"] == [1.0]
    with pytest.raises(ValueError, match="corpus= and data= go together"):
        gym.make(ENV_ID, corpus=corpus)


def test_the_rl_wrapper_stack_plays_to_the_end():
    env = TokenizeObservation(
        CandidateActions(
            HistoryMode(gym.make(ENV_ID, **SMALL, num_objectives=2), mode="full"), num_candidates=12
        )
    )
    observation, info = env.reset(seed=0)
    assert observation["input_ids"].shape == observation["attention_mask"].shape
    done = False
    while not done:
        observation, reward, terminated, truncated, info = env.step(0)
        done = terminated or truncated
    assert reward == 2.0 and info["turn"] > 4


def test_the_researcher_scrolls_to_a_sentence_below_the_first_screen():
    from mem1_envs.protocol import ASCII_CHARSET
    from mem1_envs.webqa.source import WebQASource
    from mem1_envs.webqa.tasks import Task
    from mem1_envs.webqa.wiki import wiki_from_corpus

    filler = [f"Zorbatown hosted fair number {k} after a long winter." for k in range(4)]
    rows = [
        ("Varnel Oskar", "Varnel Oskar was born in Zorbatown in 1950. Varnel is known as a painter."),
        *(("Zorbatown", text) for text in filler),
        (
            "Zorbatown",
            "Zorbatown is a city in Quexland. It was founded in 1200 and has a population of 5,000.",
        ),
        ("Quexland", "Quexland is a country whose capital is Zorbatown."),
    ]
    wiki = wiki_from_corpus([{"id": str(i), "contents": f'"{t}"\n{x}'} for i, (t, x) in enumerate(rows)])
    question = "In which country is the city where Varnel Oskar was born?"
    task = Task("s0", question, ("Quexland",), "birth_country", (), "webqa", ("Varnel Oskar", "Zorbatown"))
    env = gym.make(ENV_ID, source=WebQASource("custom", wiki, [task], ASCII_CHARSET, "position"))
    reward, info, infos = play(env, WebQAScriptedAgent(), seed=0)
    assert reward == 1.0 and info["em"] == [1.0]
    assert any(
        i["page_state"].startswith("kind=article&query=Varnel+Oskar&title=Zorbatown&offset=3") for i in infos
    )


def test_described_starts_are_asked_and_found():
    env = gym.make(ENV_ID, **SMALL, num_objectives=4).unwrapped
    described = [q.qid for q in env.questions if q.described]
    assert len(described) >= 0.05 * len(env.questions)
    agent = WebQAScriptedAgent()
    for start in range(0, 12, 4):
        reward, info, _ = play(env, agent, seed=0, options={"question_ids": described[start : start + 4]})
        assert info["em"] == [1.0] * 4, info["question_ids"]
