"""The runner: per cell, build examples at the requested length, run the strategy on each,
score it, measure it, and yield one record per example as it finishes (the caller appends them
to the run folder); an example with several questions (shared-context mode) gives one record per
question. It never special-cases a strategy."""

from __future__ import annotations

import dataclasses
import statistics
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from lcbench.config.plan import Cell
from lcbench.config.suite import Suite, TaskSpec
from lcbench.errors import UserError
from lcbench.model import Generation, Model
from lcbench.prompt import Prompter, Style, bos_text, resolve_format
from lcbench.reference.models import REFERENCE
from lcbench.registry import strategy_class, task_class
from lcbench.run.measure import MeasureMemory, MemoryPeak, TensorBytes, counting_slows
from lcbench.run.noise import OthersCpu, machine, noise_reason
from lcbench.run.records import Record, Status
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
    """Yield one record per example (per question, in shared-context mode); a failure becomes a record,
    never an exception."""
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
            yield Record(**base, example_id=example.id, status="unavailable", message=reason)
            continue
        shown = example is batch[0] and cell.first == 0  # a cell's first example keeps every prompt it made
        if example.questions:
            yield from measure_questions(base, strategy, task, model, example, suite.measure.repeats, shown, suite.measure.noise)
        else:
            yield measure_example(base, strategy, task, model, example, suite.measure.repeats, shown, suite.measure.noise)


def warm_up(strategy: Strategy, model: Model, example: Example, times: int) -> None:
    ask = strategy.run_questions if example.questions else strategy.run
    for _ in range(times):
        try:
            ask(model, example)
        except Exception:
            return  # the measured run reports the failure


T = TypeVar("T", Prediction, list[Prediction])
Calls = list[tuple[list[int], Generation]]  # a run's model calls: each prompt and its generation


@dataclass(frozen=True)
class Measured(Generic[T]):
    """An example's measured runs: the first's answer (from the counting pass where there is one), each
    timed run with its wall time, the machine's slowdown and other processes' share of its CPU around
    them, and the peak memory."""

    first: T
    runs: list[tuple[T, float]]
    slowdown: float
    others: float | None
    peak: MemoryPeak


def measure(ask: Callable[[Model, Example], T], model: Model, example: Example, repeats: int, kept: Calls | None) -> Measured[T]:
    """`ask` (a strategy's `run` or `run_questions`) on `example`: tensor bytes counted in a pass of their
    own where counting slows the work, time (and RSS) in `repeats` others; the first pass keeps its calls
    in `kept`."""
    counted: T | None = None
    if counting_slows(model.device):  # tensor bytes counted in a pass of their own, time (and RSS) in the others
        with TensorBytes() as counter, model.keeping_calls(kept):
            counted = ask(model, example)
    before = machine().slowdown()
    with MeasureMemory(model.device, count_tensors=False) as memory, OthersCpu() as others:
        runs = timed_runs(ask, model, example, repeats, None if counted is not None else kept)
    slowdown = min(before, machine().slowdown())  # a competing job slows both; an instant's jitter one
    peak = memory.result if counted is None else memory.result.counted(counter.peak)
    # greedy: the counted pass answers as the timed ones; its calls are the kept ones
    return Measured(counted if counted is not None else runs[0][0], runs, slowdown, others.share, peak)


def failure(exc: BaseException) -> tuple[Status, str]:
    return ("oom" if isinstance(exc, oom_types()) or out_of_memory(exc) else "error"), error_text(exc)


def new_record(base: dict[str, Any], example: Example) -> Record:
    record = Record(**base, example_id=example.id, input_tokens=example.actual_length, references=list(example.references))
    record.metadata = {k: v for k, v in example.metadata.items() if isinstance(v, (int, float, str, bool, type(None)))}
    return record


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
    record = new_record(base, example)
    calls: Calls = []
    try:
        measured = measure(strategy.run, model, example, repeats, calls if shown else None)
    except Exception as exc:
        record.status, record.message = failure(exc)
        return record
    fill(record, task, model, example, measured.first, measured.runs, calls, measured, noise)
    return record


def measure_questions(
    base: dict[str, Any],
    strategy: Strategy,
    task: Task,
    model: Model,
    example: Example,
    repeats: int,
    shown: bool = False,
    noise: float = 0.5,
) -> list[Record]:
    """Shared-context mode: the example's questions asked in turn (`strategy.run_questions`), one record
    per question (`<id>-q<j>`), each scored against its own references. A question's prefill, decode and
    latency are its own; its `extra` says the context's one prefill where the strategy shares it
    (`context_prefill_s`, `context_tokens`), the wall time of all the questions (`all_questions_s`) and
    `questions_per_context`; the memory figures are the whole example's."""
    asked = example.asked()
    records = [new_record(base, question) for question in asked]
    shared = {"questions_per_context": float(len(asked))}
    calls: Calls = []
    try:
        measured = measure(strategy.run_questions, model, example, repeats, calls if shown else None)
        if len(measured.first) != len(asked):
            raise ValueError(f"{strategy.name} answered {len(measured.first)} of the example's {len(asked)} questions")
    except Exception as exc:
        for record in records:
            record.status, record.message = failure(exc)
            record.extra = dict(shared)
        return records
    shared["all_questions_s"] = statistics.median(t for _, t in measured.runs)
    for j, (record, question) in enumerate(zip(records, asked)):
        runs = [(answers[j], answers[j].usage.prefill_s + answers[j].usage.decode_s) for answers, _ in measured.runs]
        fill(record, task, model, question, measured.first[j], runs, calls if j == 0 else [], measured, noise)
        record.extra.update(shared)
        # a question's latency is its share of the context's wall time, the shared prefill included: its
        # own prefill and decode alone would make a shared cell look k times cheaper than it is
        record.latency_s = shared["all_questions_s"] / len(asked)
        if "context_prefill_s" in record.extra:  # the median over repeats, as every time a record carries
            record.extra["context_prefill_s"] = statistics.median(p.extra["context_prefill_s"] for p, _ in runs)
    return records


def fill(
    record: Record,
    task: Task,
    model: Model,
    example: Example,
    first: Prediction,
    runs: list[tuple[Prediction, float]],
    calls: Calls,
    measured: Measured[Any],
    noise: float,
) -> None:
    """`record` with the answer `first` scored and its cost: counts from `first`, times the median over
    `runs` (each with its latency), the kept `calls`, and the machine and memory from `measured`."""
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
    record.repeats = len(runs)
    record.probe_slowdown = round(measured.slowdown, 3)
    record.others_cpu = None if measured.others is None else round(measured.others, 3)
    record.noisy = noise_reason(measured.slowdown, record.latency_spread, noise, measured.others)
    record.peak_mem_bytes = measured.peak.peak_bytes
    record.memory = {k: v for k, v in dataclasses.asdict(measured.peak).items() if k != "baseline"}


def timed_runs(
    ask: Callable[[Model, Example], T], model: Model, example: Example, repeats: int, kept: Calls | None
) -> list[tuple[T, float]]:
    """`repeats` runs of `ask` (a strategy's `run` or `run_questions`) on the example, each with its wall
    time; the first keeps its calls in `kept` where given."""
    runs = []
    for repeat in range(repeats):
        start = time.perf_counter()
        with model.keeping_calls(kept if repeat == 0 else None):
            answer = ask(model, example)
        runs.append((answer, time.perf_counter() - start))
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
