"""The runner: per cell, build examples at the requested length, run the strategy on each,
score it, measure it, and yield one record per example as it finishes (the caller appends them
to the run folder). It never special-cases a strategy."""

from __future__ import annotations

import dataclasses
import statistics
import time
import traceback
from collections.abc import Iterator
from typing import Any

from lcbench.config.plan import Cell
from lcbench.config.suite import Suite, TaskSpec
from lcbench.errors import UserError
from lcbench.model import Generation, Model
from lcbench.prompt import Prompter, Style, bos_text, resolve_format
from lcbench.reference.models import REFERENCE
from lcbench.registry import strategy_class, task_class
from lcbench.run.measure import MeasureMemory, TensorBytes, counting_slows
from lcbench.run.noise import OthersCpu, machine, noise_reason
from lcbench.run.records import Record
from lcbench.strategies.base import Prediction, Strategy
from lcbench.tasks.base import Example, Task


def oom_types() -> tuple[type[BaseException], ...]:
    import torch

    return (torch.cuda.OutOfMemoryError, MemoryError)


def build_task(suite: Suite, spec: TaskSpec) -> Task:
    return task_class(spec.name)(**suite.task_params(spec))


def prompter_for(suite: Suite, spec: TaskSpec, task: Task, tokenizer: Any) -> Prompter:
    """How `task` is asked of a model with `tokenizer`: the suite's prompt settings made concrete."""
    wanted = suite.prompt_for(spec)
    reference = suite.model == REFERENCE
    fmt = resolve_format(wanted.format or "auto", tokenizer, reference, task.chat_by_default())
    template = wanted.template or (task.instruction() if fmt != "plain" else None)
    style = Style(
        fmt, answer_prefix=wanted.answer_prefix, system=wanted.system, bos=bos_text(tokenizer) if fmt == "instruct" else ""
    )
    return Prompter(tokenizer, style if template is None else dataclasses.replace(style, template=template))


class ExampleCache:
    """Examples of one (task, length) are built once and shared by every strategy."""

    def __init__(self, suite: Suite, model: Model) -> None:
        self.suite, self.model = suite, model
        self._key: Any = None
        self._examples: list[Example] = []

    def get(self, task: Task, cell: Cell) -> list[Example]:
        key = (cell.task, cell.length)
        if key != self._key:
            prompter = prompter_for(self.suite, cell.task, task, self.model.tokenizer)
            examples = task.examples(prompter, cell.length, self.suite.samples, self.suite.seed)
            check_vocabulary(prompter, self.model.name, task, examples[0])
            if self.suite.max_new_tokens is not None:
                examples = [dataclasses.replace(e, max_new_cap=self.suite.max_new_tokens) for e in examples]
            self._key, self._examples = key, examples
        return self._examples


def check_vocabulary(prompter: Prompter, model_name: str, task: Task, example: Example) -> None:
    """A task on a tokenizer that maps its words to <unk> would score nonsense."""
    unk = getattr(prompter.tokenizer, "unk_token_id", None)
    if unk is None:
        return
    ids = prompter.encode(example.before + example.context + example.after + " " + example.references[0])
    if unk in ids:
        fix = (
            "run it on the reference model (`model: reference`) or use a tokenizer that covers the task's vocabulary"
            if task.vocabulary()
            else "its data is natural language: give a model of your own with --model"
        )
        raise UserError(
            f"the tokenizer of model `{model_name}` cannot represent the words of task `{task.name}` "
            f"({ids.count(unk)} of {len(ids)} tokens are unknown); {fix}"
        )


def cell_fields(suite: Suite, cell: Cell) -> dict[str, Any]:
    """What every record of a cell says about where it belongs."""
    return dict(
        suite=suite.name,
        task=cell.task_key,
        task_name=cell.task.name,
        strategy=cell.strategy.key,
        strategy_name=cell.strategy.name,
        params=dict(cell.strategy.params),
        context_length=cell.length,
        cell_key=cell.key,
        round=cell.round,
    )


def cell_record(suite: Suite, cell: Cell, index: int, status: str, message: str) -> Record:
    """A record for an example that never ran (the cell failed, timed out, crashed or was skipped)."""
    example_id = f"{cell.task_key}-{cell.length}-{index}"
    return Record(**cell_fields(suite, cell), example_id=example_id, status=status, message=message)  # type: ignore[arg-type]


def run_cell(suite: Suite, model: Model, cell: Cell, examples: ExampleCache) -> Iterator[Record]:
    """Yield one record per example; a failure becomes a record, never an exception."""
    base = cell_fields(suite, cell)
    task = build_task(suite, cell.task)
    strategy = strategy_class(cell.strategy.name)(**cell.strategy.params)
    try:
        batch = examples.get(task, cell)
    except Exception as exc:  # e.g. a length too short for the task: the cell fails, the run goes on
        for i in range(cell.first, suite.samples):
            yield cell_record(suite, cell, i, "error", error_text(exc))
        return
    batch = batch[cell.first :]  # examples are the same by index at any count: those before are recorded
    reason = strategy.unavailable_reason(model)
    if reason is None and batch:
        warm_up(strategy, model, batch[0], suite.measure.warmup)
    for example in batch:
        if reason is not None:
            record = Record(**base, example_id=example.id, status="unavailable", message=reason)
        else:
            shown = example is batch[0] and cell.first == 0  # a cell's first example keeps every prompt it made
            record = measure_example(base, strategy, task, model, example, suite.measure.repeats, shown, suite.measure.noise)
        yield record


