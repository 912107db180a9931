"""The plan: cells = task x context length x strategy, each with a stable key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from lcbench.suite import StrategySpec, Suite, TaskSpec


@dataclass(frozen=True)
class Cell:
    task: TaskSpec
    strategy: StrategySpec
    length: int
    key: str  # identifies the cell across runs of the same suite file (resume, compare)

    @property
    def title(self) -> str:
        return f"{self.task.name} · {self.strategy.key} · {self.length}"


def cell_key(suite_hash: str, task: TaskSpec, strategy: StrategySpec, length: int, samples: int, seed: int) -> str:
    blob = json.dumps([suite_hash, task.model_dump(), strategy.model_dump(), length, samples, seed], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def plan(suite: Suite, suite_hash: str) -> list[Cell]:
    """Task-major, then length, then strategy: examples of one (task, length) are built once."""
    return [
        Cell(task, strategy, length, cell_key(suite_hash, task, strategy, length, suite.samples, suite.seed))
        for task in suite.tasks
        for length in suite.context_lengths
        for strategy in suite.strategies
    ]
