"""`full`: the whole input with the model's own attention. The baseline every table compares with.

`attention` picks the model's attention kernel: `sdpa` (torch's fused attention, the default),
`flash_attention_2` (the flash-attn package, on a CUDA GPU) or `eager` (the reference matmuls).
Each record says which ran (`attention`).

With several questions per context (shared-context mode) the context is prefilled once and each
question is read from that cache, which is cut back to the context after each answer."""

from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass
from typing import ClassVar

from lcbench.model import Model, rewinder
from lcbench.strategies.base import Prediction, Strategy, ask_in_turn, predict
from lcbench.tasks.base import Example

ATTENTION = ("sdpa", "flash_attention_2", "eager")


@dataclass
class Full(Strategy):
    name: ClassVar[str] = "full"
    level: ClassVar = "attention"
    attention: str = "sdpa"

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION)}, got {self.attention!r}")

    def unavailable_reason(self, model: Model) -> str | None:
        if self.attention != "flash_attention_2":
            return None
        if importlib.util.find_spec("flash_attn") is None:
            return "attention flash_attention_2 needs the flash-attn package: pip install flash-attn --no-build-isolation"
        if not model.device.startswith("cuda"):
            return f"attention flash_attention_2 runs on a CUDA GPU and this run is on {model.device}; use sdpa or eager"
        return None

    def run(self, model: Model, example: Example) -> Prediction:
        with self.switch(model):
            return predict(model, example, model.encode(example.context))

    def run_questions(self, model: Model, example: Example) -> list[Prediction]:
        with self.switch(model):
            context = model.encode(example.context)
            cache = model.new_cache()
            read = model.prefill(model.encode(example.before) + context, cache)
            return ask_in_turn(model, example, cache, read, len(context), rewinder(cache))

    def switch(self, model: Model) -> contextlib.AbstractContextManager[None]:
        return model.attention(self.attention) if self.attention != "sdpa" else contextlib.nullcontext()
