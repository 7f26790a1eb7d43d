"""A tiny Qwen2-style model and a tokenizer trained offline on the generated world: no download.

Both are written with ``save_pretrained`` into a cache folder, so every later step (policy,
rollout, SFT, PPO, evaluation) loads them through ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` exactly as it would load a real checkpoint.

The tokenizer is a byte-level BPE trained with the ``tokenizers`` library on the world's
passages, its questions and the environment's instructions. Every protocol tag of every tag set
(``<think>``, ``</search>``, ``<IS>``, ...) and the hint markers are *added tokens*: a closing
action tag is one token, which makes stopping at it exact and cheap.

>>> import pytest; _ = pytest.importorskip("transformers")
>>> import tempfile
>>> folder = build_tiny_model(tempfile.mkdtemp(), world="small", vocab_size=600, hidden_size=32)
>>> from transformers import AutoTokenizer
>>> tokenizer = AutoTokenizer.from_pretrained(folder)
>>> len(tokenizer.encode("</search>", add_special_tokens=False))
1
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from typing import Any

from mem1_envs import protocol as proto

__all__ = ["TinyModelConfig", "build_tiny_model", "default_tiny_model", "protocol_tokens"]

PAD, EOS = "<|pad|>", "<|endoftext|>"
FORMAT = 2  # bump when the recipe changes, so stale cached folders are rebuilt


@dataclass(frozen=True)
class TinyModelConfig:
    """The recipe of the default tiny model (the cache key hashes it)."""

    world: str = "small"
    """Generated world whose text trains the tokenizer."""
    world_seed: int = 0
    """Seed of that world."""
    extra_world_seeds: tuple[int, ...] = ()
    """Seeds of further worlds whose text trains the tokenizer too (a model trained across
    worlds, whose invented names differ, then has every name as a word of its own)."""
    vocab_size: int = 2048
    """BPE vocabulary size (added tokens included); ignored when ``word_level``."""
    word_level: bool = False
    """Merge until every word of the world is one token (the BPE keeps its byte fallback, so any
    text still round-trips): an invented name is then one token, which a small model copies
    from a retrieved document far more easily than a run of sub-word pieces."""
    hidden_size: int = 64
    """Model width."""
    intermediate_size: int = 192
    """MLP width."""
    num_hidden_layers: int = 2
    """Transformer layers."""
    num_attention_heads: int = 4
    """Query heads."""
    num_key_value_heads: int = 2
    """Key/value heads (grouped-query attention, as in Qwen2)."""
    max_position_embeddings: int = 4096
    """Longest position the rotary embedding is built for."""
    seed: int = 0
    """Seed of the random initial weights."""


def protocol_tokens() -> list[str]:
    """Every tag of every protocol, opening and closing, plus the hint markers."""
    tokens: list[str] = []
    for tags in proto.PROTOCOLS.values():
        for name in tags.all_tags:
            for token in (f"<{name}>", f"</{name}>"):
                if token not in tokens:
                    tokens.append(token)
    return [*tokens, "[HINT]", "[/HINT]"]


def _corpus(world: str, world_seeds: tuple[int, ...], word_level: bool = False) -> list[str]:
    """Text the tokenizer learns from: passages, questions, instructions, rendered documents.

    ``word_level`` adds every word as an agent's state writes it (``Q1=Name``, no space before
    the name), so that spelling is one token too.
    """
    from mem1_envs.qa.env import INSTRUCTIONS
    from mem1_envs.qa.sources import load_world_source

    texts: list[str] = []
    for world_seed in world_seeds:
        source = load_world_source(world, world_seed)
        engine: Any = source.engine
        texts += [f"Doc 1(Title: {t}) {x}" for t, x in zip(engine.titles, engine.texts, strict=True)]
        texts += [q.text for q in source.questions]
    for tags in proto.PROTOCOLS.values():
        if not any(kind == "search" for _, kind in tags.actions):
            continue  # shop tag sets: their tags are added tokens anyway
        texts.append(
            INSTRUCTIONS.format(
                state=tags.state,
                search=tags.tag_for("search"),
                answer=tags.tag_for("answer"),
                obs=tags.observation,
            )
            + "\nAnswer the following questions: "
        )
    texts += ["next=Q1.a#1 | Q1.b=x | Q2=y; You have 3 turns left. No documents found."] * 20
    if word_level:
        # The same words with no space before them (the byte-level pre-tokenizer keeps a
        # leading space in the token): "=".join splits them as a state's "Q1=Name" does.
        texts += ["=".join(text.split()) for text in texts]
    return texts


def build_tiny_model(folder: str, **recipe: Any) -> str:
    """Train the tokenizer, build the random model, ``save_pretrained`` both into ``folder``."""
    try:
        import torch
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "the tiny model needs torch, transformers and tokenizers: pip install mem1-envs[train]"
        ) from error
    config = TinyModelConfig(**recipe)
    special = [PAD, EOS]
    added = protocol_tokens()
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if config.word_level:
        # Train with a space before a capitalised word or a number split off, so the vocabulary
        # has no "space+Name" merge. A name is then the same token wherever it stands: after a
        # space in a document, right after "<answer>" or "Q1=" in what the agent writes. Glued
        # to the space, the two spellings would be unrelated tokens, and a name first seen in a
        # document could not be copied into an answer. The vocabulary carries this, not the
        # pre-tokenizer: transformers loads a qwen2 folder with Qwen2's own pre-tokenizer.
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(" (?=[A-Z0-9])"), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False),
            ]
        )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        # Word level: a budget no world reaches, so merging stops only when every word is whole.
        vocab_size=(1 << 22) if config.word_level else config.vocab_size - len(added),
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(
        _corpus(config.world, (config.world_seed, *config.extra_world_seeds), config.word_level),
        trainer=trainer,
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, eos_token=EOS)
    # Tags as added (not special) tokens: decode() keeps them, so generated text parses.
    fast.add_tokens(added)
    os.makedirs(folder, exist_ok=True)
    fast.save_pretrained(folder)
    torch.manual_seed(config.seed)
    model_config = Qwen2Config(
        vocab_size=len(fast),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id,
        bos_token_id=fast.eos_token_id,
    )
    model = Qwen2ForCausalLM(model_config)
    model.generation_config.pad_token_id = fast.pad_token_id
    model.generation_config.eos_token_id = fast.eos_token_id
    model.save_pretrained(folder)
    with open(os.path.join(folder, "tiny_recipe.json"), "w", encoding="utf-8") as handle:
        json.dump({"format": FORMAT, **asdict(config)}, handle, indent=1)
    return folder


def default_tiny_model(cache: str | None = None, **recipe: Any) -> str:
    """The cached folder of the tiny model for ``recipe`` (built on first use, in ~1 s).

    The folder lives under ``$MEM1_ENVS_CACHE`` (default ``~/.cache/mem1_envs``)/``tiny-model-*``.
    """
    from mem1_envs.qa.sources import cache_dir

    config = TinyModelConfig(**recipe)
    digest = hashlib.sha1(
        json.dumps({"format": FORMAT, **asdict(config)}, sort_keys=True).encode()
    ).hexdigest()
    folder = os.path.join(cache or cache_dir(), f"tiny-model-{digest[:12]}")
    if not os.path.exists(os.path.join(folder, "tiny_recipe.json")):
        staging = f"{folder}.tmp{os.getpid()}"
        build_tiny_model(staging, **recipe)
        try:
            os.replace(staging, folder)
        except OSError:  # another process finished first: theirs is identical
            pass
    return folder
