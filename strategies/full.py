"""`full`: the whole input with the model's own attention. The baseline every table compares with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lcbench.model import Model
from lcbench.strategies.base import Prediction, Strategy, predict
from lcbench.tasks.base import Example


@dataclass
class Full(Strategy):
    name: ClassVar[str] = "full"
    level: ClassVar = "attention"

    def run(self, model: Model, example: Example) -> Prediction:
        return predict(model, example, model.encode(example.context))
