"""Engine backends against stand-ins with vLLM's and the OpenAI API's shapes (CPU, tiny model).

The fakes (``agents/engines/fake.py``) decode with the tiny model itself, so their log-probs are
real and can be compared with the trainer's recomputation.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import gymnasium as gym  # noqa: E402

import mem1_envs  # noqa: E402, F401
from agents.engines import EngineError  # noqa: E402
from agents.engines.fake import FakeCompletionsServer, FakeLLM  # noqa: E402
from agents.engines.openai_backend import OpenAIBackend  # noqa: E402
from agents.engines.vllm_backend import VLLMBackend  # noqa: E402
from agents.engines.weight_sync import layer_chunks  # noqa: E402
from agents.llm_policy import GenerationConfig, LLMPolicy  # noqa: E402
from agents.rollout import collect  # noqa: E402
from agents.tiny_model import default_tiny_model  # noqa: E402

pytestmark = pytest.mark.train

STOPS = ("</search>", "</answer>")


@pytest.fixture(scope="module")
def path() -> str:
    return default_tiny_model()


@pytest.fixture(scope="module")
def policy(path) -> LLMPolicy:
    return LLMPolicy.from_pretrained(path, generation=GenerationConfig(max_new_tokens=8))


def _vllm(llm: FakeLLM, tokenizer, **options) -> VLLMBackend:
    return VLLMBackend(
        llm, tokenizer, logprobs_mode=llm.logprobs_mode, sampling_params=llm.sampling_params_class, **options
    )


def _replay(model, prompt: np.ndarray, generated: np.ndarray, temperature: float) -> np.ndarray:
    ids = torch.as_tensor(np.concatenate([prompt, generated]))[None]
    with torch.no_grad():
        logits = model(ids).logits[0].float() / temperature
    start = len(prompt)
    return torch.log_softmax(logits[start - 1 : -1], -1).gather(-1, ids[0, start:, None])[:, 0].numpy()


ROWS = [np.array([5, 6, 7, 8]), np.array([40, 41]), np.array([100, 200, 300, 400, 500])]


def test_vllm_backend_returns_the_engines_ids_and_logprobs_unchanged(path, policy):
    llm = FakeLLM(path)
    backend = _vllm(llm, policy.tokenizer)
    torch.manual_seed(0)
    outs = backend.generate(ROWS, GenerationConfig(max_new_tokens=6), STOPS)
    requests = [c[1] for c in llm.calls if c[0] == "add_request"]
    for request_id, out in zip(requests, outs, strict=True):
        ids, logprobs = llm.produced[request_id]
        assert out.token_ids.tolist() == ids and out.token_ids.dtype == np.int64
        assert np.array_equal(out.logprobs, np.asarray(logprobs, np.float32))
        assert out.text == policy.tokenizer.decode(ids)
        params = llm.params[request_id]
        assert params.stop == list(STOPS) and params.include_stop_str_in_output and params.logprobs == 0
        assert params.max_tokens == 6 and not params.skip_special_tokens
    torch.manual_seed(0)
    again = backend.generate(ROWS, GenerationConfig(max_new_tokens=6), STOPS)
    assert [a.token_ids.tolist() for a in again] == [o.token_ids.tolist() for o in outs]  # seeded per request


def test_vllm_backend_stops_after_the_closing_tag_and_keeps_it(path, policy):
    tokenizer = policy.tokenizer
    script = tokenizer.encode(
        "<think>a b</think>\n<search>who</search> trailing words", add_special_tokens=False
    )
    llm = FakeLLM(
        path,
        forced=lambda prompt, generated: script[len(generated)] if len(generated) < len(script) else None,
    )
    (out,) = _vllm(llm, tokenizer).generate([ROWS[0]], GenerationConfig(max_new_tokens=30), STOPS)
    end = script.index(tokenizer.convert_tokens_to_ids("</search>")) + 1
    assert out.token_ids.tolist() == script[:end] and out.finish == "stop"
    assert out.text.endswith("</search>") and "trailing" not in out.text
    (cut,) = _vllm(llm, tokenizer).generate([ROWS[0]], GenerationConfig(max_new_tokens=3), STOPS)
    assert cut.token_ids.tolist() == script[:3] and cut.finish == "length"


def test_temperature_semantics_processed_equals_trainer_raw_does_not(path, policy):
    config = GenerationConfig(max_new_tokens=6, temperature=0.7)
    processed = _vllm(FakeLLM(path, logprobs_mode="processed_logprobs"), policy.tokenizer, temperature=0.7)
    raw = _vllm(FakeLLM(path, logprobs_mode="raw_logprobs"), policy.tokenizer, temperature=0.7)
    nucleus = _vllm(
        FakeLLM(path, logprobs_mode="processed_logprobs"), policy.tokenizer, temperature=0.7, top_p=0.9
    )
    assert processed.logprobs_exact and not raw.logprobs_exact and not nucleus.logprobs_exact
    torch.manual_seed(1)
    outs_p = processed.generate(ROWS, config, STOPS)
    torch.manual_seed(1)
    outs_r = raw.generate(ROWS, config, STOPS)
    for row, p, r in zip(ROWS, outs_p, outs_r, strict=True):
        assert p.token_ids.tolist() == r.token_ids.tolist()  # same seeds, same samples
        trainer = _replay(policy.model, row, p.token_ids, 0.7)
        assert np.allclose(p.logprobs, trainer, atol=2e-5)
        assert np.allclose(r.logprobs, _replay(policy.model, row, r.token_ids, 1.0), atol=2e-5)
        assert np.abs(r.logprobs - trainer).max() > 1e-2  # raw log-probs are not the trainer's at T != 1


def test_streaming_rollout_sends_each_episodes_next_turn_without_waiting(path, policy):
    tokenizer = policy.tokenizer
    close = tokenizer.convert_tokens_to_ids("</search>")

    def forced(prompt, generated):  # responses of 1 to 4 tokens, depending on the prompt
        return close if len(generated) + 1 >= 1 + len(prompt) % 4 else None

    def play():
        llm = FakeLLM(path, forced=forced)
        sampler = LLMPolicy(
            policy.model,
            tokenizer,
            generation=GenerationConfig(max_new_tokens=8),
            backend=_vllm(llm, tokenizer),
        )
        envs = [
            gym.make("MEM1-MultiQA-v0", world="small", max_turns=3, invalid_action="penalize")
            for _ in range(2)
        ]
        return llm, collect(envs, sampler, seeds=[0, 1, 2], generation_seed=0)

    llm, episodes = play()
    adds = [c for c in llm.calls if c[0] == "add_request"]
    assert len(adds) == sum(e.turns for e in episodes) and all(e.turns == 3 for e in episodes)
    # After the first two requests, some request was added while another was still decoding:
    # an episode's next turn (or the third seed) did not wait for a turn-synchronous wave.
    assert any(running > 0 for _, _, running in adds[2:])
    produced = [llm.produced[request_id] for _, request_id, _ in adds]
    generated = [t.generated_ids.tolist() for e in episodes for t in e.record.turns]
    assert sorted(generated) == sorted(ids for ids, _ in produced)
    for e in episodes:
        for turn in e.record.turns:
            match = [lp for ids, lp in produced if ids == turn.generated_ids.tolist()]
            assert any(np.array_equal(turn.old_logprobs, np.asarray(lp, np.float32)) for lp in match)
    _, replayed = play()
    assert [[t.generated_ids.tolist() for t in e.record.turns] for e in replayed] == [
        [t.generated_ids.tolist() for t in e.record.turns] for e in episodes
    ]


def test_layer_chunks_group_by_decoder_layer_in_bf16(policy):
    chunks = list(layer_chunks(policy.model))
    names = [[name for name, _ in chunk] for chunk in chunks]
    layers = policy.model.config.num_hidden_layers
    assert names[0] == ["model.embed_tokens.weight"] and names[-1] == ["model.norm.weight"]
    assert len(chunks) == layers + 2
    for k in range(layers):
        assert all(n.startswith(f"model.layers.{k}.") for n in names[k + 1])
    assert all(t.dtype == torch.bfloat16 for chunk in chunks for _, t in chunk)
    assert sum(len(n) for n in names) == len(list(policy.model.named_parameters()))


def test_sleep_then_sync_then_wake_loads_the_new_weights(path, policy):
    llm = FakeLLM(path)
    backend = _vllm(llm, policy.tokenizer)
    backend.sleep()
    assert llm.calls[-1] == ("sleep", 2)
    with pytest.raises(EngineError, match="never reloaded"):
        backend.generate(ROWS[:1], GenerationConfig(max_new_tokens=2), STOPS)
    backend.load_weights(layer_chunks(policy.model))
    backend.wake_up()
    assert [c[0] for c in llm.calls[-2:]] == ["wake_up", "reset_prefix_cache"]
    assert ("wake_up", ("weights",)) in llm.calls and ("wake_up", ("kv_cache",)) in llm.calls
    for name, param in policy.model.named_parameters():
        assert torch.equal(
            dict(llm.module.named_parameters())[name], param.detach().to(torch.bfloat16).float()
        )


def test_openai_backend_returns_the_servers_ids_and_logprobs(path, policy):
    llm = FakeLLM(path)
    with FakeCompletionsServer(llm) as server:
        backend = OpenAIBackend(server.url + "/v1", policy.tokenizer, retries=0)
        torch.manual_seed(0)
        outs = backend.generate(ROWS, GenerationConfig(max_new_tokens=5), STOPS)
        bodies = [b for p, b in server.requests if p == "/v1/completions"]
        assert len(bodies) == 3 and all(b["model"] == "fake-model" for b in bodies)
        for body in bodies:
            assert (
                body["stop"] == list(STOPS) and body["include_stop_str_in_output"] and body["logprobs"] == 1
            )
            assert body["return_token_ids"] and body["return_tokens_as_token_ids"]
        by_prompt = {tuple(b["prompt"]): b for b in bodies}
        assert set(by_prompt) == {tuple(r.tolist()) for r in ROWS}
        assert sorted(o.token_ids.tolist() for o in outs) == sorted(ids for ids, _ in llm.produced.values())
        for out in outs:
            (lp,) = [lp for ids, lp in llm.produced.values() if ids == out.token_ids.tolist()]
            assert np.array_equal(out.logprobs, np.asarray(lp, np.float32))
        server.send_token_ids = False  # older servers: ids only as "token_id:<id>" strings
        (parsed,) = backend.generate(ROWS[:1], GenerationConfig(max_new_tokens=4), STOPS)
        assert parsed.token_ids.tolist() == list(llm.produced.values())[-1][0]
        backend.close()


def test_openai_backend_retries_5xx_and_reports_4xx_in_one_line(path, policy):
    with FakeCompletionsServer(FakeLLM(path)) as server:
        backend = OpenAIBackend(server.url, policy.tokenizer, model="fake-model", retries=2)
        server.fail_next = [503, 502]
        (out,) = backend.generate(ROWS[:1], GenerationConfig(max_new_tokens=3), STOPS)
        assert len(out.token_ids) >= 1
        server.fail_next = [400]
        with pytest.raises(EngineError) as caught:
            backend.generate(ROWS[:1], GenerationConfig(max_new_tokens=3), STOPS)
        message = str(caught.value)
        assert "\n" not in message and f"{server.url}/v1/completions" in message and "HTTP 400" in message
        wrong = OpenAIBackend(server.url, policy.tokenizer, model="no-such-model", retries=0)
        with pytest.raises(EngineError, match=r"HTTP 400: .*no-such-model"):
            wrong.generate(ROWS[:1], GenerationConfig(max_new_tokens=3), STOPS)
        backend.close()
        wrong.close()


@pytest.mark.parametrize("mode", ["sglang", "vllm_reload"])
def test_openai_weight_sync_reloads_a_bf16_checkpoint(path, policy, tmp_path, mode):
    llm = FakeLLM(path)
    sync_dir = str(tmp_path / "weights")
    trained = LLMPolicy.from_pretrained(path).model
    with torch.no_grad():
        for param in trained.parameters():
            param.add_(0.01)
    with FakeCompletionsServer(llm, model_dir=sync_dir) as server:
        backend = OpenAIBackend(
            server.url,
            policy.tokenizer,
            model="fake-model",
            weight_sync=mode,
            sync_dir=sync_dir,
            model_config=trained.config,
        )
        shards = backend.load_weights(layer_chunks(trained))
        assert shards == trained.config.num_hidden_layers + 2
        routes = [p for p, _ in server.requests]
        assert routes == (
            ["/update_weights_from_disk"] if mode == "sglang" else ["/collective_rpc", "/reset_prefix_cache"]
        )
        backend.close()
    engine = dict(llm.module.named_parameters())
    for name, param in trained.named_parameters():
        assert torch.equal(engine[name], param.detach().to(torch.bfloat16).float())


def _trainer(path, tmp_path, llm, **overrides):
    from agents.ppo.config import preset
    from agents.ppo.trainer import PPOTrainer

    settings = dict(
        model=path,
        rollout="vllm",
        device="cpu",
        env_kwargs=(
            ("world", "small"),
            ("num_objectives", 1),
            ("max_turns", 2),
            ("invalid_action", "penalize"),
        ),
        num_envs=2,
        episodes_per_step=4,
        mini_batch_episodes=2,
        micro_batch_episodes=2,
        max_new_tokens=6,
        kl_mode="none",
        old_logprobs="recompute",
        out_dir=str(tmp_path),
        progress=False,
        save_every=10**6,
    )
    return PPOTrainer(preset("tiny-cpu", **{**settings, **overrides}), engine=llm)


def test_trainer_syncs_the_engine_once_per_optimizer_step_and_reports_the_mismatch(path, tmp_path):
    llm = FakeLLM(path)
    trainer = _trainer(path, tmp_path, llm, total_steps=2)
    history = trainer.train()
    chunks = trainer.core.policy.config.num_hidden_layers + 2
    # 4 episodes in mini-batches of 2: two optimizer steps per update, each followed by one sync.
    assert [h["weight_syncs"] for h in history] == [2.0, 2.0] and trainer.engine_sync.syncs == 4
    assert sum(c[0] == "collective_rpc" for c in llm.calls) == 4 * chunks
    kinds = [
        c[0] if c[0] != "wake_up" else f"wake_up:{','.join(c[1])}" for c in llm.calls if c[0] != "add_request"
    ]
    step = [
        "sleep",
        "wake_up:weights",
        *["collective_rpc"] * (2 * chunks),
        "wake_up:kv_cache",
        "reset_prefix_cache",
    ]
    assert kinds == step * 2
    # Step 0: the engine holds the trainer's own fp32 weights, so the packed training forward on the
    # engine's token ids reproduces the engine's log-probs; step 1: bf16-synced weights, small gap.
    first, second = history
    assert first["engine_logprob_mismatch_mean"] < 1e-4 and first["engine_logprob_mismatch_max"] < 1e-3
    assert first["engine_logprob_mismatch_mean"] < second["engine_logprob_mismatch_mean"] < 0.1
    assert second["engine_logprob_mismatch_max"] >= second["engine_logprob_mismatch_mean"]
    assert 0 < second["tis_weight_mean"] <= 2.0 and 0 <= second["tis_capped_frac"] <= 1
    engine = dict(llm.module.named_parameters())
    for name, param in trainer.core.policy.named_parameters():
        assert torch.equal(engine[name], param.detach().to(torch.bfloat16).float())
    trainer.close()
    # A resumed run's fresh engine starts from the initial weights: loading the checkpoint syncs it.
    fresh = FakeLLM(path)
    resumed = _trainer(path, tmp_path, fresh, total_steps=2)
    assert resumed.load_checkpoint()
    engine = dict(fresh.module.named_parameters())
    for name, param in trainer.core.policy.named_parameters():
        assert torch.equal(engine[name], param.detach().to(torch.bfloat16).float())
    resumed.close()


def test_trainer_recomputes_old_logprobs_when_the_engines_are_another_quantity(path, tmp_path):
    llm = FakeLLM(path, logprobs_mode="raw_logprobs")
    trainer = _trainer(
        path,
        tmp_path,
        llm,
        total_steps=1,
        temperature=0.7,
        engine_logprobs="raw_logprobs",
        old_logprobs="rollout",
    )
    assert not trainer.sampler.backend.logprobs_exact
    (metrics,) = trainer.train()
    assert "tis_weight_mean" not in metrics  # TIS needs the behaviour policy's own log-probs
    assert metrics["engine_logprob_mismatch_mean"] > 1e-2  # raw vs log_softmax(logits / 0.7)
    assert metrics["approx_kl"] < 1e-3  # ratio against the trainer's recomputation, not the engine's
    trainer.close()
