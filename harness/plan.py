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
    task_key: str = ""  # the task's name in records and tables (`TaskSpec.key`)

    @property
    def title(self) -> str:
        return f"{self.task_key} · {self.strategy.key} · {self.length}"


def cell_key(suite_hash: str, task: TaskSpec, strategy: StrategySpec, length: int, samples: int, seed: int) -> str:
    # a task's prompt settings and label count only where set, so that older runs keep their keys
    described = task.model_dump(exclude_defaults=True, exclude={"name", "params"})
    blob = json.dumps(
        [suite_hash, {"name": task.name, "params": task.params, **described}, strategy.model_dump(), length, samples, seed],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def plan(suite: Suite, suite_hash: str) -> list[Cell]:
    """Task-major, then length, then strategy: examples of one (task, length) are built once."""
    return [
        Cell(task, strategy, length, cell_key(suite_hash, task, strategy, length, suite.samples, suite.seed), task.key)
        for task in suite.tasks
        for length in suite.context_lengths
        for strategy in suite.strategies
    ]
