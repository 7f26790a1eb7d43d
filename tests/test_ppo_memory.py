"""Memory layout pieces on one process: chunked log-probs (values and gradients equal the whole
computation), the HF backend's per-step log-prob gathering (equal to keeping every step's logits,
memory by rows x steps, not x vocabulary), and the memory-budget script."""

from __future__ import annotations

import numpy as np
import pytest
from script_import import load_script

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from agents.llm_policy import GenerationConfig, HFGenerateBackend, stop_strings_for  # noqa: E402
from agents.ppo.model import ActorCritic  # noqa: E402
from agents.tiny_model import default_tiny_model  # noqa: E402
from mem1_envs.trajectory import pack_exact  # noqa: E402
from mem1_envs.trajectory_torch import collate  # noqa: E402

pytestmark = pytest.mark.train


def _tiny():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = default_tiny_model()
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), AutoTokenizer.from_pretrained(
        path
    )


def test_chunked_logprobs_equal_whole_values_and_gradients():
    policy, _ = _tiny()
    torch.manual_seed(0)
    module = ActorCritic(policy, critic="value_head", temperature=0.7)
    torch.nn.init.normal_(module.value_head.weight)  # non-zero, so value gradients reach the trunk
    rng = np.random.default_rng(0)
    episodes = [
        pack_exact(
            rng.integers(3, 2000, 6),
            [([], rng.integers(3, 2000, 5)), (rng.integers(3, 2000, 3), rng.integers(3, 2000, 4))],
        ),
        pack_exact(rng.integers(3, 2000, 4), [([], rng.integers(3, 2000, 7))]),
    ]
    batch = collate(episodes)
    weights = torch.randn(batch["loss_mask"].shape, generator=torch.Generator().manual_seed(1))
    results = []
    for chunk in (10**6, 3):  # one chunk (the whole [N, V]) vs chunks of 3 of the 16 loss tokens
        module.logprob_chunk = chunk
        module.zero_grad(set_to_none=True)
        out = module(batch, need_entropy=True)
        loss = (
            (out["logprobs"] * weights).sum() + (out["entropy"] * weights.flip(0)).sum() + out["values"].sum()
        )
        loss.backward()
        grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
        results.append(({k: v.detach() for k, v in out.items()}, grads))
    (whole, whole_grads), (parts, part_grads) = results
    assert int(batch["loss_mask"].sum()) == 16
    # Within 1e-6 relative to each tensor's scale: a [3, H] and a [16, H] matmul round differently
    # in fp32 (entropies are ~7.6); a wrong chunk boundary or a lost gradient would be O(1).
    for key in ("logprobs", "entropy", "values"):
        scale = max(float(whole[key].abs().max()), 1.0)
        assert float((whole[key] - parts[key]).abs().max()) <= 1e-6 * scale, key
    assert (
        whole_grads.keys() == part_grads.keys() and "policy.model.embed_tokens.weight" in whole_grads
    )  # tied head
    for name, grad in whole_grads.items():
        scale = max(float(grad.abs().max()), 1.0)
        assert float((grad - part_grads[name]).abs().max()) <= 1e-6 * scale, name
    assert float(whole_grads["policy.model.layers.0.mlp.down_proj.weight"].abs().max()) > 0


def _old_generate(model, tokenizer, rows, config, stop_strings):
    """The backend's former implementation: every step's logits kept (``output_logits=True``)."""
    backend = HFGenerateBackend(model, tokenizer)
    width = max(len(r) for r in rows)
    batch = torch.full((len(rows), width), backend.pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for b, ids in enumerate(rows):
        batch[b, width - len(ids) :] = torch.as_tensor(ids)
        attention[b, width - len(ids) :] = 1
    stop_ids = backend._single_token_stops(stop_strings) or []
    options = dict(
        max_new_tokens=config.max_new_tokens, do_sample=config.do_sample, pad_token_id=backend.pad_id
    )
    options.update(return_dict_in_generate=True, output_logits=True, use_cache=True)
    options["eos_token_id"] = sorted(backend.eos_ids | set(stop_ids))
    if config.do_sample:
        options.update(temperature=config.temperature, top_p=config.top_p, top_k=0)
    with torch.no_grad():
        out = model.generate(input_ids=batch, attention_mask=attention, **options)
    generated = out.sequences[:, width:]
    logits = torch.stack(out.logits, dim=1).float() / config.temperature
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, generated[..., None])[..., 0]
    results = []
    for b in range(len(rows)):
        end, _ = backend._end(generated[b].numpy(), stop_strings, set(stop_ids))
        results.append((generated[b, :end].numpy(), logprobs[b, :end].numpy()))
    return results


