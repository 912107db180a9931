"""The record: one row per example per cell, quality and cost side by side. Every table, CSV
and plot is computed from `records.jsonl`; there is no second source of truth."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from lcbench.errors import UserError

# `lost`: the cluster ended the example (a cancelled, timed-out or failed node's job), not the strategy
Status = Literal["ok", "oom", "timeout", "error", "lost", "unavailable", "skipped"]
RECORDS = "records.jsonl"
PROMPTS = "prompts.jsonl"  # what the model saw, per call, for the first example of each cell


@dataclass
class Record:
    suite: str
    task: str  # the label shown in tables (`longbench/hotpotqa`)
    strategy: str  # the label shown in tables
    strategy_name: str
    params: dict[str, Any]
    context_length: int  # requested
    example_id: str
    cell_key: str
    task_name: str = ""  # the registered task (what `task` is an instance of)
    status: Status = "ok"
    message: str = ""
    input_tokens: int | None = None  # actual prompt length in the model's tokens
    metrics: dict[str, float] = field(default_factory=dict)
    prediction: str = ""
    references: list[str] = field(default_factory=list)
    # cost, over every model call the strategy made for this example (first repeat for counts)
    calls: int | None = None
    prefill_tokens: int | None = None
    decode_tokens: int | None = None
    max_call_tokens: int | None = None
    prefill_s: float | None = None  # median over repeats
    decode_s: float | None = None
    latency_s: float | None = None  # wall time of the whole prediction, median over repeats
    latency_spread: float | None = None  # (max - min) / median over repeats
    probe_slowdown: float | None = None  # the machine's speed probe around the timed runs / its quiet speed
    round: int = 0  # the adaptive-sampling round that measured it
    others_cpu: float | None = None  # other processes' share of the machine's CPU during the timed runs
    noisy: str = ""  # why the timing is not to be trusted (a slowed probe, a wide spread), or empty
    ttft_s: float | None = None  # time to first token of the answer: the latency less the last call's decode
    tpot_s: float | None = None  # time per output token of the answer: the last call's decode per step
    repeats: int = 0
    peak_mem_bytes: int | None = None
    kv_peak_bytes: int | None = None  # the KV cache's own bytes: its largest over the example's calls
    kv_decode_bytes: int | None = None  # and while decoding (what a compressed or bounded cache keeps)
    memory: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    host: str = ""  # the machine that ran the example
    node: str = ""  # where in a cluster: the Slurm job (`slurm job 123_4`) or Ray node (`ray node 5f3a...`)
    device: str = ""  # its device as the process saw it (CUDA_VISIBLE_DEVICES where a scheduler set it)
    gpu: str = ""  # the GPU's type, where there is one
    dtype: str = ""  # the model's weights' dtype
    attention: str = ""  # the attention implementation(s) the model ran with (sdpa, flash_attention_2, ...)
    raw_prediction: str = ""  # the model's output where the answer was extracted from it (else empty)
    # every call's prompt and output, for a cell's first example: written to prompts.jsonl, not here
    prompts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ends_example(self) -> bool:
        """Whether this record completes its example: every record does, except in shared-context mode,
        where an example's questions are recorded in turn and only the last one's completes it."""
        questions = self.extra.get("questions_per_context", 1)
        return int(self.metadata.get("question", 0)) >= questions - 1

    @property
    def tokens_processed(self) -> int | None:
        if self.prefill_tokens is None or self.decode_tokens is None:
            return None
        return self.prefill_tokens + self.decode_tokens

    def to_json(self) -> str:
        data = asdict(self)
        if not data["prompts"]:
            del data["prompts"]
        return json.dumps(data, default=str)

    def shown(self) -> str:
        """The prompts line of this record's example (`prompts.jsonl`)."""
        where = {k: getattr(self, k) for k in ("task", "strategy", "context_length", "example_id", "cell_key")}
        return json.dumps({**where, "calls": self.prompts})


class RecordWriter:
    """Appends records one line at a time, flushed and synced, so a killed run keeps them. The
    prompts a record carries go to `prompts.jsonl` beside the records first."""

    def __init__(self, path: Path) -> None:
        self.path = path
        drop_torn_tail(path)
        self._file = open(path, "a", encoding="utf-8")

    def write(self, records: Iterable[Record]) -> None:
        for record in records:
            if record.prompts:
                with open(self.path.with_name(PROMPTS), "a", encoding="utf-8") as prompts:
                    prompts.write(record.shown() + "\n")
                record = dataclasses.replace(record, prompts=[])
            self._file.write(record.to_json() + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def drop_torn_tail(path: Path) -> None:
    """Cut a last line left unfinished by a killed writer, so that what is appended next starts
    on a line of its own (the torn record is lost either way; its example is redone or recorded)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        f.truncate(data.rfind(b"\n") + 1)


def read_records(path: Path) -> Iterator[Record]:
    """Records from a `records.jsonl`; a torn last line (a run killed mid-write) is skipped."""
    if not path.is_file():
        raise UserError(f"`{path}` does not exist; give a run folder written by `lcbench run`")
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield Record(**json.loads(line))
        except (ValueError, TypeError) as exc:
            if number == len(lines):
                continue  # the cell in flight when the run stopped; resume reruns it
            raise UserError(f"{path}:{number}: not a record ({exc}); the file is damaged") from None


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file and rename: readers see the old file or the new, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
