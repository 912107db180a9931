"""`truncation`: keep a token budget of the context (head, tail or middle), never cutting the
instruction or the question around it (LongBench cuts the middle of the context for this reason).

The simplest answer to a long input and the floor every other strategy must beat: on a
retrieval task it scores about budget / length, since a needle survives only if it was kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from lcbench.model import Model
from lcbench.strategies.base import Prediction, Strategy, framed, predict
from lcbench.tasks.base import Example


@dataclass
class Truncation(Strategy):
    name: ClassVar[str] = "truncation"

    budget: int = 256  # prompt tokens the model may see: kept context + the prompt around it
    keep: Literal["head", "tail", "middle"] = "tail"

    def __post_init__(self) -> None:
        if self.budget <= 0:
            raise ValueError(f"budget must be a positive number of tokens, got {self.budget}")
        if self.keep not in ("head", "tail", "middle"):
            raise ValueError(f"keep must be one of head, tail, middle; got {self.keep!r}")

    def problems(self, context_lengths: Sequence[int]) -> list[str]:
        if context_lengths and self.budget > max(context_lengths):
            return [
                f"budget {self.budget} is larger than every context length (max {max(context_lengths)}): "
                "nothing would be cut; lower the budget or use `full`"
            ]
        return []

    def run(self, model: Model, example: Example) -> Prediction:
        context = model.encode(example.context)
        room = self.budget - framed(model, example).tokens
        if room <= 0:
            raise ValueError(f"budget {self.budget} leaves no room for the context beside the prompt around it")
        if len(context) <= room:
            prediction = predict(model, example, context)
            return Prediction(prediction.text, prediction.usage, note="budget >= context: nothing was cut")
        return predict(model, example, self.kept(context, room))

    def kept(self, ids: list[int], room: int) -> list[int]:
        if self.keep == "head":
            return ids[:room]
        if self.keep == "tail":
            return ids[-room:]
        head = room // 2
        return ids[:head] + ids[len(ids) - (room - head) :]
