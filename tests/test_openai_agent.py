"""The OpenAI-compatible agent against loopback fake servers: exact contexts, retries, errors, timeouts."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import gymnasium as gym
import pytest
from script_import import load_script

import mem1_envs  # noqa: F401
from agents.openai_agent import OpenAIAgent, OpenAIAgentError
from agents.play import play_episode
from agents.scripted import MultiQAScriptedAgent

QA = {"world": "small", "num_objectives": 2, "split": "test"}


class FakeServer:
    """An OpenAI-style server on 127.0.0.1 (free port) whose replies a test scripts.

    ``mode``: "ok" answers with the scripted agent's response to the received context (minus
    the stop string, as OpenAI servers return it); "error" answers HTTP 500; "slow" waits
    ``delay`` seconds before answering; "flaky" fails the first request with 503, then is "ok".
    """

    def __init__(self, mode: str, delay: float = 0.0):
        self.mode, self.delay = mode, delay
        self.requests: list[tuple[str, dict, float]] = []
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest's output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, body, time.monotonic()))
                mode = server.mode
                if mode == "flaky":
                    mode = "error" if len(server.requests) == 1 else "ok"
                if mode == "slow":
                    server.stop.wait(server.delay)
                    mode = "ok"
                if mode == "error":
                    payload, status = b'{"error": {"message": "engine\\nexploded"}}', 500
                else:
                    payload, status = json.dumps(server.reply(self.path, body)).encode(), 200
                with contextlib.suppress(OSError):  # the client may have given up already
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def reply(self, path, body):
        context = body["messages"][-1]["content"] if path.endswith("/chat/completions") else body["prompt"]
        text = MultiQAScriptedAgent().act(context, {})
        stop = next(s for s in body["stop"] if text.endswith(s))
        text = text[: -len(stop)]  # servers drop the matched stop string
        choice = {"index": 0, "finish_reason": "stop"}
        choice.update(
            {"message": {"role": "assistant", "content": text}} if "messages" in body else {"text": text}
        )
        return {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [choice]}

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def _scripted_contexts(seed, memory):
    env = gym.make("MEM1-MultiQA-v0", memory=memory, **QA)
    agent = MultiQAScriptedAgent()
    observation, info = env.reset(seed=seed)
    contexts, done, total = [], False, 0.0
    while not done:
        contexts.append(observation)
        observation, reward, terminated, truncated, info = env.step(agent.act(observation, info))
        total, done = total + reward, terminated or truncated
    return contexts, total


@pytest.mark.parametrize(("api", "memory"), [("chat", "mem1"), ("completions", "full")])
def test_agent_sends_the_env_context_as_is_and_plays_exactly(api, memory):
    with FakeServer("ok") as server:
        agent = OpenAIAgent(server.url, "fake-model", api=api, max_tokens=64, timeout=10)
        env = gym.make("MEM1-MultiQA-v0", memory=memory, **QA)
        stats = play_episode(env, agent, seed=11, errors=(OpenAIAgentError,))
    contexts, reward = _scripted_contexts(11, memory)
    assert stats.error is None and stats.reward == reward == 2.0
    sent = [b["messages"][-1]["content"] if api == "chat" else b["prompt"] for _, b, _ in server.requests]
    assert sent == contexts  # the memory policy's context, unchanged
    path, body, _ = server.requests[0]
    assert path == f"/v1/{'chat/completions' if api == 'chat' else 'completions'}"
    assert (
        body["model"] == "fake-model"
        and body["stop"] == ["</search>", "</answer>"]
        and body["max_tokens"] == 64
    )


def test_retries_then_succeeds_and_rate_limit_spaces_requests():
    with FakeServer("flaky") as server:
        agent = OpenAIAgent(server.url, "m", retries=2, backoff=0.0, rate_limit=10.0)
        env = gym.make("MEM1-MultiQA-v0", **QA)
        start = time.monotonic()
        stats = play_episode(env, agent, seed=3, errors=(OpenAIAgentError,))
        seconds = time.monotonic() - start
    assert stats.error is None and stats.em == 2.0 and agent.failed_attempts == 1
    # 10 requests/s: n requests (the failed one included) need at least (n - 1) / 10 s.
    assert len(server.requests) == agent.requests >= 3 and seconds >= (agent.requests - 1) / 10.0


def _evaluate_with(server, capsys, *extra):
    evaluate = load_script("evaluate")
    argv = [
        "--agent",
        "openai",
        "--base-url",
        server.url,
        "--model",
        "fake",
        "--episodes",
        "2",
        "--objectives",
        "2",
    ]
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(rows=evaluate.main([*argv, *extra])), daemon=True)
    start = time.monotonic()
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "evaluate.py hung"
    return result["rows"], time.monotonic() - start, capsys.readouterr()


@pytest.mark.parametrize("mode", ["error", "slow"])
def test_a_failing_server_truncates_and_records_every_episode(mode, capsys):
    with FakeServer(mode, delay=30.0) as server:
        rows, seconds, captured = _evaluate_with(
            server, capsys, "--retries", "1", "--request-timeout", "0.3", "--memory", "mem1", "full",
            "--episodes", "1",
        )  # fmt: skip
    assert [r["episodes"] for r in rows] == [1, 1]
    for r in rows:
        assert r["metrics"]["errors"] == 1.0 and r["metrics"]["reward"] == 0.0 and r["metrics"]["turns"] == 0
    lines = [line for line in captured.err.splitlines() if "truncated" in line]
    assert len(lines) == 2  # one line per episode, the server's multi-line body folded into it
    expected = "HTTP 500 Internal Server Error" if mode == "error" else "timed out"
    assert all(expected in line and "failed after 2 attempts" in line for line in lines)
    assert len(server.requests) == 4  # 2 attempts per episode: no endless retrying
    assert seconds < 30  # nobody waited for the slow server's answer


def test_the_agent_needs_only_the_standard_library():
    import subprocess
    import sys

    code = "import sys, agents.openai_agent; sys.exit(any(m in sys.modules for m in ('torch', 'openai', 'requests')))"
    assert (
        subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1]).returncode == 0
    )


def test_evaluate_openai_needs_a_url_and_a_model():
    evaluate = load_script("evaluate")
    with pytest.raises(SystemExit, match="--base-url URL and --model NAME"):
        evaluate.main(["--agent", "openai", "--model", "m"])
    with pytest.raises(ValueError, match="base_url must start with http"):
        OpenAIAgent("127.0.0.1:8000", "m")
    with pytest.raises(ValueError, match="rate_limit must be > 0 or None, got 0"):
        OpenAIAgent("http://x/v1", "m", rate_limit=0)
