"""Engine pieces that need no torch: log-prob semantics, mismatch/TIS math, clean errors."""

from __future__ import annotations

import socket
import sys

import numpy as np
import pytest

from agents.engines import EngineError, make_backend
from agents.engines.mismatch import engine_logprobs_mode, logprobs_match, mismatch_stats, tis_weights
from agents.engines.openai_backend import OpenAIBackend
from agents.llm_policy import GenerationConfig
from agents.ppo.config import PPOConfig


def test_logprobs_mode_matches_the_trainer_quantity_only_where_vllm_documents_it():
    assert engine_logprobs_mode(1.0, 0.95) == ("raw_logprobs", True)  # T = 1: raw is log_softmax(logits / 1)
    assert engine_logprobs_mode(0.6, 1.0) == ("processed_logprobs", True)
    assert engine_logprobs_mode(0.6, 0.9) == ("processed_logprobs", False)  # truncated: recompute
    assert engine_logprobs_mode(0.6, 1.0, "raw_logprobs") == ("raw_logprobs", False)
    assert not logprobs_match("processed_logprobs", 1.0, 0.95)
    with pytest.raises(ValueError, match="engine_logprobs must be one of"):
        engine_logprobs_mode(1.0, 1.0, "logits")


def test_mismatch_stats_mean_and_max_over_generated_tokens_only():
    rng = np.random.default_rng(0)
    engine = [rng.normal(size=n).astype(np.float32) for n in (5, 9)]
    trainer = [e + rng.normal(scale=0.01, size=e.shape).astype(np.float32) for e in engine]
    masks = [rng.random(e.shape) < 0.6 for e in engine]
    trainer[0][~masks[0]] += 100.0  # prompt positions must not count
    total, worst, count = mismatch_stats(engine, trainer, masks)
    gaps = np.concatenate(
        [np.abs(e.astype(np.float64) - t)[m] for e, t, m in zip(engine, trainer, masks, strict=True)]
    )
    assert count == gaps.size and np.isclose(total / count, gaps.mean()) and np.isclose(worst, gaps.max())


def test_tis_weights_are_capped_importance_ratios_and_one_off_the_mask():
    trainer = [np.array([0.0, -1.0, -3.0, 5.0], np.float32)]
    engine = [np.array([-2.0, -1.0, -2.0, -400.0], np.float32)]
    mask = [np.array([True, True, True, False])]
    (weights,) = tis_weights(trainer, engine, mask, cap=2.0)
    assert np.allclose(weights, [2.0, 1.0, np.exp(-1.0), 1.0])
    (huge,) = tis_weights(
        [np.array([1e4], np.float32)], [np.array([-1e4], np.float32)], [np.array([True])], 3.0
    )
    assert np.isfinite(huge).all() and huge[0] == np.float32(3.0)
    with pytest.raises(ValueError, match="tis_cap must be > 0"):
        tis_weights(trainer, engine, mask, cap=0.0)


def test_config_rejects_bad_engine_settings():
    with pytest.raises(ValueError, match="rollout must be one of"):
        PPOConfig(rollout="sglang")
    with pytest.raises(ValueError, match="needs engine_url"):
        PPOConfig(rollout="openai")
    with pytest.raises(ValueError, match="tis_cap must be > 0"):
        PPOConfig(tis_cap=0.0)
    with pytest.raises(ValueError, match="not supported"):
        PPOConfig(rollout="vllm", lora_r=8)
    with pytest.raises(ValueError, match="engine_sleep_level"):
        PPOConfig(rollout="vllm", engine_sleep_level=3)


def test_missing_vllm_is_one_line_naming_the_gpu_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError, as on a CPU install
    with pytest.raises(ImportError) as caught:
        make_backend(PPOConfig(rollout="vllm"), tokenizer=None, model_path="unused")
    message = str(caught.value)
    assert "\n" not in message and "mem1-envs[gpu]" in message and "constraints-gpu.txt" in message


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_refused_server_is_one_line_naming_the_url():
    url = f"http://127.0.0.1:{_closed_port()}"
    backend = OpenAIBackend(url, tokenizer=None, model="m", retries=1, timeout=5)
    with pytest.raises(EngineError) as caught:
        backend.generate([np.array([1, 2, 3])], GenerationConfig(max_new_tokens=4), ("</answer>",))
    message = str(caught.value)
    assert "\n" not in message and f"{url}/v1/completions" in message and "2 attempt(s)" in message
    backend.close()
    with pytest.raises(ValueError, match="engine_url must start with http"):
        OpenAIBackend("127.0.0.1:8000", tokenizer=None)
    with pytest.raises(ValueError, match="needs engine_sync_dir"):
        OpenAIBackend(url, tokenizer=None, weight_sync="sglang")


def test_engine_sync_is_idle_without_weights_to_move():
    from agents.engines import EngineSync

    class HFLike:  # generate only, like HFGenerateBackend on the training model itself
        def generate(self, *args):
            raise AssertionError("not called")

    frozen = OpenAIBackend("http://127.0.0.1:9", tokenizer=None, weight_sync="none")
    for backend in (HFLike(), frozen):
        sync = EngineSync(backend, model=None)
        sync.release()
        sync.after_optimizer_step()
        sync.resume()
        assert not sync.active and sync.syncs == 0
    frozen.close()
