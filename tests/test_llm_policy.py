"""The LLM policy: offline tiny model, prompt/context split, chat template, batched generation."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from agents.llm_policy import GenerationConfig, HFGenerateBackend, LLMPolicy, stop_strings_for  # noqa: E402
from agents.tiny_model import default_tiny_model, protocol_tokens  # noqa: E402

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def policy() -> LLMPolicy:
    return LLMPolicy.from_pretrained(default_tiny_model(), generation=GenerationConfig(max_new_tokens=12))


def test_tiny_model_is_cached_and_every_tag_is_one_token(policy):
    assert default_tiny_model() == default_tiny_model()
    for tag in protocol_tokens():
        ids = policy.tokenizer.encode(tag, add_special_tokens=False)
        assert len(ids) == 1 and policy.tokenizer.decode(ids) == tag
    assert policy.tokenizer.chat_template is None
    assert policy.model.config.model_type == "qwen2"


def test_word_level_names_are_one_token_wherever_they_stand():
    """A name read in a document must be the token the agent writes after "<answer>" or "Q1=",
    else copying it is a per-name mapping between two unrelated tokens. Checked on the tokenizer
    as ``AutoTokenizer`` loads it (transformers may swap the saved pre-tokenizer for Qwen2's)."""
    from transformers import AutoTokenizer

    from mem1_envs.qa.sources import load_world_source

    tokenizer = AutoTokenizer.from_pretrained(default_tiny_model(word_level=True))
    titles = load_world_source("small", 0).engine.titles
    for word in [*[t for t in titles if t.isalpha()][:20], "1981"]:
        alone = tokenizer.encode(word, add_special_tokens=False)
        for text in (f"born in {word}.", f"<answer>{word}</answer>", f"Q1={word} | Q2=x", f"({word})"):
            ids = tokenizer.encode(text, add_special_tokens=False)
            assert any(ids[i : i + len(alone)] == alone for i in range(len(ids))), (word, text)
        if word.isalpha():
            assert len(alone) == 1, word


def test_encode_shares_the_prompt_ids_across_turns(policy):
    prompt = "Answer the following questions: where was Varnel Oskaruth born?"
    first = policy.encode(prompt, prompt)
    later = policy.encode(
        prompt, prompt + "\n<think>x</think>\n<search>Varnel</search>\n<information>d</information>"
    )
    assert np.array_equal(first[0], later[0]) and first[1].size == 0
    assert policy.tokenizer.decode(np.concatenate(later).tolist()).endswith("</information>")
    with pytest.raises(ValueError, match="does not start with the task prompt"):
        policy.encode(prompt, "something else")


def test_chat_template_wraps_prompt_and_context(policy):
    tokenizer = policy.tokenizer
    tokenizer_copy = type(tokenizer).from_pretrained(default_tiny_model())
    tokenizer_copy.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    templated = LLMPolicy(policy.model, tokenizer_copy)
    assert (templated.template_prefix, templated.template_suffix) == ("<user>", "</user><assistant>")
    prompt_ids, context_ids = templated.encode("Q?", "Q? more")
    assert tokenizer_copy.decode(prompt_ids.tolist()) == "<user>Q?"
    assert tokenizer_copy.decode(context_ids.tolist()) == " more</user><assistant>"
    assert LLMPolicy(policy.model, tokenizer_copy, chat_template=False).template_prefix == ""


def test_batched_generation_log_probs_equal_unbatched_replay(policy):
    rng = np.random.default_rng(0)
    rows = [(rng.integers(5, 1500, n), rng.integers(5, 1500, m)) for n, m in [(9, 0), (4, 7), (13, 2)]]
    outputs = policy.generate(rows, seed=0)
    for (prompt, context), out in zip(rows, outputs, strict=True):
        assert out.token_ids.dtype == np.int64 and out.logprobs.shape == out.token_ids.shape
        assert 1 <= len(out.token_ids) <= 12
        ids = torch.as_tensor(np.concatenate([prompt, context, out.token_ids]))[None]
        with torch.no_grad():
            logits = policy.model(ids).logits[0].float()
        start = len(prompt) + len(context)
        replay = torch.log_softmax(logits[start - 1 : -1], -1).gather(-1, ids[0, start:, None])[:, 0]
        assert np.allclose(replay.numpy(), out.logprobs, atol=2e-5)
        assert out.text == policy.tokenizer.decode(out.token_ids.tolist())


def test_greedy_generation_is_deterministic(policy):
    greedy = LLMPolicy(
        policy.model, policy.tokenizer, generation=GenerationConfig(max_new_tokens=6, do_sample=False)
    )
    rows = [(np.array([5, 6, 7]), np.zeros(0, np.int64))]
    a, b = greedy.generate(rows), greedy.generate(rows)
    assert a[0].token_ids.tolist() == b[0].token_ids.tolist()


def test_response_ends_after_the_first_stop(policy):
    backend = HFGenerateBackend(policy.model, policy.tokenizer)
    tok = policy.tokenizer
    close = tok.encode("</search>", add_special_tokens=False)[0]
    ids = np.array([*tok.encode("<think>a</think><search>q", add_special_tokens=False), close, 7, close])
    assert backend._end(ids, ("</search>", "</answer>"), {close}) == (len(ids) - 2, "stop")
    # A stop string that is not one token is found in the decoded tail.
    words = np.array(tok.encode("hello world and more", add_special_tokens=False))
    end, finish = backend._end(words, ("rld",), set())
    assert finish == "stop" and tok.decode(words[:end].tolist()).endswith("world")
    assert backend._end(words, ("zzz",), set()) == (len(words), "length")
    assert stop_strings_for("paper") == ("</query>", "</answer>")


def test_generation_config_rejects_bad_values():
    with pytest.raises(ValueError, match="temperature must be > 0, got 0"):
        GenerationConfig(temperature=0)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1, got 0"):
        GenerationConfig(max_new_tokens=0)
    with pytest.raises(ValueError, match="top_p must be in"):
        GenerationConfig(top_p=1.5)
