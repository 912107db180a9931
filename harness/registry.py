"""Strategies and tasks by name, found through entry points. Built-ins register exactly as a
third-party package does, in its own `pyproject.toml`:

    [project.entry-points."lcbench.strategies"]
    my_strategy = "my_package.module:MyStrategy"
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from lcbench.errors import UserError, did_you_mean

if TYPE_CHECKING:
    from lcbench.strategies.base import Strategy
    from lcbench.tasks.base import Task

STRATEGY_GROUP = "lcbench.strategies"
TASK_GROUP = "lcbench.tasks"


def _load(group: str) -> dict[str, type]:
    found: dict[str, type] = {}
    for point in entry_points(group=group):
        try:
            found[point.name] = point.load()
        except Exception as exc:  # a broken plugin must not take the others down
            raise UserError(f"plugin `{point.name}` ({point.value}) in `{group}` failed to load: {exc}") from exc
    return found


@functools.cache
def strategies() -> dict[str, type[Strategy]]:
    return _load(STRATEGY_GROUP)


@functools.cache
def tasks() -> dict[str, type[Task]]:
    return _load(TASK_GROUP)


def strategy_class(name: str) -> type[Strategy]:
    known = strategies()
    if name not in known:
        raise UserError(did_you_mean(name, known, "strategy"))
    return known[name]


def task_class(name: str) -> type[Task]:
    known = tasks()
    if name not in known:
        raise UserError(did_you_mean(name, known, "task"))
    return known[name]