@pytest.mark.parametrize("do_sample", [True, False])
def test_hf_backend_logprobs_equal_keeping_every_steps_logits(do_sample):
    model, tokenizer = _tiny()
    model.eval()
    rows = [np.array(tokenizer.encode("Answer the following questions: who?")), np.array([5, 6, 7])]
    config = GenerationConfig(max_new_tokens=12, temperature=0.7, top_p=0.9, do_sample=do_sample)
    stops = stop_strings_for("mem1")
    torch.manual_seed(3)
    old = _old_generate(model, tokenizer, rows, config, stops)
    torch.manual_seed(3)
    new = HFGenerateBackend(model, tokenizer).generate(rows, config, stops)
    assert sum(len(ids) for ids, _ in old) > 2
    for (ids, logprobs), out in zip(old, new, strict=True):
        assert np.array_equal(ids, out.token_ids)
        assert np.array_equal(logprobs, out.logprobs)  # exactly: the same ops on the same rows


def _peak_rss_during(function):
    """(result, peak resident bytes above the resident bytes at the start) of ``function()``."""

    def status(field):
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(field)

    with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")  # resets the peak (VmHWM) to the current resident size
    start = status("VmRSS")
    result = function()
    return result, status("VmHWM") - start


def test_hf_backend_logprob_memory_grows_with_rows_times_steps_not_vocabulary():
    import os

    from transformers import Qwen2Config, Qwen2ForCausalLM

    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux /proc to read peak memory")
    _, tokenizer = _tiny()
    vocab, rows, steps = 100_000, 4, 64
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    model = Qwen2ForCausalLM(config).eval()
    inputs = [np.array([5, 6, 7, 8])] * rows
    settings = GenerationConfig(max_new_tokens=steps, temperature=1.0)
    all_logits = rows * steps * vocab * 4  # bytes of every step's fp32 logits
    backend = HFGenerateBackend(model, tokenizer)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one malloc arena: the probe's noise drops from ~50 MB to ~1 MB
    try:
        backend.generate(inputs, GenerationConfig(max_new_tokens=4), ())  # first-call allocations
        torch.manual_seed(0)
        new, new_peak = _peak_rss_during(lambda: backend.generate(inputs, settings, ()))
        torch.manual_seed(0)
        old, old_peak = _peak_rss_during(lambda: _old_generate(model, tokenizer, inputs, settings, ()))
    finally:
        torch.set_num_threads(threads)
    assert all(len(out.token_ids) == steps for out in new)  # no row stopped early
    for (ids, logprobs), out in zip(old, new, strict=True):
        assert np.array_equal(ids, out.token_ids) and np.array_equal(logprobs, out.logprobs)
    # The probe sees the former layout (every step's logits, then stacked: >= 1x), and the new one
    # stays far below one copy: one [rows, V] buffer per step plus [rows] per step.
    assert old_peak > all_logits, (old_peak, all_logits)
    assert new_peak < all_logits / 4, (new_peak, all_logits)


def test_memory_budget_script_prints_tables_and_verdicts(capsys):
    budget = load_script("memory_budget")
    from agents.ppo.config import preset

    rows = budget.budget(budget.MODELS["qwen2.5-7b"], preset("qwen2.5-7b"), gpus=8, gpu_gib=80)
    by_name = {row.name: row for row in rows.items}
    # 7.6e9 fp32 master parameters over 8 GPUs: 3.55 GiB
    assert by_name["policy parameters (fp32 master shards)"].gib == pytest.approx(
        7.6156e9 * 4 / 8 / 2**30, rel=1e-3
    )
    assert rows.train_peak_gib > 0 and rows.rollout_peak_gib > 0
    assert budget.main(["--model", "qwen2.5-7b", "--gpus", "8", "--gpu-gib", "80"]) in (0, 1)
    out = capsys.readouterr().out
    assert "qwen2.5-7b" in out and ("FITS" in out or "DOES NOT FIT" in out)
    # One GPU cannot hold 7B with Adam: the verdict must say so.
    assert budget.main(["--model", "qwen2.5-7b", "--gpus", "1", "--gpu-gib", "80"]) == 1
    assert "DOES NOT FIT" in capsys.readouterr().out
