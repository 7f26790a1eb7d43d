"""SFT from scripted episodes: exact encoding, loss on generated tokens only, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from script_import import load_script

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from agents.llm_policy import LLMPolicy  # noqa: E402
from agents.sft import scripted_records, sft_train  # noqa: E402
from agents.tiny_model import default_tiny_model  # noqa: E402
from mem1_envs.trajectory_torch import collate, forward_logprobs  # noqa: E402

pytestmark = pytest.mark.train


def test_scripted_records_are_encoded_like_rollouts():
    policy = LLMPolicy.from_pretrained(default_tiny_model())
    records, rewards = scripted_records(policy, {"world": "small"}, seeds=[0, 1, 2])
    assert rewards == [1.0, 1.0, 1.0]
    for record in records:
        assert record.turns[0].context_ids.size == 0  # turn 0 sees the prompt only
        last = policy.tokenizer.decode(record.turns[-1].generated_ids.tolist())
        assert last.startswith("<think>") and last.endswith("</answer>")
        assert record.turns[-1].reward == 1.0
        # turn k+1's context starts with turn k's response (MEM1: state + action, then the observation)
        for a, b in zip(record.turns, record.turns[1:], strict=False):
            text = policy.tokenizer.decode(b.context_ids.tolist())
            assert policy.tokenizer.decode(a.generated_ids.tolist()).split("</think>")[1] in text


def test_sft_lowers_the_loss_on_generated_tokens_only():
    policy = LLMPolicy.from_pretrained(default_tiny_model())
    records, _ = scripted_records(policy, {"world": "small"}, seeds=range(8))
    packed = [r.pack() for r in records]
    batch = collate(packed)
    with torch.no_grad():
        before = -forward_logprobs(policy.model, batch)[batch["loss_mask"]].mean().item()
    # Observation tokens carry no loss: changing them cannot change the loss mask's count.
    assert int(batch["loss_mask"].sum()) == sum(int(t.generated_ids.size) for r in records for t in r.turns)
    losses = sft_train(policy.model, records, epochs=3, lr=1e-2, batch_episodes=4)
    with torch.no_grad():
        after = -forward_logprobs(policy.model, batch)[batch["loss_mask"]].mean().item()
    assert len(losses) == 6 and np.isfinite(losses).all()
    assert after < before - 1.0


def test_train_sft_cli_saves_a_loadable_policy(tmp_path):
    summary = load_script("train_sft").main(
        ["--episodes", "4", "--batch-episodes", "2", "--out-dir", str(tmp_path)]
    )
    assert summary["steps"] == 2 and summary["scripted_mean_reward"] == 1.0
    saved = json.loads((tmp_path / "sft_summary.json").read_text())
    assert len(saved["losses"]) == 2
    reloaded = LLMPolicy.from_pretrained(str(tmp_path))
    assert reloaded.tokenizer.encode("</search>", add_special_tokens=False) == policy_tag_id()


def policy_tag_id():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_tiny_model()).encode("</search>", add_special_tokens=False)


def test_sft_batches_go_to_the_requested_device(monkeypatch):
    """``--device cuda`` used to train a CUDA model on CPU batches: the device reaches collate."""
    import mem1_envs.trajectory_torch as trajectory_torch

    seen = []
    real_collate = trajectory_torch.collate

    def spy(*args, **kwargs):
        seen.append(kwargs.get("device"))
        return real_collate(*args, **{**kwargs, "device": "cpu"})  # the model stays on the CPU

    monkeypatch.setattr(trajectory_torch, "collate", spy)
    policy = LLMPolicy.from_pretrained(default_tiny_model())
    records, _ = scripted_records(policy, {"world": "small"}, seeds=[0, 1])
    sft_train(policy.model, records, batch_episodes=2, device="meta")
    sft_train(policy.model, records, batch_episodes=2)  # default: the model's device
    assert seen == ["meta", torch.device("cpu")]


def test_train_sft_cli_passes_its_device(monkeypatch, tmp_path):
    import agents.sft

    calls = []
    monkeypatch.setattr(agents.sft, "sft_train", lambda model, records, **kw: calls.append(kw) or [1.0])
    load_script("train_sft").main(["--episodes", "2", "--device", "cpu", "--out-dir", str(tmp_path)])
    assert calls[0]["device"] == "cpu"


def test_renaming_replaces_each_name_consistently_and_nothing_else():
    from agents.rename import episode_tokens, name_roles, name_token_ids, rename_record
    from mem1_envs.qa.world import WORLD_SIZES, generate_world

    policy = LLMPolicy.from_pretrained(default_tiny_model(word_level=True))
    tokenizer = policy.tokenizer
    roles = name_roles([generate_world(WORLD_SIZES["small"], 0)])
    groups = [name_token_ids(tokenizer, role) for role in roles]
    name_ids = np.concatenate(groups)
    assert name_ids.size > 0.9 * sum(map(len, roles))  # word level: nearly every name is one token
    role_of = {token: role for role, group in enumerate(groups) for token in group.tolist()}
    records, _ = scripted_records(policy, {"world": "small", "num_objectives": 2}, seeds=[0, 1])
    rng = np.random.default_rng(0)
    for record in records:
        renamed = rename_record(record, groups, rng)
        before, after = episode_tokens(record), episode_tokens(renamed)
        is_name = np.isin(before, name_ids)
        assert (before[~is_name] == after[~is_name]).all()  # only names change
        pairs = set(zip(before[is_name].tolist(), after[is_name].tolist(), strict=True))
        assert all(role_of[a] == role_of[b] for a, b in pairs)  # a city stays a city
        assert len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})  # a bijection
        assert any(a != b for a, b in pairs)
        # The episode still reads: the answer names what the renamed documents say.
        answer = tokenizer.decode(renamed.turns[-1].generated_ids.tolist()).split("<answer>")[1]
        read = tokenizer.decode(np.concatenate([t.context_ids for t in renamed.turns]).tolist())
        assert all(part.strip().split()[0] in read for part in answer.removesuffix("</answer>").split(";"))
