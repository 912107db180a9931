"""The strategy contract: a small dataclass of settings with one `run(model, example)` method.

Input-level strategies decide *what the model sees* and compose model calls; attention-level
strategies decide *how the model attends* over the whole input (`level`, shown by `lcbench ls`).
The runner treats both alike: it builds `cls(**params)` fresh for every cell and asks the
strategy what it needs (`unavailable_reason`; `problems` for `lcbench validate`), never
`isinstance`.

An example that carries several questions (shared-context mode) goes to `run_questions`: by default
each question is a `run` of its own, which re-reads the input; a strategy that can keep the
context's cache prefills it once and asks every question from it (`ask_in_turn`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from lcbench.model import Generation, Model
    from lcbench.tasks.base import Example


@dataclass(frozen=True)
class Usage:
    """What a prediction cost, summed over every model call it made."""

    calls: int = 0
    prefill_tokens: int = 0
    decode_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    max_call_tokens: int = 0  # the largest prompt one call attended to: what a budget bounds
    kv_peak_bytes: int = 0  # the largest KV cache any call held
    kv_decode_bytes: int = 0  # the largest KV cache any call decoded from
    # the last call (the one that wrote the answer): serving's time per output token is its decode
    last_decode_s: float = 0.0
    last_decode_steps: int = 0  # its new tokens after the first (which the prefill produced)
    attention: str = ""  # the attention implementations the calls ran with, joined by "+"

    @classmethod
    def of(cls, generation: Generation) -> Usage:
        return cls(
            calls=1,
            prefill_tokens=generation.prompt_tokens,
            decode_tokens=generation.new_tokens,
            prefill_s=generation.prefill_s,
            decode_s=generation.decode_s,
            max_call_tokens=generation.prompt_tokens,
            kv_peak_bytes=generation.kv_peak_bytes,
            kv_decode_bytes=generation.kv_decode_bytes,
            last_decode_s=generation.decode_s,
            last_decode_steps=max(0, generation.new_tokens - 1),
            attention=generation.attention,
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls + other.calls,
            prefill_tokens=self.prefill_tokens + other.prefill_tokens,
            decode_tokens=self.decode_tokens + other.decode_tokens,
            prefill_s=self.prefill_s + other.prefill_s,
            decode_s=self.decode_s + other.decode_s,
            max_call_tokens=max(self.max_call_tokens, other.max_call_tokens),
            kv_peak_bytes=max(self.kv_peak_bytes, other.kv_peak_bytes),
            kv_decode_bytes=max(self.kv_decode_bytes, other.kv_decode_bytes),
            last_decode_s=other.last_decode_s,
            last_decode_steps=other.last_decode_steps,
            attention="+".join(dict.fromkeys(a for part in (self.attention, other.attention) for a in part.split("+") if a)),
        )


@dataclass(frozen=True)
class Prediction:
    text: str
    usage: Usage
    note: str = ""  # said once in the record, e.g. "budget >= context: nothing was cut"
    extra: dict[str, float] = field(default_factory=dict)  # strategy-specific counters (depth, ...)


@dataclass
class Strategy:
    """Base class. Subclasses are dataclasses whose fields are their settings.

    `__post_init__` raises `ValueError` for a bad value alone; `problems()` checks settings
    against the suite (e.g. a budget against the context lengths). Neither loads a model.
    """

    name: ClassVar[str] = ""
    level: ClassVar[Literal["input", "attention"]] = "input"

    def problems(self, context_lengths: Sequence[int]) -> list[str]:
        return []

    def unavailable_reason(self, model: Model) -> str | None:
        """Why this strategy cannot run on `model` here (the cell is recorded `unavailable`)."""
        return None

    def run(self, model: Model, example: Example) -> Prediction:
        raise NotImplementedError

    def run_questions(self, model: Model, example: Example) -> list[Prediction]:
        """One prediction per question of `example` (shared-context mode), in turn. This default runs
        each as an example of its own, so the input is read again per question, and says so."""
        predictions = [self.run(model, question) for question in example.asked()]
        return [dataclasses.replace(p, note="; ".join(filter(None, [REREAD, p.note]))) for p in predictions]


REREAD = "re-reads the input per question"


@dataclass(frozen=True)
class Framed:
    """An example's prompt in tokens around a hole for the context, or for any piece of it: every
    call a strategy makes carries the same instruction, question and answer prefix."""

    before: list[int]
    after: list[int]

    def __call__(self, context_ids: list[int]) -> list[int]:
        return self.before + context_ids + self.after

    @property
    def tokens(self) -> int:
        return len(self.before) + len(self.after)


def framed(model: Model, example: Example) -> Framed:
    return Framed(model.encode(example.before), model.encode(example.after))


def predict(model: Model, example: Example, context_ids: list[int]) -> Prediction:
    """One model call on `context_ids` in the example's prompt: the common case."""
    prompt = framed(model, example)(context_ids)
    generation = model.generate(prompt, example.max_new_tokens(len(context_ids)))
    return Prediction(generation.text, Usage.of(generation))


def ask_in_turn(
    model: Model,
    example: Example,
    cache: Any,
    context: Generation,
    context_tokens: int,
    restore: Callable[[], None],
    measure: Callable[[], dict[str, float]] = dict,
) -> list[Prediction]:
    """Shared-context mode: each question of `example` read after its context, already prefilled into
    `cache` (`context`: that prefill of `before` and the context's `context_tokens`), answered greedily;
    `restore` then puts the cache back as the context left it. `measure`, called before `restore`, says
    what the answer's prediction adds to its `extra` (the cache as that question left it).

    Each prediction's usage is its own question's (prefill: the question's tokens); its `extra` says the
    shared prefill once, the same on every question (`context_prefill_s`, `context_tokens`)."""
    shared = {"context_prefill_s": context.prefill_s, "context_tokens": float(context.prompt_tokens)}
    predictions = []
    for question in example.asked():
        generation = model.generate(model.encode(question.after), question.max_new_tokens(context_tokens), cache=cache)
        usage = Usage.of(generation)
        usage = dataclasses.replace(
            usage,
            max_call_tokens=context.prompt_tokens + generation.prompt_tokens,  # the question attends to the context
            kv_peak_bytes=max(usage.kv_peak_bytes, context.kv_peak_bytes),
        )
        predictions.append(Prediction(generation.text, usage, extra={**shared, **measure()}))
        restore()
    return predictions
