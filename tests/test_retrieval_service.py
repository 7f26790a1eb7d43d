"""The Search-R1 ``/retrieve`` service and its client: API shape, bad requests, batching, failures."""

from __future__ import annotations

import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import gymnasium as gym
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

import mem1_envs  # noqa: F401  (registers the env ids)
from mem1_envs.qa.index import build_index, load_index
from mem1_envs.qa.remote import RemoteEngine, RetrievalServiceError
from mem1_envs.qa.server import ServerThread, ServiceLimits
from mem1_envs.qa.sources import load_world_source

DATA = os.path.join(os.path.dirname(__file__), "data")
CORPUS = os.path.join(DATA, "wiki_sample.jsonl")


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("service") / "index")
    build_index(CORPUS, folder, show_progress=False)
    return folder


@pytest.fixture(scope="module")
def engine(index_dir):
    return load_index(index_dir, corpus=CORPUS)


@pytest.fixture(scope="module")
def url(engine):
    server = ServerThread(engine)
    yield server.start()
    server.stop()


def post(url: str, body: bytes | dict, method: str = "POST") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data if method == "POST" else None, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw.startswith(b"{") else {"raw": raw.decode()}


def test_answers_exactly_search_r1s_api(url, engine):
    status, body = post(
        url, {"queries": ["capital of Norway", "Zürich railway"], "topk": 2, "return_scores": True}
    )
    assert status == 200 and set(body) == {"result"} and len(body["result"]) == 2
    first = body["result"][0][0]
    assert set(first) == {"document", "score"} and set(first["document"]) == {"id", "contents"}
    assert first["document"] == {
        "id": "0",
        "contents": '"Oslo"\nOslo is the capital and most populous city of Norway. It was founded around the year 1040.',
    }
    local = engine.search(["capital of Norway", "Zürich railway"], 2)
    assert [[e["document"]["id"] for e in r] for r in body["result"]] == [
        [h.doc_id for h in hits] for hits in local
    ]
    assert [e["score"] for e in body["result"][0]] == pytest.approx([h.score for h in local[0]])
    # Without return_scores each entry is the document itself; topk defaults to 3.
    status, body = post(url, {"queries": ["Norway"]})
    assert status == 200 and all(set(entry) == {"id", "contents"} for entry in body["result"][0])
    assert len(body["result"][0]) == 2  # only 2 passages mention Norway (no zero-score padding)
    status, body = post(url, {"queries": [], "topk": 3})
    assert (status, body) == (200, {"result": []})


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b'{"queries": ["a"', 400, "malformed JSON"),
        (b"\xff\xfe", 400, "malformed JSON"),
        (b"[1, 2]", 422, "must be a JSON object"),
        ({"topk": 3}, 422, "'queries' is required"),
        ({"queries": "capital"}, 422, "must be a list of strings"),
        ({"queries": [1, 2]}, 422, "must be a list of strings"),
        ({"queries": ["a"], "topk": 0}, 422, "'topk' must be an integer in 1..100, got 0"),
        ({"queries": ["a"], "topk": 10_000}, 422, "got 10000"),
        ({"queries": ["a"], "topk": True}, 422, "'topk' must be an integer in 1..100, got True"),
        ({"queries": ["a"], "topk": 2.5}, 422, "'topk' must be an integer in 1..100, got 2.5"),
        ({"queries": ["a"], "topk": "2.5"}, 422, "got '2.5'"),
        ({"queries": ["a"], "topk": "three"}, 422, "got 'three'"),
        ({"queries": ["a"], "topk": [3]}, 422, "got [3]"),
        ({"queries": ["a"], "topk": "0"}, 422, "got '0'"),
        (b"[" * 100_000, 400, "malformed JSON: nested too deeply"),
        (b'{"queries": ' + b"[" * 100_000, 400, "malformed JSON: nested too deeply"),
        ({"queries": ["a"], "return_scores": "yes"}, 422, "'return_scores' must be true or false"),
        ({"queries": ["x" * 100_000]}, 422, "query 0 has 100000 characters"),
        ({"queries": ["a"] * 10_000}, 422, "10000 queries exceed the limit of 4096"),
    ],
)
def test_bad_requests_get_4xx_with_a_reason_and_the_server_stays_up(url, body, status, reason):
    got_status, got = post(url, body)
    assert got_status == status and reason in got["error"]
    assert post(url, {"queries": ["Oslo"], "topk": 1})[0] == 200