def warm_up(strategy: Strategy, model: Model, example: Example, times: int) -> None:
    for _ in range(times):
        try:
            strategy.run(model, example)
        except Exception:
            return  # the measured run reports the failure


def measure_example(
    base: dict[str, Any],
    strategy: Strategy,
    task: Task,
    model: Model,
    example: Example,
    repeats: int,
    shown: bool = False,
    noise: float = 0.5,
) -> Record:
    record = Record(**base, example_id=example.id, input_tokens=example.actual_length, references=list(example.references))
    record.metadata = {k: v for k, v in example.metadata.items() if isinstance(v, (int, float, str, bool, type(None)))}
    calls: list[tuple[list[int], Generation]] = []
    kept = calls if shown else None
    counted: Prediction | None = None
    try:
        if counting_slows(model.device):  # tensor bytes counted in a pass of their own, time (and RSS) in the others
            with TensorBytes() as counter, model.keeping_calls(kept):
                counted = strategy.run(model, example)
        before = machine().slowdown()
        with MeasureMemory(model.device, count_tensors=False) as memory, OthersCpu() as others:
            runs = timed_runs(strategy, model, example, repeats, None if counted else kept)
        slowdown = min(before, machine().slowdown())  # a competing job slows both; an instant's jitter one
    except oom_types() as exc:
        record.status, record.message = "oom", error_text(exc)
        return record
    except Exception as exc:
        record.status, record.message = ("oom" if out_of_memory(exc) else "error"), error_text(exc)
        return record
    first = counted or runs[0][0]  # greedy: the counted pass answers as the timed ones; its calls are the kept ones
    answer = example.answer_of(first.text)
    record.prediction, record.message, record.extra = answer, first.note, dict(first.extra)
    record.raw_prediction = first.text if answer != first.text else ""
    record.metrics = task.score(answer, example)
    record.prompts = [
        {"tokens": len(ids), "prompt": model.decode_all(ids), "output": g.text, "new_tokens": g.new_tokens} for ids, g in calls
    ]
    usage = first.usage
    record.calls, record.prefill_tokens, record.decode_tokens = usage.calls, usage.prefill_tokens, usage.decode_tokens
    record.max_call_tokens = usage.max_call_tokens
    record.kv_peak_bytes, record.kv_decode_bytes = usage.kv_peak_bytes, usage.kv_decode_bytes
    record.prefill_s = statistics.median(p.usage.prefill_s for p, _ in runs)
    record.decode_s = statistics.median(p.usage.decode_s for p, _ in runs)
    latencies = [t for _, t in runs]
    record.latency_s = statistics.median(latencies)
    record.latency_spread = (max(latencies) - min(latencies)) / record.latency_s if record.latency_s else 0.0
    # serving's view of the answer: it starts once the last call has prefilled, then streams a token per step
    last_decode = statistics.median(p.usage.last_decode_s for p, _ in runs)
    record.ttft_s = max(0.0, record.latency_s - last_decode)
    record.tpot_s = last_decode / usage.last_decode_steps if usage.last_decode_steps else None
    record.attention = usage.attention
    record.repeats = repeats
    record.probe_slowdown = round(slowdown, 3)
    record.others_cpu = None if others.share is None else round(others.share, 3)
    record.noisy = noise_reason(slowdown, record.latency_spread, noise, others.share)
    peak = memory.result if counted is None else memory.result.counted(counter.peak)
    record.peak_mem_bytes = peak.peak_bytes
    record.memory = {k: v for k, v in dataclasses.asdict(peak).items() if k != "baseline"}
    return record


def timed_runs(
    strategy: Strategy, model: Model, example: Example, repeats: int, kept: list[tuple[list[int], Generation]] | None
) -> list[tuple[Prediction, float]]:
    """`repeats` runs of the strategy on the example, each with its wall time; the first keeps its
    calls in `kept` where given."""
    runs = []
    for repeat in range(repeats):
        start = time.perf_counter()
        with model.keeping_calls(kept if repeat == 0 else None):
            prediction = strategy.run(model, example)
        runs.append((prediction, time.perf_counter() - start))
    return runs


def out_of_memory(exc: BaseException) -> bool:
    """An allocation refused by the allocator under a memory cap (torch raises RuntimeError)."""
    text = str(exc).lower()
    return "can't allocate memory" in text or "out of memory" in text


def error_text(exc: BaseException) -> str:
    """`Type: message` and where it was raised: enough to act on without a traceback dump."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"
