"""Checks that need a tokenizer or data files but no model, run by `lcbench validate` and before
`lcbench run` loads anything: each task's data files and their fields, each task's prompt format on
each model's tokenizer (a chat format needs a chat template), and the shortest context length
against the prompt around the context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lcbench.config.suite import Suite, TaskSpec
from lcbench.errors import UserError
from lcbench.model import check_model_dir, go_offline, load_tokenizer
from lcbench.reference.models import REFERENCE, model_path
from lcbench.run.runner import build_task, check_vocabulary, prompter_for
from lcbench.tasks.base import LengthError, Task


def preflight(suite: Suite) -> None:
    """Every problem at once, as one `UserError`, or nothing."""
    go_offline()
    tokenizers: dict[Path, Any] = {}
    problems: list[str] = []
    shortest = min(suite.context_lengths)
    for i, spec in enumerate(suite.tasks):
        where = f"`tasks[{i}]` ({spec.name})"
        task = build_task(suite, spec)
        found = task.data_problems(suite.context_lengths)
        if found:
            problems += [f"{where}: {p}" for p in found]
            continue
        path = model_path(suite.model, spec.name)
        if path not in tokenizers:
            tokenizers[path] = None  # unusable until loaded; said once for all its tasks
            unusable = check_model_dir(path, suite.trust_remote_code)
            if unusable:  # a user's model is said by the suite's own checks; the shipped one only here
                problems += unusable if suite.model == REFERENCE else []
            else:
                try:
                    tokenizers[path] = load_tokenizer(path, suite.trust_remote_code)
                except UserError as exc:
                    problems += exc.problems
        if tokenizers[path] is None:
            continue
        problems += [f"{where}: {p}" for p in prompt_problems(suite, spec, task, tokenizers[path], shortest, path.name)]
    if problems:
        raise UserError(problems)


def prompt_problems(suite: Suite, spec: TaskSpec, task: Task, tokenizer: Any, length: int, model_name: str) -> list[str]:
    """The task's format on this tokenizer, its words, and its first example at the shortest length."""
    try:
        prompter = prompter_for(suite, spec, task, tokenizer)
        check_vocabulary(prompter, model_name, task, task.examples(prompter, length, 1, suite.seed)[0])
    except UserError as exc:
        return exc.problems
    except LengthError as exc:
        return [f"{exc}; the prompt around the context counts in the length: raise `context_lengths` or use a shorter format"]
    except (ValueError, KeyError, IndexError) as exc:
        return [str(exc)]
    return []
