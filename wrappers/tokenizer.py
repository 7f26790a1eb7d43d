"""The project's default offline tokenizers: word-level (built from an env's own text) and bytes.

No download and no extra package: :class:`WordTokenizer` splits text exactly like the envs'
default token counter (:func:`mem1_envs.memory.count_tokens`: a run of letters, digits or ``_``
is one token, any other non-space character is one token), so the number of ids it gives
equals the ``context_tokens`` the env reports. Its vocabulary is built from text the env can
show (for ``MEM1-MultiQA-v0``: the world's passages, its questions and the prompt), most
frequent first; anything else maps to ``[UNK]``. The same class is used whether or not the
``tokenizers`` library is installed, so ids are identical on every install;
:meth:`WordTokenizer.to_tokenizers` exports an equal ``tokenizers.Tokenizer`` where that
library is installed (for Hugging Face pipelines). :class:`ByteTokenizer` (UTF-8 bytes) is the
fallback for an env whose text is not known in advance.

>>> tokenizer = WordTokenizer.from_texts(["Oslo is a city.", "Bergen is a city."])
>>> tokenizer.encode("Oslo is a town.")
[7, 5, 3, 1, 2]
>>> tokenizer.decode(tokenizer.encode("Oslo is a city."))
'Oslo is a city .'
>>> ByteTokenizer().encode("Hi")
[74, 107]
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

# The same split as mem1_envs.memory.count_tokens (tests check the counts agree).
_TOKEN = re.compile(r"\w+|[^\w\s]")

PAD, UNK = "[PAD]", "[UNK]"


class WordTokenizer:
    """Word-level tokenizer with a fixed vocabulary; id 0 is ``[PAD]``, id 1 is ``[UNK]``.

    Args:
        vocabulary: the tokens, in id order; must start with ``[PAD]``, ``[UNK]``.
    """

    pad_token_id = 0
    unk_token_id = 1

    def __init__(self, vocabulary: Iterable[str]):
        self.vocabulary = list(vocabulary)
        if self.vocabulary[:2] != [PAD, UNK]:
            raise ValueError(f"vocabulary must start with {[PAD, UNK]}, got {self.vocabulary[:2]}")
        if len(set(self.vocabulary)) != len(self.vocabulary):
            raise ValueError("vocabulary has duplicate tokens")
        self._ids = {token: index for index, token in enumerate(self.vocabulary)}

    @classmethod
    def from_texts(cls, texts: Iterable[str], max_size: int | None = None) -> WordTokenizer:
        """Vocabulary = the tokens of ``texts``, most frequent first (ties by token), capped at ``max_size``."""
        if max_size is not None and max_size < 3:
            raise ValueError(f"max_size must be >= 3 or None, got {max_size}")
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(_TOKEN.findall(text))
        ranked = sorted(counts, key=lambda token: (-counts[token], token))
        if max_size is not None:
            ranked = ranked[: max_size - 2]
        return cls([PAD, UNK, *ranked])

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    def __len__(self) -> int:
        return len(self.vocabulary)

    def tokenize(self, text: str) -> list[str]:
        return _TOKEN.findall(text)

    def encode(self, text: str) -> list[int]:
        ids = self._ids
        return [ids.get(token, 1) for token in _TOKEN.findall(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Tokens joined by spaces, padding dropped (the split loses the original spacing)."""
        return " ".join(self.vocabulary[i] for i in ids if i != self.pad_token_id)

    def to_tokenizers(self) -> Any:
        """An equal ``tokenizers.Tokenizer`` (same split, same ids); needs ``pip install mem1-envs[train]``."""
        try:
            from tokenizers import Regex, Tokenizer, models, pre_tokenizers
        except ImportError as error:  # pragma: no cover - depends on the install
            raise ImportError(
                "WordTokenizer.to_tokenizers needs the tokenizers package: pip install mem1-envs[train]"
            ) from error
        tokenizer = Tokenizer(models.WordLevel(dict(self._ids), unk_token=UNK))
        # Split on white space first: "isolated" alone would also keep the spaces between matches.
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.WhitespaceSplit(),
                pre_tokenizers.Split(Regex(_TOKEN.pattern), behavior="isolated"),
            ]
        )
        tokenizer.add_special_tokens([PAD, UNK])
        return tokenizer


class ByteTokenizer:
    """UTF-8 bytes shifted by 2 (0 = ``[PAD]``, 1 = unused ``[UNK]``); vocabulary size 258."""

    pad_token_id = 0
    unk_token_id = 1
    vocab_size = 258

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> list[int]:
        return [byte + 2 for byte in text.encode("utf-8")]

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(i - 2 for i in ids if i >= 2).decode("utf-8", errors="replace")


_CACHE: dict[tuple[Any, ...], WordTokenizer] = {}


def multiqa_vocabulary_texts(env: Any) -> list[str]:
    """Every text a ``MEM1-MultiQA-v0`` env can show: passages, all questions, prompt, hints."""
    from mem1_envs import protocol as proto
    from mem1_envs.qa.sources import load_world_source

    base = env.unwrapped
    source = base._source or load_world_source(base.config.world, base.config.world_seed)
    engine = source.engine
    texts = [*map(str, engine.titles), *map(str, engine.texts), *(q.text for q in source.questions)]
    tags = " ".join(
        f"<{tag}> </{tag}>" for name in proto.PROTOCOLS for tag in proto.get_tag_set(name).all_tags
    )
    hints = [proto.turn_hint(n) for n in range(0, 4)]
    extra = "Answer the following questions: ? ; Your last response was invalid No documents found."
    return [*texts, base.task_prompt(), tags, *hints, extra, proto.render_documents([("Title", "text")])]


def default_tokenizer(env: Any) -> WordTokenizer | ByteTokenizer:
    """The default tokenizer for ``env``: word-level from its text where known, else bytes (e.g. the shop).

    ``MEM1-MultiQA-v0`` on its generated world gets a :class:`WordTokenizer` over that world
    (built once per world and process); an env with a ``vocabulary_texts()`` method gets one over
    those texts; any other env (the shop, MultiQA on real ``data``/``corpus``/``index``/``search``,
    whose vocabulary is open-ended: pass a Hugging Face tokenizer there) gets the
    :class:`ByteTokenizer`.
    """
    from mem1_envs.qa.env import MultiQAEnv

    base = env.unwrapped
    config = getattr(base, "config", None)
    on_world = config is not None and all(
        getattr(config, name, None) is None for name in ("data", "corpus", "index", "search")
    )
    if isinstance(base, MultiQAEnv) and on_world:
        key: tuple[Any, ...] = ("multiqa", base.config.world, base.config.world_seed, id(base._source))
        if key not in _CACHE:
            _CACHE[key] = WordTokenizer.from_texts(multiqa_vocabulary_texts(base))
        return _CACHE[key]
    texts = getattr(base, "vocabulary_texts", None)
    if callable(texts):
        return WordTokenizer.from_texts(texts())
    return ByteTokenizer()


__all__ = ["ByteTokenizer", "WordTokenizer", "default_tokenizer", "multiqa_vocabulary_texts"]
