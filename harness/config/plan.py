"""The plan: cells = task x context length x strategy, each with a stable key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from lcbench.config.suite import StrategySpec, Suite, TaskSpec


@dataclass(frozen=True)
class Cell:
    task: TaskSpec
    strategy: StrategySpec
    length: int
    key: str  # identifies the cell across runs of the same suite file (resume, compare)
    task_key: str = ""  # the task's name in records and tables (`TaskSpec.key`)
    first: int = 0  # the index of the first example to run (those before it are recorded: adaptive rounds)
    round: int = 0  # the adaptive-sampling round that runs it (0: the first, or fixed sampling)

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


@dataclass(frozen=True)
class Chain:
    """One task and one strategy over its lengths in ascending order, on one device: the unit of
    work an executor is given. Skip-after-oom follows a chain, and a cell never spans devices."""

    cells: tuple[Cell, ...]

    @property
    def cost(self) -> int:
        """Tokens asked of the model over the chain: the longest chains go first."""
        return sum(c.length for c in self.cells)


def chains(cells: list[Cell]) -> list[Chain]:
    """`cells` grouped by (task, strategy), in the order they first appear, lengths ascending."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.task_key, cell.strategy.key), []).append(cell)
    return [Chain(tuple(sorted(group, key=lambda c: c.length))) for group in groups.values()]


def plan(suite: Suite, suite_hash: str) -> list[Cell]:
    """Task-major, then length, then strategy: examples of one (task, length) are built once."""
    size = suite.sampling.max if suite.sampling else suite.samples  # a round's count does not change the cell
    return [
        Cell(task, strategy, length, cell_key(suite_hash, task, strategy, length, size, suite.seed), task.key)
        for task in suite.tasks
        for length in suite.context_lengths
        for strategy in suite.strategies
    ]
