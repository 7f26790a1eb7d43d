"""Faults: damaged index files, an unwritable cache, concurrent cache builds, a retrieval server
that dies or freezes mid-episode, Chromium killed mid-episode (and its temp folders)."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

import numpy as np
import pytest

import mem1_envs  # noqa: F401  (registers the env ids)
from mem1_envs.cache import CacheDirError
from mem1_envs.files import DamagedFileError
from mem1_envs.qa.index import build_index, load_index
from mem1_envs.search import BM25Engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "data", "wiki_sample.jsonl")


# -- damaged index files -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: Any) -> str:
    folder = str(tmp_path_factory.mktemp("faults") / "index")
    build_index(CORPUS, folder, show_progress=False)
    return folder


def _truncate(path: str, size: int) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(size)


def _overwrite(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def _set_array(path: str, index: int, value: int) -> None:
    array = np.load(path, mmap_mode="r+")
    array[index] = value
    array.flush()
    del array


# (file, how it is damaged, what the message says)
DAMAGES = [
    *[
        (name, "half", "truncated")
        for name in (
            "bm25/data.csc.index.npy",
            "bm25/indices.csc.index.npy",
            "bm25/indptr.csc.index.npy",
            "passages/texts.offsets.npy",
        )
    ],
    *[
        (name, "empty", "")
        for name in (
            "meta.json",
            "bm25/params.index.json",
            "bm25/vocab.index.json",
            "bm25/data.csc.index.npy",
            "passages/ids.offsets.npy",
            "passages/titles.bin",
        )
    ],
    ("passages/texts.bin", "half", "offsets.npy says"),
    ("bm25/vocab.index.json", "half", "unreadable: JSONDecodeError"),
    ("bm25/vocab.index.json", "list", "unreadable"),
    ("meta.json", "garbage", "not JSON"),
    ("passages/ids.offsets.npy", "header", "not a .npy array"),
    ("bm25/indices.csc.index.npy", "header", "not a .npy array"),
    ("bm25/indices.csc.index.npy", "out_of_range", "document indices outside"),  # crashed numba
    ("bm25/indptr.csc.index.npy", "decreasing", "never decrease"),
    ("bm25/data.csc.index.npy", "missing", "missing"),
]


def _damage(path: str, how: str) -> None:
    size = os.path.getsize(path)
    if how == "half":
        _truncate(path, size // 2)
    elif how == "empty":
        _truncate(path, 0)
    elif how == "garbage":
        _overwrite(path, 0, b"\x9d\xff{" * 20)
    elif how == "header":  # inside the .npy header's dict
        _overwrite(path, 12, b"\x00garbage(" * 4)
    elif how == "out_of_range":
        _set_array(path, 0, 10**6)
    elif how == "decreasing":
        _set_array(path, 1, 10**6)
    elif how == "list":  # valid JSON, wrong shape
        with open(path, "w") as handle:
            handle.write("[1, 2, 3]")
    elif how == "missing":
        os.remove(path)


def _assert_one_clean_line(error: BaseException, tb: Any, path: str) -> None:
    message = str(error)
    assert "\n" not in message and repr(path) in message, message
    assert error.__cause__ is None and error.__suppress_context__  # no chained numpy/json error
    frames = [frame.filename for frame in traceback.extract_tb(tb)]
    assert not [f for f in frames if any(p in f for p in ("/numpy/", "/numba/", "/bm25s/", "/json/"))], frames


@pytest.mark.parametrize(("name", "how", "says"), DAMAGES, ids=[f"{n}-{h}" for n, h, _ in DAMAGES])
def test_damaged_index_file_is_one_line_naming_the_file(
    index_dir: str, tmp_path: Any, name: str, how: str, says: str
) -> None:
    copy = str(tmp_path / "index")
    shutil.copytree(index_dir, copy)
    path = os.path.join(copy, name)
    _damage(path, how)
    with pytest.raises(DamagedFileError) as caught:
        load_index(copy, corpus=CORPUS)  # never searches: a bad index must fail here, not in numba
    _assert_one_clean_line(caught.value, caught.tb, path)
    assert says in str(caught.value) and "build-index" in str(caught.value)


def test_non_utf8_passage_text_is_named_at_search_time(index_dir: str, tmp_path: Any) -> None:
    copy = str(tmp_path / "index")
    shutil.copytree(index_dir, copy)
    path = os.path.join(copy, "passages", "texts.bin")
    _overwrite(path, 0, b"\xff\xfe" * (os.path.getsize(path) // 2))  # same size: only a read finds it
    engine = load_index(copy, corpus=CORPUS)
    with pytest.raises(DamagedFileError) as caught:
        engine.search(["capital of Norway"], k=3)
    _assert_one_clean_line(caught.value, caught.tb, path)


def test_damaged_world_cache_entry_says_delete_it(tmp_path: Any) -> None:
    engine = BM25Engine.build(["a", "b"], ["Oslo", "Bergen"], ["Oslo is a city.", "Bergen is rainy."])
    folder = str(tmp_path / "entry")
    engine.save(folder)
    assert [h.doc_id for h in BM25Engine.load(folder).search(["rainy"], 1)[0]] == ["b"]
    _truncate(os.path.join(folder, "ids.npy"), 10)
    with pytest.raises(DamagedFileError, match=r"ids\.npy' is damaged .*delete .*entry' to have it rebuilt"):
        BM25Engine.load(folder)


def test_cli_reports_a_damaged_index_in_one_line(index_dir: str, tmp_path: Any) -> None:
    copy = str(tmp_path / "index")
    shutil.copytree(index_dir, copy)
    _truncate(os.path.join(copy, "bm25", "indptr.csc.index.npy"), 100)
    command = [sys.executable, "-m", "mem1_envs", "serve-retriever", "--index", copy, "--port", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "indptr.csc.index.npy' is damaged (" in done.stderr, done.stderr


# -- the cache folder ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["world", "shop", "corpus-index"])
def test_unwritable_cache_is_one_line_naming_the_variable(tmp_path: Any, monkeypatch: Any, kind: str) -> None:
    import gymnasium as gym

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MEM1_ENVS_CACHE", str(blocker / "cache"))  # even root cannot write there
    with pytest.raises(CacheDirError) as caught:
        if kind == "world":
            gym.make("MEM1-MultiQA-v0", world="small", world_seed=12345)
        elif kind == "shop":
            gym.make("MEM1-WebShop-v0", n_products=321)
        else:
            gym.make(
                "MEM1-MultiQA-v0", data=os.path.join(ROOT, "tests", "data", "nq_sample.jsonl"), corpus=CORPUS
            )
    message = str(caught.value)
    assert "\n" not in message and "MEM1_ENVS_CACHE" in message and str(blocker) in message, message
    assert "set MEM1_ENVS_CACHE to a writable folder" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_cache_folder_is_one_line_naming_the_variable(tmp_path: Any, monkeypatch: Any) -> None:
    from mem1_envs.shop.engine import load_shop

    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o500)
    monkeypatch.setenv("MEM1_ENVS_CACHE", str(cache))
    try:
        with pytest.raises(CacheDirError, match="MEM1_ENVS_CACHE"):
            load_shop(322, 0)
    finally:
        cache.chmod(0o700)


def _build_in_a_fresh_process(cache: str, barrier: Any, builds: str) -> tuple[str, str, str]:
    """Load the three kinds of cache entries at the same moment as the other processes.

    Counts the builds by wrapping the builders (a file per build in ``builds``) and returns a
    digest of what was loaded from each entry.
    """
    os.environ["MEM1_ENVS_CACHE"] = cache
    from mem1_envs.qa import index, sources
    from mem1_envs.shop import engine

    def counted(module: Any, name: str) -> None:
        inner = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            open(os.path.join(builds, f"{module.__name__}.{name}-{os.getpid()}"), "w").close()
            return inner(*args, **kwargs)

        setattr(module, name, wrapper)

    counted(sources, "_build_into")
    counted(engine, "_build_into")
    counted(index, "build_index")  # cached_corpus_index's builder (imported at call time)
    barrier.wait(timeout=120)
    world = sources.load_world_source("small", seed=7)
    shop = engine.load_shop(400, 3)
    corpus = sources.cached_corpus_index(CORPUS)
    assert isinstance(corpus, index.PersistentBM25Engine)
    questions = [q.text for q in world.questions[:50]]
    hits = [h.doc_id for row in world.engine.search(questions, 3) for h in row]
    world_digest = hashlib.sha256(repr((questions, hits)).encode()).hexdigest()
    shop_digest = hashlib.sha256(
        repr([shop.search(q) for q in ("chips", "shoes", "red tea")]).encode()
    ).hexdigest()
    corpus_hits = [h.doc_id for row in corpus.search(["capital of Norway", "mountain"], 3) for h in row]
    return world_digest, shop_digest, hashlib.sha256(repr(corpus_hits).encode()).hexdigest()


@pytest.mark.slow
def test_four_processes_build_each_cache_entry_once(tmp_path: Any) -> None:
    cache, builds = str(tmp_path / "cache"), str(tmp_path / "builds")
    os.makedirs(builds)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(4) as pool:
        barrier = manager.Barrier(4)
        results = pool.starmap(_build_in_a_fresh_process, [(cache, barrier, builds)] * 4, chunksize=1)
    assert len(set(results)) == 1  # all four loaded identical data
    made = sorted(name.rsplit("-", 1)[0] for name in os.listdir(builds))
    expected = [
        "mem1_envs.qa.index.build_index",
        "mem1_envs.qa.sources._build_into",
        "mem1_envs.shop.engine._build_into",
    ]
    assert made == expected, made  # corpus index, world, shop: each built once
    left = [
        n
        for _, dirs, files in os.walk(cache)
        for n in dirs + files
        if n.startswith(".build") or n.endswith(".lock")
    ]
    assert left == []  # no scratch folder and no lock file left


# -- the retrieval server dies or freezes mid-episode -------------------------------------------


def _remote_env(url: str, on_search_error: str) -> Any:
    from mem1_envs.qa.env import MultiQAEnv
    from mem1_envs.qa.remote import RemoteEngine
    from mem1_envs.qa.sources import QASource, load_world_source

    engine = RemoteEngine(url, timeout=1.0, retries=1, backoff=0.1)
    source = QASource("faults", load_world_source("small").questions, engine)
    return MultiQAEnv(source=source, on_search_error=on_search_error)


# The most a failing search may take: (retries + 1) * timeout + backoff, plus slack for a loaded machine.
BOUND_S = 2 * 1.0 + 0.1 + 2.0


@pytest.mark.parametrize("fault", ["freeze", "kill"])
def test_search_server_fault_mid_episode_ends_within_the_client_timeout(index_dir: str, fault: str) -> None:
    pytest.importorskip("uvicorn")
    from mem1_envs.qa.remote import RetrievalServiceError

    command = [sys.executable, "-m", "mem1_envs", "serve-retriever", "--index", index_dir, "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("serving at "), line
        url = line.split()[-1]
        raising, truncating = _remote_env(url, "raise"), _remote_env(url, "truncate")
        for env in (raising, truncating):
            env.reset(seed=0)
            observation, *_ = env.step("<think>a</think><search>capital of Norway</search>")
            assert "Doc 1(Title:" in observation
        os.kill(process.pid, signal.SIGSTOP if fault == "freeze" else signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(RetrievalServiceError, match=rf"{url} failed after 2 tries"):
            raising.step("<think>b</think><search>highest mountain</search>")
        assert time.monotonic() - start < BOUND_S
        with pytest.raises(RuntimeError, match="reset"):  # documented: the episode must be reset
            raising.step("<think>c</think><answer>x</answer>")
        start = time.monotonic()
        observation, reward, terminated, truncated, info = truncating.step(
            "<think>b</think><search>highest mountain</search>"
        )
        assert time.monotonic() - start < BOUND_S
        assert truncated and not terminated and reward == 0.0
        assert url in info["search_error"] and "Search failed" in observation
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
        process.wait(timeout=30)
        process.stdout.close()


# -- Chromium killed mid-episode; no temp folder left ----------------------------------------------


@pytest.fixture
def private_temp_dir(monkeypatch: Any) -> Any:
    """A new, empty temp dir for this test (and the processes it starts), short like ``/tmp``."""
    folder = tempfile.mkdtemp(prefix="mem1-faults-", dir="/tmp")
    monkeypatch.setenv("TMPDIR", folder)  # inherited by chromedriver and Chromium
    monkeypatch.setattr(tempfile, "tempdir", folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _act(text: str) -> str:
    return f"<summary>m</summary><answer>{text}</answer>"


@pytest.mark.browser
def test_killed_chromium_truncates_then_next_reset_is_fresh_and_temp_dir_stays_clean(
    private_temp_dir: str,
) -> None:
    from mem1_envs.shop.browser import process_running
    from mem1_envs.shop.browser_env import WebShopBrowserEnv

    env = WebShopBrowserEnv(n_products=500)
    pids: set[int] = set()
    try:
        env.reset(seed=0)
        env.step(_act("search[chips]"))
        # Chromium's own temp folders are inside the env's folder, not loose in the temp dir.
        assert os.listdir(private_temp_dir) == [os.path.basename(env.browser.root_dir)]
        assert os.listdir(env.browser.tmp_dir) and env.browser.tmp_dir.startswith(env.browser.root_dir)
        pids |= env.owned_pids()
        os.kill(env.browser.browser_pid(), signal.SIGKILL)
        observation, reward, terminated, truncated, info = env.step(_act("click[back to search]"))
        assert truncated and not terminated
        assert info["truncated_reason"].startswith("browser_failure: ") and info["browser_restarts"] == 1
        observation, info = env.reset(seed=1)
        assert env.browser.starts == 2 and env.browser.is_alive()  # a fresh browser plays on
        *_, truncated, info = env.step(_act("search[chips]"))
        assert info["page"] == "results" and not truncated and "truncated_reason" not in info
        pids |= env.owned_pids()
    finally:
        env.close()
    assert [pid for pid in pids if process_running(pid)] == []
    assert os.listdir(private_temp_dir) == []  # no org.chromium.Chromium.* nor profile folder left


@pytest.mark.browser
def test_a_deep_temp_dir_still_starts_chromium_and_leaves_nothing(
    private_temp_dir: str, monkeypatch: Any
) -> None:
    """Chromium's socket path must stay under 108 bytes: a deep TMPDIR gets a folder in /tmp."""
    from mem1_envs.shop.browser import ManagedBrowser

    deep = os.path.join(private_temp_dir, "d" * 80)
    os.mkdir(deep)
    monkeypatch.setenv("TMPDIR", deep)
    monkeypatch.setattr(tempfile, "tempdir", deep)
    browser = ManagedBrowser()
    try:
        browser.driver.get("about:blank")
        chromium_tmp = browser.tmp_dir
        assert chromium_tmp.startswith("/tmp/mem1-chromium-tmp-") and os.listdir(chromium_tmp)
    finally:
        browser.close()
    assert os.listdir(deep) == [] and not os.path.exists(chromium_tmp)