@pytest.mark.parametrize(("topk", "count"), [("3", 3), (2.0, 2), ("2.0", 2), (" 1 ", 1), (None, 3)])
def test_topk_is_read_as_search_r1s_pydantic_server_reads_it(url, topk, count):
    status, body = post(url, {"queries": ["city"], "topk": topk})
    assert status == 200 and len(body["result"][0]) == count


def test_other_methods_and_paths_are_refused(url):
    assert post(url, b"", method="GET")[0] == 405
    assert post(url.replace("/retrieve", "/search"), {"queries": ["a"]})[0] == 404


def test_limits_are_configurable(engine):
    limits = ServiceLimits(max_queries=2, max_topk=5, max_query_chars=10, max_body_bytes=200, default_topk=1)
    with ServerThread(engine, limits) as small:
        assert "3 queries exceed the limit of 2" in post(small, {"queries": ["a", "b", "c"]})[1]["error"]
        assert "in 1..5, got 6" in post(small, {"queries": ["a"], "topk": 6})[1]["error"]
        assert "more than the limit of 10" in post(small, {"queries": ["Oslo Norway capital"]})[1]["error"]
        status, body = post(small, {"queries": ["Oslo"], "pad": "x" * 300})
        assert status == 413 and "exceeds the limit of 200" in body["error"]
        status, body = post(small, {"queries": ["Norway"]})
        assert status == 200 and len(body["result"][0]) == 1  # default_topk
    for bad, message in [
        ({"max_queries": 0}, "max_queries must be >= 1, got 0"),
        ({"default_topk": 9, "max_topk": 5}, "default_topk must be <= max_topk=5, got 9"),
    ]:
        with pytest.raises(ValueError, match=message):
            ServiceLimits(**bad)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _start_upload(port: int, declared: int, sent: bytes) -> socket.socket:
    """A raw POST /retrieve that declares ``declared`` body bytes and sends only ``sent``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = f"POST /retrieve HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    sock.sendall(head.encode() + sent)
    return sock


def test_a_body_that_never_arrives_gets_408_and_frees_the_connection(engine):
    timeout, count = 1.0, 100
    with ServerThread(engine, ServiceLimits(body_timeout=timeout)) as url:
        assert post(url, {"queries": ["Oslo"], "topk": 1})[0] == 200  # JIT compiled before timing
        opened, stalled = [], []
        for _ in range(count):
            stalled.append(_start_upload(_port(url), 1000, b'{"queries": ["Os'))
            opened.append(time.monotonic())
        # Normal requests are answered while the 100 stalled uploads wait.
        for query in ("Oslo", "Bergen", "Tokyo"):
            status, body = post(url, {"queries": [query], "topk": 1})
            assert status == 200 and body["result"][0][0]["contents"].startswith(f'"{query}"')
        normal_done = time.monotonic()
        # Watch all 100 at once: each must get a 408 and then EOF (the server closed it).
        received, closed_at = {i: b"" for i in range(count)}, {}
        with selectors.DefaultSelector() as selector:
            for i, sock in enumerate(stalled):
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ, i)
            deadline = opened[-1] + timeout + 10  # a bounded loop, generous on a loaded machine
            while len(closed_at) < count and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=0.5):
                    chunk = key.fileobj.recv(65536)
                    if chunk:
                        received[key.data] += chunk
                    else:
                        closed_at[key.data] = time.monotonic()
                        selector.unregister(key.fileobj)
        for sock in stalled:
            sock.close()
    assert len(closed_at) == count, f"{count - len(closed_at)} connections still open"
    assert all(data.startswith(b"HTTP/1.1 408 ") for data in received.values())
    assert all(
        b"request body not received within 1 s (16 of 1000 bytes came)" in d for d in received.values()
    )
    held = [closed_at[i] - opened[i] for i in range(count)]
    assert min(held) >= 0.9 * timeout  # closed by the timeout, not at once ...
    assert max(held) <= timeout + 5  # ... and soon after it (slack for a shared machine)
    assert normal_done < min(closed_at.values())  # the normal requests did not wait for the stalled ones


class _Recording:
    """An engine wrapper that records the batch sizes it was asked for (and can be slow or fail)."""

    def __init__(self, engine, delay: float = 0.0, fail: bool = False):
        self.engine, self.delay, self.fail, self.batches = engine, delay, fail, []

    def search(self, queries, k):
        self.batches.append(len(queries))
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("disk on fire")
        return self.engine.search(queries, k)


def test_client_matches_local_search_and_splits_large_batches(engine):
    recording = _Recording(engine)
    with ServerThread(recording) as url:
        client = RemoteEngine(url, batch_size=2, check=False)
        queries = ["Oslo", "Hamlet author", "東京", "deepest lake", "Moscow river"]
        remote, local = client.search(queries, 3), engine.search(queries, 3)
        assert [[(h.doc_id, h.title, h.text) for h in hits] for hits in remote] == [
            [(h.doc_id, h.title, h.text) for h in hits] for hits in local
        ]
        assert [h.score for h in remote[0]] == pytest.approx([h.score for h in local[0]])
        assert recording.batches == [2, 2, 1]


def test_concurrent_requests_are_coalesced_into_fewer_engine_calls(engine):
    recording = _Recording(engine, delay=0.3)
    queries = ["Oslo", "Bergen", "Tokyo", "Moscow", "Haarlem", "Everest", "Amazon", "Baikal"]
    with ServerThread(recording) as url:
        client = RemoteEngine(url, check=False)
        results: dict[int, object] = {}
        threads = [
            threading.Thread(target=lambda i=i: results.update({i: client.search([queries[i]], 1)}))
            for i in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [results[i][0][0].title for i in range(8)] == [
        "Oslo",
        "Bergen",
        "Tokyo",
        "Moscow",
        "Haarlem",
        "Mount Everest",
        "Amazon River",
        "Lake Baikal",
    ]
    assert sum(recording.batches) == 8 and len(recording.batches) < 8


def test_engine_failure_is_a_500_with_the_reason_and_the_client_says_so(engine):
    with ServerThread(_Recording(engine, fail=True)) as url:
        status, body = post(url, {"queries": ["Oslo"]})
        assert status == 500 and "disk on fire" in body["error"]
        client = RemoteEngine(url, retries=1, backoff=0.01, check=False)
        with pytest.raises(RetrievalServiceError, match=r"failed after 2 tries: HTTP 500.*disk on fire"):
            client.search(["Oslo"], 3)


def test_client_reports_a_server_that_is_down_and_does_not_retry_4xx(engine):
    with ServerThread(engine) as url:
        client = RemoteEngine(url, retries=3, backoff=0.01)
        with pytest.raises(RetrievalServiceError, match="failed after 1 tries: HTTP 422"):
            client.search(["x" * 5000], 3)
    started = time.perf_counter()
    with pytest.raises(
        RetrievalServiceError, match=rf"{url} failed after 3 tries: .*Connection refused.*is it running"
    ):
        RemoteEngine(url, retries=2, backoff=0.05)
    assert time.perf_counter() - started < 5
    for bad, message in [("localhost:8000", "http"), ("http://x", None)]:
        if message:
            with pytest.raises(ValueError, match=message):
                RemoteEngine(bad)
    with pytest.raises(ValueError, match="retries must be >= 0, got -1"):
        RemoteEngine(url, retries=-1, check=False)


def test_client_reads_both_answer_shapes_and_rejects_nonsense():
    client = RemoteEngine("http://127.0.0.1:9/retrieve", check=False)
    plain = {"result": [[{"id": "1", "contents": '"Oslo"\nA city.'}]]}
    scored = {"result": [[{"document": {"id": "1", "contents": '"Oslo"\nA city.'}, "score": 2.5}]]}
    assert client._parse(plain, 1)[0][0].title == "Oslo"
    assert client._parse(scored, 1)[0][0].score == 2.5
    for body in ({"result": []}, {"documents": []}, {"result": [[{"id": "1"}]]}, [1]):
        with pytest.raises(RetrievalServiceError):
            client._parse(body, 1)


def test_env_over_the_service_matches_the_local_env():
    source = load_world_source("small", seed=0)
    with ServerThread(source.engine) as url:
        remote = gym.make("MEM1-MultiQA-v0", world="small", search=url, num_objectives=2)
        local = gym.make("MEM1-MultiQA-v0", world="small", num_objectives=2)
        (obs_r, info_r), (obs_l, info_l) = remote.reset(seed=5), local.reset(seed=5)
        assert obs_r == obs_l and info_r["question_ids"] == info_l["question_ids"]
        action = "<think>start</think><search>" + source.questions[3].text + "</search>"
        step_r, step_l = remote.step(action), local.step(action)
        assert step_r[0] == step_l[0] and "Doc 1(Title:" in step_r[0]
        assert step_r[4]["support_recall"] == step_l[4]["support_recall"]
        remote.close()


def _start_cli_server(
    index_dir: str, *extra: str, stderr: object = subprocess.PIPE
) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mem1_envs",
            "serve-retriever",
            "--index",
            index_dir,
            "--corpus",
            CORPUS,
            "--port",
            "0",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    line = process.stdout.readline()  # printed once listening (after the JIT warm-up)
    if not line.startswith("serving at "):
        process.kill()
        raise AssertionError(f"server did not start: {line!r} {process.stderr and process.stderr.read()}")
    return process, line.split()[-1]


def test_cli_server_logs_hostile_clients_in_one_line_each(index_dir, tmp_path):
    log = tmp_path / "server.log"
    with open(log, "w") as stderr:
        process, url = _start_cli_server(index_dir, "--body-timeout", "0.5", stderr=stderr)
    try:
        port = _port(url)
        assert post(url, b"[" * 100_000) == (400, {"error": "malformed JSON: nested too deeply"})
        _start_upload(port, 1000, b'{"queries": ["a').close()  # disconnects mid-upload
        short = _start_upload(port, 1000, b'{"queries": ["a')
        reply = b""
        while chunk := short.recv(65536):  # the server closes the connection after its 408
            reply += chunk
        short.close()
        assert reply.startswith(b"HTTP/1.1 408 ") and b"within 0.5 s" in reply
        assert post(url, {"queries": ["Oslo"], "topk": "1"})[0] == 200
    finally:
        process.kill()
        process.wait(timeout=30)
        process.stdout.close()
    lines = log.read_text().splitlines()
    assert not any("Traceback" in line or "Error" in line for line in lines), lines
    assert sum("disconnected before sending the whole request body" in line for line in lines) == 1, lines
    assert sum("15 of 1000 body bytes in 0.5s: answered 408" in line for line in lines) == 1, lines
    assert len(lines) == 2, lines


def test_cli_server_and_a_server_that_dies_mid_episode(index_dir, tmp_path):
    data = os.path.join(DATA, "nq_sample.jsonl")
    process, url = _start_cli_server(index_dir)
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/retrieve")
        raising = gym.make("MEM1-MultiQA-v0", data=data, search=url)
        truncating = gym.make("MEM1-MultiQA-v0", data=data, search=url, on_search_error="truncate")
        for env in (raising, truncating):
            env.reset(seed=0)
            observation, *_ = env.step("<think>a</think><search>capital of Norway</search>")
            assert 'Doc 1(Title: "Oslo")' in observation
    finally:
        process.kill()
        process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()
    # Never silently empty documents: the default raises (and the episode must be reset) ...
    with pytest.raises(RetrievalServiceError, match=rf"{url} failed after 4 tries"):
        raising.step("<think>b</think><search>highest mountain</search>")
    with pytest.raises(RuntimeError, match="reset"):
        raising.step("<think>c</think><answer>Oslo</answer>")
    # ... and "truncate" ends the episode with the reason in info.
    observation, reward, terminated, truncated, info = truncating.step(
        "<think>b</think><search>highest mountain</search>"
    )
    assert truncated and not terminated and reward == 0.0
    assert url in info["search_error"] and "Search failed" in observation


@pytest.mark.slow
def test_service_benchmark_quick_run_has_no_failed_request():
    result = subprocess.run(
        [sys.executable, "scripts/bench_service.py", "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "200 ok, 0 failed" in result.stdout
