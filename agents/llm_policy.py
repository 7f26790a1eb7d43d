"""An LLM policy: any local Hugging Face causal LM + tokenizer acting in the turn protocol.

The policy turns an environment observation (the agent's whole context, which always starts
with the task prompt) into model input ids in two parts, tokenized separately::

    [chat-template prefix + task prompt]  [rest of the context + chat-template suffix]
     prompt_ids: identical every turn     context_ids: this turn's bounded context

so the prompt's ids are one shared prefix across turns, exactly what ``pack_exact`` expects.
It then generates in one batch across environments (sampling with temperature/top-p, a per-turn
token limit, stopping at the protocol's closing action tags) and returns, per row, the text, the
generated ids *as produced* and their log-probs (``log_softmax(logits / temperature)``, the
quantity the trainer recomputes). Generation sits behind :class:`GenerationBackend`; the default
:class:`HFGenerateBackend` uses ``model.generate`` with its KV cache, and a server backend
(vLLM/SGLang) only has to implement ``generate``.

>>> import pytest; _ = pytest.importorskip("transformers")
>>> import tempfile
>>> from agents.tiny_model import default_tiny_model
>>> policy = LLMPolicy.from_pretrained(default_tiny_model(), generation=GenerationConfig(max_new_tokens=5))
>>> prompt_ids, context_ids = policy.encode("Q: who?", "Q: who?\\n<think>x</think>")
>>> policy.tokenizer.decode(list(prompt_ids) + list(context_ids))
'Q: who?\\n<think>x</think>'
>>> out = policy.generate([(prompt_ids, context_ids)], seed=0)[0]
>>> len(out.token_ids) == len(out.logprobs) <= 5
True
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mem1_envs import protocol as proto

__all__ = [
    "Generation",
    "GenerationBackend",
    "GenerationConfig",
    "HFGenerateBackend",
    "LLMAgent",
    "LLMPolicy",
    "stop_strings_for",
]

_SENTINEL = "\u2063MEM1-CONTENT\u2063"


def _require_transformers() -> Any:
    try:
        import torch
        import transformers
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "the LLM policy needs torch and transformers: pip install mem1-envs[train]"
        ) from error
    return torch, transformers


def stop_strings_for(protocol: str | proto.TagSet) -> tuple[str, ...]:
    """The closing tags of a protocol's actions: a response ends right after one of them.

    >>> stop_strings_for("mem1")
    ('</search>', '</answer>')
    """
    tags = proto.get_tag_set(protocol)
    return tuple(f"</{name}>" for name, _ in tags.actions)


@dataclass(frozen=True)
class GenerationConfig:
    """How one turn is sampled."""

    max_new_tokens: int = 256
    """Per-turn limit of generated tokens (MEM1: 1000)."""
    temperature: float = 1.0
    """Sampling temperature; the returned log-probs are of ``logits / temperature``."""
    top_p: float = 1.0
    """Nucleus sampling mass (MEM1: 0.95)."""
    do_sample: bool = True
    """False: greedy decoding."""
    stop_strings: tuple[str, ...] | None = None
    """Strings that end a response (None: the protocol's closing action tags)."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True)
class Generation:
    """One generated response.

    Attributes:
        text: the decoded response.
        token_ids: the generated ids as the model produced them (never re-tokenized).
        logprobs: ``log_softmax(logits / temperature)`` of each generated id, float32.
        finish: ``"stop"`` (a stop string), ``"eos"`` or ``"length"``.
    """

    text: str
    token_ids: np.ndarray
    logprobs: np.ndarray
    finish: str


class GenerationBackend(Protocol):
    """Generate one response per input row (``input_ids`` = prompt ids + context ids)."""

    def generate(
        self, input_ids: Sequence[np.ndarray], config: GenerationConfig, stop_strings: tuple[str, ...]
    ) -> list[Generation]: ...


def _chosen_logprobs_recorder(temperature: float) -> Any:
    """A logits processor that keeps each step's *chosen* token's ``log_softmax(raw / T)``.

    ``output_logits=True`` would keep one fp32 ``[B, V]`` tensor per decoding step (16 rows x
    1,000 steps x 152k vocabulary: 10 GB). The token sampled at step ``t`` is only known after
    the processors ran, but it is the last column of ``input_ids`` when the processor is called
    at step ``t + 1``: so only the last step's ``[B, V]`` log-probs are kept, gathered one step
    later, and the final step is gathered from the returned sequences (:meth:`finish`). Memory:
    one ``[B, V]`` buffer plus ``[B]`` per step. It must run before any warper (temperature,
    top-p), which the backend guarantees by passing the warpers itself, after the recorder.
    """
    torch, transformers = _require_transformers()

    class ChosenLogprobs(transformers.LogitsProcessor):
        def __init__(self) -> None:
            self.last: Any = None  # [B, V] log-probs of the latest step
            self.rows: list[Any] = []  # [B] per step whose token is known

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if self.last is not None:
                self.rows.append(self.last.gather(-1, input_ids[:, -1:].to(self.last.device))[:, 0])
            self.last = torch.log_softmax(scores.float() / temperature, dim=-1)
            return scores

        def finish(self, generated: Any) -> Any:
            """``[B, T]`` log-probs of the ``[B, T]`` generated ids."""
            if self.last is not None:
                if len(self.rows) < generated.shape[1]:
                    column = generated[:, len(self.rows) : len(self.rows) + 1].to(self.last.device)
                    self.rows.append(self.last.gather(-1, column)[:, 0])
                self.last = None
            if not self.rows:
                return torch.zeros(generated.shape, dtype=torch.float32)
            return torch.stack(self.rows, dim=1)[:, : generated.shape[1]].cpu()

    return ChosenLogprobs()


class HFGenerateBackend:
    """``model.generate`` with left padding and its KV cache; log-probs of the raw logits gathered
    step by step (:func:`_chosen_logprobs_recorder`), never every step's logits."""

    def __init__(self, model: Any, tokenizer: Any):
        self.model = model
        self.tokenizer = tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ValueError("the tokenizer has neither a pad token nor an eos token")
        self.pad_id = int(pad)
        eos = tokenizer.eos_token_id
        self.eos_ids = {int(eos)} if eos is not None else set()

    def _single_token_stops(self, stop_strings: tuple[str, ...]) -> list[int] | None:
        """Stop strings that are each one added token can stop as eos ids (cheap and exact)."""
        ids = []
        for stop in stop_strings:
            encoded = self.tokenizer.encode(stop, add_special_tokens=False)
            if len(encoded) != 1 or self.tokenizer.decode(encoded) != stop:
                return None
            ids.append(int(encoded[0]))
        return ids

    def generate(
        self, input_ids: Sequence[np.ndarray], config: GenerationConfig, stop_strings: tuple[str, ...]
    ) -> list[Generation]:
        torch, _ = _require_transformers()
        device = next(self.model.parameters()).device
        rows = len(input_ids)
        width = max(len(ids) for ids in input_ids)
        batch = torch.full((rows, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((rows, width), dtype=torch.long)
        for b, ids in enumerate(input_ids):
            if len(ids):
                batch[b, width - len(ids) :] = torch.as_tensor(np.asarray(ids, np.int64))
                attention[b, width - len(ids) :] = 1
        stop_ids = self._single_token_stops(stop_strings)
        _, transformers = _require_transformers()
        recorder = _chosen_logprobs_recorder(config.temperature)
        processors = transformers.LogitsProcessorList([recorder])
        if config.do_sample:
            # generate() puts its own warpers before custom processors: pass them after the
            # recorder instead (same classes, same order as generate's), and neutral values to generate.
            if config.temperature != 1.0:
                processors.append(transformers.TemperatureLogitsWarper(config.temperature))
            if config.top_p < 1.0:
                processors.append(transformers.TopPLogitsWarper(config.top_p))
        options: dict[str, Any] = {
            "max_new_tokens": config.max_new_tokens,
            "do_sample": config.do_sample,
            "pad_token_id": self.pad_id,
            "return_dict_in_generate": True,
            "use_cache": True,
            "logits_processor": processors,
        }
        if config.do_sample:
            options.update(temperature=1.0, top_p=1.0, top_k=0)
        if stop_ids is not None:
            options["eos_token_id"] = sorted(self.eos_ids | set(stop_ids))
        else:
            options.update(stop_strings=list(stop_strings), tokenizer=self.tokenizer)
            if self.eos_ids:
                options["eos_token_id"] = sorted(self.eos_ids)
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            out = self.model.generate(
                input_ids=batch.to(device), attention_mask=attention.to(device), **options
            )
        self.model.train(was_training)
        generated = out.sequences[:, width:].cpu()
        logprobs = recorder.finish(generated)  # [B, T]
        results = []
        stop_set = set(stop_ids or [])
        for b in range(rows):
            ids = generated[b].numpy()
            end, finish = self._end(ids, stop_strings, stop_set)
            ids = ids[:end].copy()
            results.append(
                Generation(
                    text=self.tokenizer.decode(ids, skip_special_tokens=False),
                    token_ids=ids.astype(np.int64),
                    logprobs=logprobs[b, :end].cpu().numpy().astype(np.float32),
                    finish=finish,
                )
            )
        return results

    def _end(self, ids: np.ndarray, stop_strings: tuple[str, ...], stop_ids: set[int]) -> tuple[int, str]:
        """Where a row's response ends: after the first eos or completed stop string."""
        window = 1 + max((len(s) for s in stop_strings), default=0)  # a token is >= 1 character
        for k, token in enumerate(ids.tolist()):
            if token in stop_ids:
                return k + 1, "stop"
            if token in self.eos_ids:
                return k + 1, "eos"
            if not stop_ids and stop_strings:
                tail = self.tokenizer.decode(ids[max(0, k + 1 - window) : k + 1], skip_special_tokens=False)
                if any(stop in tail for stop in stop_strings):
                    return k + 1, "stop"
        return len(ids), "length"


class LLMPolicy:
    """A causal LM acting in the turn protocol (see the module docstring).

    Args:
        model: a loaded Hugging Face causal LM.
        tokenizer: its tokenizer.
        protocol: tag set whose closing action tags stop a response.
        generation: sampling settings.
        backend: generation backend (default :class:`HFGenerateBackend`).
        chat_template: apply the tokenizer's chat template (None: when it has one).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        protocol: str = "mem1",
        generation: GenerationConfig | None = None,
        backend: GenerationBackend | None = None,
        chat_template: bool | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.protocol = protocol
        self.generation = generation or GenerationConfig()
        self.backend = backend or HFGenerateBackend(model, tokenizer)
        self.stop_strings = self.generation.stop_strings or stop_strings_for(protocol)
        use_template = getattr(tokenizer, "chat_template", None) is not None
        if chat_template and not use_template:
            raise ValueError("chat_template=True but the tokenizer has no chat template")
        self.template_prefix, self.template_suffix = "", ""
        if chat_template is not False and use_template:
            rendered = tokenizer.apply_chat_template(
                [{"role": "user", "content": _SENTINEL}], tokenize=False, add_generation_prompt=True
            )
            self.template_prefix, self.template_suffix = rendered.split(_SENTINEL)
        self._prompt_cache: dict[str, np.ndarray] = {}

    @classmethod
    def from_pretrained(
        cls, path: str, *, device: str = "cpu", dtype: str = "float32", **options: Any
    ) -> LLMPolicy:
        """Load a model directory (or a hub name where there is network) and its tokenizer."""
        torch, transformers = _require_transformers()
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(
            device
        )
        model.eval()
        return cls(model, tokenizer, **options)

    def _encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tokenizer.encode(text, add_special_tokens=False), np.int64)

    def encode(self, prompt: str, observation: str) -> tuple[np.ndarray, np.ndarray]:
        """``(prompt_ids, context_ids)`` of one observation; ``observation`` must start with ``prompt``."""
        if not observation.startswith(prompt):
            raise ValueError("the observation does not start with the task prompt; cannot split the prefix")
        prompt_ids = self._prompt_cache.get(prompt)
        if prompt_ids is None:
            prompt_ids = self._encode(self.template_prefix + prompt)
            if len(self._prompt_cache) > 4096:
                self._prompt_cache.clear()
            self._prompt_cache[prompt] = prompt_ids
        rest = observation[len(prompt) :] + self.template_suffix
        return prompt_ids, self._encode(rest) if rest else np.zeros(0, np.int64)

    def generate(
        self, inputs: Sequence[tuple[np.ndarray, np.ndarray]], *, seed: int | None = None
    ) -> list[Generation]:
        """One response per ``(prompt_ids, context_ids)`` row, generated in one batch."""
        torch, _ = _require_transformers()
        if seed is not None:
            torch.manual_seed(seed)
        ids = [np.concatenate([p, c]) for p, c in inputs]
        if any(len(row) == 0 for row in ids):
            raise ValueError("every input row needs at least one token, got an empty prompt and context")
        return self.backend.generate(ids, self.generation, self.stop_strings)

    def as_agent(self) -> LLMAgent:
        """This policy behind the one-environment :class:`agents.base.Agent` protocol."""
        return LLMAgent(self)


class LLMAgent:
    """One-environment adapter: the task prompt is the env's ``info["prompt"]``."""

    def __init__(self, policy: LLMPolicy):
        self.policy = policy
        self.prompt: str | None = None
        self.generate_seconds = 0.0  # totals over every episode this agent played
        self.generated_tokens = 0

    def reset(self, seed: int | None = None) -> None:
        self.prompt = None
        if seed is not None:
            _require_transformers()[0].manual_seed(seed)

    def act(self, observation: str, info: dict[str, Any]) -> str:
        if self.prompt is None:
            from mem1_envs.base_env import task_prompt

            self.prompt = task_prompt(info)
        start = time.perf_counter()
        out = self.policy.generate([self.policy.encode(self.prompt, observation)])[0]
        self.generate_seconds += time.perf_counter() - start
        self.generated_tokens += len(out.token_ids)
        return out.text
