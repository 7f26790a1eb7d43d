"""The env's search observation equals, character for character, what MEM1's code builds.

MEM1's rollout (after Search-R1) turns one query's ``/retrieve`` results into text with
``_passages2string`` and wraps it with the turn hint. The rule, written here from its documented
behaviour (not imported from anywhere, so the env is checked against an independent copy):

- each result's ``document["contents"]`` is split at its first newline: the first line is the
  title exactly as the corpus holds it (wiki-18 quotes it: ``"Oslo"``), the rest is the text;
- document k becomes ``Doc k(Title: <title>) <text>`` followed by a newline;
- the observation is ``<information>{hint}\\n\\n{passages.strip()}</information>``, the hint being
  ``[HINT]You have n turns left.[/HINT]`` with n = max_turns - step - 1 > 1,
  ``[HINT]You have 1 turn left. You must answer the question in the next turn.[/HINT]`` with one
  turn left and empty on the last turn.
"""

from __future__ import annotations

import json
import os

import gymnasium as gym
import pytest

import mem1_envs  # noqa: F401  (registers the env ids)

DATA = os.path.join(os.path.dirname(__file__), "data")

#: Search-R1 rows chosen to break a careless renderer: quotes inside a title, a multi-line text,
#: trailing white space (MEM1 strips the whole block), parentheses and non-ASCII titles.
ROWS = [
    ("0", '"Oslo"\nOslo is the capital of Norway and its largest city.'),
    ("1", '""Weird Al" Yankovic"\nAlfred "Weird Al" Yankovic is an American singer from a city.'),
    ("2", '"Zürich"\nZürich is the largest city in Switzerland.\nIt lies on a lake.'),
    ("3", '"Mercury (planet)"\nMercury is the smallest planet, no city.   \n'),
    ("4", '"東京"\n東京 (Tokyo) is the capital city of Japan.'),
    ("5", '"Bergen"\nBergen is a rainy city of Norway.'),
]


def passages2string(results: list[dict]) -> str:
    """MEM1/Search-R1's ``_passages2string`` rule (see the module docstring)."""
    text = ""
    for k, result in enumerate(results, 1):
        lines = result["document"]["contents"].split("\n")
        text += f"Doc {k}(Title: {lines[0]}) {chr(10).join(lines[1:])}\n"
    return text


def mem1_hint(max_turns: int, step: int) -> str:
    left = max_turns - step - 1
    if left > 1:
        return f"[HINT]You have {left} turns left.[/HINT]"
    if left == 1:
        return "[HINT]You have 1 turn left. You must answer the question in the next turn.[/HINT]"
    return ""


def mem1_observation(results: list[dict], max_turns: int, step: int) -> str:
    return f"<information>{mem1_hint(max_turns, step)}\n\n{passages2string(results).strip()}</information>"


def last_information(observation: str) -> str:
    start = observation.rindex("<information>")
    return observation[start : observation.index("</information>", start) + len("</information>")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("search-r1") / "corpus.jsonl"
    path.write_text("".join(json.dumps({"id": i, "contents": c}) + "\n" for i, c in ROWS), encoding="utf-8")
    return str(path)


QUERIES = [
    "largest city Weird Al singer",  # the title with quotes of its own first
    "smallest planet city",  # trailing white space inside the block
    "Norway Bergen Oslo planet",  # ... and at its end, where MEM1 strips it
    "lake Zürich city",  # a multi-line text
    "capital city Japan Norway",
]


def test_observation_equals_mem1s_passages2string_over_the_raw_corpus(corpus):
    contents = dict(ROWS)
    max_turns = len(QUERIES)
    env = gym.make(
        "MEM1-MultiQA-v0", data=os.path.join(DATA, "nq_sample.jsonl"), corpus=corpus, max_turns=max_turns
    )
    env.reset(seed=0)
    engine, top_k = env.unwrapped.engine, env.unwrapped.config.top_k
    seen = set()
    for step, query in enumerate(QUERIES):
        observation, *_ = env.step(f"<think>step {step}</think><search>{query}</search>")
        hits = engine.search([query], top_k)[0]
        # What Search-R1's server answers for these hits: the corpus rows as the file holds them.
        results = [
            {"document": {"id": h.doc_id, "contents": contents[h.doc_id]}, "score": h.score} for h in hits
        ]
        assert len(results) == top_k
        assert last_information(observation) == mem1_observation(results, max_turns, step)
        seen.update(h.doc_id for h in hits)
        if step == 2:
            assert hits[-1].doc_id == "3" and last_information(observation).endswith("no city.</information>")
    assert {"1", "2", "3", "4"} <= seen  # every tricky row was rendered
    env.close()


def test_generated_world_renders_its_rows_by_the_same_rule():
    """The world's passages are Search-R1 rows with quoted titles too: same rule, same text."""
    from mem1_envs.qa.sources import load_world_source, world_config
    from mem1_envs.qa.world import generate_world

    world = generate_world(world_config("small"), 0)  # the rows behind world="small", world_seed=0
    source = load_world_source("small", 0)
    env = gym.make("MEM1-MultiQA-v0", world="small", max_turns=3)
    env.reset(seed=1)
    for step, question in enumerate(source.questions[:3]):
        observation, *_ = env.step(f"<think>s</think><search>{question.text}</search>")
        hits = source.engine.search([question.text], 3)[0]
        results = [{"document": world.passage(h.doc_id)} for h in hits]
        assert len(results) == 3 and all(r["document"]["contents"].startswith('"') for r in results)
        assert last_information(observation) == mem1_observation(results, 3, step)
    env.close()


def test_env_over_our_server_equals_mem1_over_our_server(corpus, tmp_path):
    """Through ``search=URL`` the env shows what MEM1 builds from the same ``/retrieve`` answer."""
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    import urllib.request

    from mem1_envs.qa.index import build_index, load_index
    from mem1_envs.qa.server import ServerThread

    build_index(corpus, str(tmp_path / "index"), show_progress=False)
    with ServerThread(load_index(str(tmp_path / "index"))) as url:
        env = gym.make("MEM1-MultiQA-v0", data=os.path.join(DATA, "nq_sample.jsonl"), search=url, max_turns=2)
        env.reset(seed=0)
        for step, query in enumerate(QUERIES[:2]):
            observation, *_ = env.step(f"<think>s</think><search>{query}</search>")
            body = json.dumps({"queries": [query], "topk": 3, "return_scores": True}).encode()
            with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as response:
                results = json.loads(response.read())["result"][0]
            assert [r["document"]["contents"] for r in results] == [
                dict(ROWS)[r["document"]["id"]] for r in results
            ]
            assert last_information(observation) == mem1_observation(results, 2, step)
        env.close()
