"""Data sets on disk, read for tasks: JSON lines or one JSON array, each record checked for the
fields its family needs, every problem named with its file and line. Nothing is downloaded here:
`lcbench data fetch` (`lcbench.data_fetch`) fills the cache that a task reads where it is given no
data_dir."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

# Fields that give away which benchmark wrote a file, for saying so when a task gets another's.
FAMILIES = {
    "LongBench v1 (task `longbench`)": ("context", "input", "answers", "all_classes"),
    "LongBench v2 (task `longbench_v2`)": ("question", "choice_A", "answer", "context"),
    "RULER prepared (task `ruler`)": ("input", "outputs", "answer_prefix"),
    "InfiniteBench (task `infinitebench`)": ("context", "input", "answer", "options"),
}
CACHE_ENV = "LCBENCH_DATA"  # the cache's root; default ~/.cache/lcbench/data


class Codec(Protocol):
    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class DataError(ValueError):
    """A data file that is missing, malformed, or of another family than its task reads."""


def cache_root() -> Path:
    """Where `lcbench data fetch` keeps the data sets, one folder each: $LCBENCH_DATA, else ~/.cache/lcbench/data."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/lcbench/data").expanduser()


def data_folder(data_dir: str, data_set: str) -> str:
    """A data-set task's folder: its `data_dir` where one is given, else `data_set`'s folder in the cache."""
    return data_dir or str(cache_root() / data_set)


def resolve(data_dir: str, path: str) -> Path:
    """`path` under `data_dir` when relative (and a data_dir is given)."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() or not data_dir else Path(data_dir).expanduser() / candidate


def read_records(path: Path, fetch: str = "") -> list[tuple[int, dict[str, Any]]]:
    """(line or position, record) for every record of a `.jsonl` file or a `.json` array. A file
    is parsed once while it is unchanged (the checks, then each length's examples, read it again:
    LongBench v2's data.json is 465 MB); the records are shared, so callers only read them. A
    missing file's message names `lcbench data fetch FETCH` where the data set can be fetched."""
    if not path.is_file():
        raise DataError(missing(path, fetch))
    stat = path.stat()
    return _parsed(path.resolve(), stat.st_mtime_ns, stat.st_size)


def missing(path: Path, fetch: str = "") -> str:
    """Why `path` cannot be read, and how to get it: fetched into the cache, or by hand."""
    if not fetch:
        return f"data file `{path}` does not exist; see docs/tasks.md (Data sets) for where to get it and how to lay it out"
    return (
        f"data file `{path}` does not exist; `lcbench data fetch {fetch}` downloads the data set into "
        f"{cache_root() / fetch}, which a task reads when no data_dir is given (or give that folder as --data-dir); "
        "docs/tasks.md (Data sets) says how to lay it out by hand"
    )


@functools.lru_cache(maxsize=2)  # a suite's tasks read their files in turn: the last two stay parsed
def _parsed(path: Path, mtime_ns: int, size: int) -> list[tuple[int, dict[str, Any]]]:
    if path.suffix == ".json":
        try:
            items = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(items, list):
            raise DataError(f"{path}: expected a JSON array of records, found a {type(items).__name__}")
        numbered = list(enumerate(items, 1))
    else:
        numbered = []
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        numbered.append((number, json.loads(line)))
                    except ValueError as exc:
                        raise DataError(f"{path}:{number}: not valid JSON ({exc})") from None
    for number, item in numbered:
        if not isinstance(item, dict):
            raise DataError(f"{path}:{number}: not a JSON object")
    return numbered


def check_fields(
    path: Path, records: Sequence[tuple[int, Mapping[str, Any]]], fields: Mapping[str, type], family: str
) -> list[str]:
    """Problems with `records` for `family`: missing or mistyped fields, named with the family the
    file looks like instead, and only the first few of each kind."""
    problems: list[str] = []
    for number, record in records:
        missing = [name for name in fields if name not in record]
        if missing:
            looks_like = next((f for f, keys in FAMILIES.items() if f != family and all(k in record for k in keys)), None)
            hint = f"; it looks like a {looks_like} file" if looks_like else f"; a {family} record has {', '.join(fields)}"
            problems.append(f"{path}:{number}: missing field {', '.join(missing)}{hint}")
        else:
            wrong = [name for name, kind in fields.items() if not isinstance(record[name], kind)]
            problems += [
                f"{path}:{number}: field {name} must be {fields[name].__name__}, got {record[name]!r:.60}" for name in wrong
            ]
        if len(problems) >= 5:
            return [*problems, "(first problems only)"]
    if not records:
        problems.append(f"{path}: holds no records")
    return problems


def cut_middle(tokenizer: Codec, text: str, room: int) -> tuple[str, int]:
    """(text, its tokens): `text` as is where it fits `room` tokens, else its first and last
    halves joined, as LongBench cuts a prompt (the instruction and question around it are kept).
    Halves are re-measured once joined, since a subword tokenizer may merge across the cut."""
    ids = tokenizer.encode(text)
    if len(ids) <= room:
        return text, len(ids)
    decode = tokenizer.decode
    keep = room
    while keep > 0:
        head = keep // 2
        cut = decode(ids[:head]) + decode(ids[len(ids) - (keep - head) :])
        tokens = len(tokenizer.encode(cut))
        if tokens <= room:
            return cut, tokens
        keep -= tokens - room
    return "", 0
