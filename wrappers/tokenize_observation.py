"""``TokenizeObservation``: a text observation becomes fixed-shape token ids plus an attention mask."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from wrappers.tokenizer import default_tokenizer

SIDES = ("left", "right")


def _encoder(tokenizer: Any) -> tuple[Any, int, int]:
    """``(encode: str -> list[int], vocabulary size, pad id)`` for the tokenizers we accept."""
    if hasattr(tokenizer, "get_vocab_size") and hasattr(tokenizer, "encode"):  # tokenizers.Tokenizer
        pad = tokenizer.token_to_id("[PAD]")
        return (
            (lambda text: tokenizer.encode(text, add_special_tokens=False).ids),
            tokenizer.get_vocab_size(with_added_tokens=True),
            0 if pad is None else pad,
        )
    if hasattr(tokenizer, "encode") and hasattr(tokenizer, "__len__"):  # ours, or transformers
        pad = getattr(tokenizer, "pad_token_id", None)
        pad = 0 if pad is None else int(pad)
        try:
            tokenizer.encode("probe", add_special_tokens=False)
            encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
        except TypeError:
            encode = tokenizer.encode
        return encode, len(tokenizer), pad
    raise TypeError(
        "tokenizer must be None, a Hugging Face tokenizer, a tokenizers.Tokenizer or an object with "
        f"encode() and __len__(), got {tokenizer!r}"
    )


class TokenizeObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Replace a ``Text`` observation by ``{"input_ids": Box(int64), "attention_mask": MultiBinary}``.

    The text is encoded without special tokens, cut to ``max_length`` ids and padded with the
    tokenizer's pad id (``attention_mask`` is 1 on real tokens, 0 on padding; padding is always
    on the right). ``truncation_side="left"`` (the default) drops the *start* of a long
    context and keeps its end, where the latest internal state, action and observation are
    (the task prompt comes first, so it is what gets cut); ``"right"`` keeps the start.
    ``info["tokens_cut"]`` says how many ids were dropped.

    Args:
        env: an env with a ``Text`` observation space.
        tokenizer: None (the project's offline default, :func:`wrappers.tokenizer.default_tokenizer`:
            word-level over the env's own text for ``MEM1-MultiQA-v0``), a Hugging Face
            tokenizer, a ``tokenizers.Tokenizer``, or any object with ``encode`` and ``__len__``.
        max_length: ids per observation (>= 1).
        truncation_side: ``"left"`` or ``"right"``.

    >>> import gymnasium as gym, mem1_envs
    >>> env = TokenizeObservation(gym.make("MEM1-MultiQA-v0", world="small"), max_length=256)
    >>> observation, info = env.reset(seed=0)
    >>> observation["input_ids"].shape, observation["input_ids"].dtype
    ((256,), dtype('int64'))
    >>> int(observation["attention_mask"].sum()) == info["context_tokens"]
    True
    """

    def __init__(
        self, env: gym.Env, tokenizer: Any = None, max_length: int = 512, truncation_side: str = "left"
    ):
        gym.utils.RecordConstructorArgs.__init__(
            self, tokenizer=tokenizer, max_length=max_length, truncation_side=truncation_side
        )
        gym.ObservationWrapper.__init__(self, env)
        if not isinstance(env.observation_space, spaces.Text):
            raise TypeError(
                f"TokenizeObservation needs a Text observation space, got {env.observation_space}"
            )
        if not isinstance(max_length, int | np.integer) or isinstance(max_length, bool) or max_length < 1:
            raise ValueError(f"max_length must be an int >= 1, got {max_length!r}")
        if truncation_side not in SIDES:
            raise ValueError(f"truncation_side must be one of {SIDES}, got {truncation_side!r}")
        self.tokenizer = default_tokenizer(env) if tokenizer is None else tokenizer
        self._encode, self.vocab_size, self.pad_id = _encoder(self.tokenizer)
        self.max_length = int(max_length)
        self.truncation_side = truncation_side
        self.observation_space = spaces.Dict(
            {
                "input_ids": spaces.Box(0, self.vocab_size - 1, (self.max_length,), np.int64),
                "attention_mask": spaces.MultiBinary(self.max_length),
            }
        )
        self._cut = 0

    def observation(self, observation: str) -> dict[str, np.ndarray]:
        ids = list(self._encode(observation))
        self._cut = max(0, len(ids) - self.max_length)
        if self._cut:
            ids = ids[self._cut :] if self.truncation_side == "left" else ids[: self.max_length]
        input_ids = np.full(self.max_length, self.pad_id, dtype=np.int64)
        input_ids[: len(ids)] = ids
        mask = np.zeros(self.max_length, dtype=np.int8)
        mask[: len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        observation, info = super().reset(seed=seed, options=options)
        return observation, {**info, "tokens_cut": self._cut}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        observation, reward, terminated, truncated, info = super().step(action)
        return observation, reward, terminated, truncated, {**info, "tokens_cut": self._cut}
