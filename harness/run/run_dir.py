"""The run folder and its one owner. `RunDir` creates, resumes and reads a run: its records
(read once, appended one line at a time, synced, a torn tail repaired), the cells they finish, where
strategies ran out of memory, `env.json` and `suite.json` (a broken one is a clear error), and the
part files that cluster shards write and `collect` merges."""

from __future__ import annotations

import collections
import functools
import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lcbench.config.plan import Cell
from lcbench.errors import UserError
from lcbench.run.records import PROMPTS, RECORDS, Record, RecordWriter, read_records, write_atomic

ENV, SUITE, PARTS = "env.json", "suite.json", "parts"
LOST: frozenset[str] = frozenset({"lost"})  # what `--resume` always measures again
FAILED = frozenset({"error", "oom", "timeout", "skipped"})  # and with `--rerun errors`: the strategy's own failures


class RunDir:
    """One run folder. Records are read once and kept; every append goes through here."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: list[Record] | None = None

    @classmethod
    def create(cls, output: Path, name: str) -> RunDir:
        """A new folder `output/name-YYYYmmdd-HHMMSS` (a suffix where two start in one second)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path, n = output / f"{name}-{stamp}", 1
        while path.exists():
            n += 1
            path = output / f"{name}-{stamp}-{n}"
        path.mkdir(parents=True)
        return cls(path)

    @classmethod
    def resume(cls, path: Path) -> RunDir:
        """An existing run folder to complete: it must hold readable env.json and suite.json."""
        run_dir = cls(path)
        for name in (ENV, SUITE):
            if not (path / name).is_file():
                raise UserError(
                    f"`{path}` has no {name}: it is not a run folder written by `lcbench run`, so it cannot be resumed"
                )
        run_dir.env, run_dir.suite_data  # noqa: B018 (read now: a broken file is said before anything runs)
        return run_dir

    @property
    def records_path(self) -> Path:
        return self.path / RECORDS

    @property
    def prompts_path(self) -> Path:
        return self.path / PROMPTS

    def _json(self, name: str) -> dict[str, Any]:
        path = self.path / name
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise UserError(f"`{path}` is not valid JSON ({exc}); restore it, or start a new run") from None
        if not isinstance(data, dict):
            raise UserError(f"`{path}` is not a JSON object; restore it, or start a new run")
        return data

    @functools.cached_property
    def env(self) -> dict[str, Any]:
        return self._json(ENV)

    @functools.cached_property
    def suite_data(self) -> dict[str, Any]:
        return self._json(SUITE)

    def write_env(self, env: dict[str, Any]) -> None:
        write_atomic(self.path / ENV, json.dumps(env, indent=2))
        self.__dict__.pop("env", None)

    def write_suite(self, suite_json: str) -> None:
        write_atomic(self.path / SUITE, suite_json)
        self.__dict__.pop("suite_data", None)

    def records(self) -> list[Record]:
        """Every record, read from disk the first time only."""
        if self._records is None:
            self._records = list(read_records(self.records_path)) if self.records_path.is_file() else []
        return self._records

    def append(self, records: Iterable[Record]) -> None:
        records = list(records)
        with RecordWriter(self.records_path) as writer:
            writer.write(records)
        if self._records is not None:
            self._records += records

    def keep_finished(
        self, cells: Sequence[Cell], samples: int, redo: frozenset[str] = LOST, drop_noisy: bool = False, partial: bool = False
    ) -> dict[str, int]:
        """Cell key -> how many of its examples are kept, for the planned cells that keep any. The
        records file is rewritten with those alone (atomically). A cell cut short (a torn last line)
        is dropped to be rerun whole, and so is a cell with noisy timing where `drop_noisy`. A
        record whose status is in `redo` (always `lost`: the cluster, not the strategy, ended it)
        is dropped with the examples after it, and the cell keeps the examples before it, to run the
        rest. With `partial` (adaptive rounds) any cell cut short keeps its examples, one record each."""
        records = self.records()
        if partial:
            records = list({(r.cell_key, r.example_id): r for r in records}.values())
        planned = {c.key for c in cells}
        by_cell: dict[str, list[Record]] = collections.defaultdict(list)
        for r in records:
            if r.cell_key in planned:
                by_cell[r.cell_key].append(r)
        kept: dict[str, int] = {}
        for key, rows in by_cell.items():
            if drop_noisy and any(r.noisy for r in rows):
                continue
            cut = next((i for i, r in enumerate(rows) if r.status in redo), None)
            if cut is not None:
                rows = rows[:cut]
                while rows and not rows[-1].ends_example:  # an example's questions are kept whole or not at all
                    rows.pop()
            count = sum(r.ends_example for r in rows)
            if cut is not None or partial or count >= samples:
                by_cell[key], kept[key] = rows, count
        whole = {id(r) for key in kept for r in by_cell[key]}
        rows = [r for r in records if id(r) in whole]
        write_atomic(self.records_path, "".join(r.to_json() + "\n" for r in rows))
        self._records = rows
        return kept

    def oom_at(self) -> dict[tuple[str, str], int]:
        """(task, strategy) -> the shortest length that ran out of memory, in the records so far."""
        found: dict[tuple[str, str], int] = {}
        for r in self.records():
            if r.status == "oom":
                key = (r.task, r.strategy)
                found[key] = min(found.get(key, r.context_length), r.context_length)
        return found

    def part(self, shard: str) -> Path:
        """The records file a cluster shard appends to (merged into records.jsonl by `collect`)."""
        (self.path / PARTS).mkdir(exist_ok=True)
        return self.path / PARTS / f"{shard}.jsonl"

    def parts(self) -> list[Path]:
        found = sorted((self.path / PARTS).glob("*.jsonl")) if (self.path / PARTS).is_dir() else []
        return [p for p in found if p.name != PROMPTS]  # a part's prompts are not records

    def collect(self) -> int:
        """Merge the shards' part files into records.jsonl, atomically; a cell already there is not
        added again. Returns the number of records added."""
        have = {(r.cell_key, r.example_id) for r in self.records()}
        added = [r for part in self.parts() for r in read_records(part) if (r.cell_key, r.example_id) not in have]
        unique = list({(r.cell_key, r.example_id): r for r in added}.values())
        if unique:
            write_atomic(self.records_path, "".join(r.to_json() + "\n" for r in [*self.records(), *unique]))
            self._records = [*self.records(), *unique]
        return len(unique)
