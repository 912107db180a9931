"""The sizes, durations and lengths people write (`2G`, `2GiB`, `500ms`, `4k`), read one way
everywhere: a suite's budgets, `--max-memory`, `lcbench recommend --memory` and `--lengths`."""

from __future__ import annotations

import re
from typing import Any

MB = 1 << 20  # the tables print memory in MB of 2^20 bytes
SIZE_SCALE = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
TIME_SCALE = {"": 1.0, "s": 1.0, "ms": 1e-3, "min": 60.0, "m": 60.0, "h": 3600.0}
LENGTH_SCALE = {"": 1, "k": 1 << 10, "m": 1 << 20}


def _positive(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if value > 0 else None
    return None


def parse_bytes(value: str | float, bare: int = 1) -> int:
    """'8G', '2GiB', '512M', '1.5t', '5MB' -> bytes (binary units); a bare number counts `bare` bytes each."""
    number = _positive(value)
    if number is not None:
        return int(number * bare)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", str(value))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"not a size: {value!r}; write e.g. 512M, 8G or 2GiB")
    scale = SIZE_SCALE[match.group(2).lower()] if match.group(2) else bare
    return int(float(match.group(1)) * scale)


def parse_mb(value: str | float) -> float:
    """A memory budget in MB: '5MB', '2G', '2 GiB', '512k', 5 (a bare number is MB)."""
    number = _positive(value)
    if number is not None:
        return number
    try:
        return parse_bytes(value, bare=MB) / MB
    except ValueError:
        raise ValueError(f"not a memory budget: {value!r}; write e.g. 5MB, 512k or 2G") from None


def parse_seconds(value: str | float) -> float:
    """'1s', '500ms', '2min' or '2m', '1h', 0.5 (a bare number is seconds) -> seconds."""
    number = _positive(value)
    if number is not None:
        return number
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|ms|min|m|h)?\s*", str(value))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"not a duration: {value!r}; write e.g. 1s, 500ms or 2min")
    return float(match.group(1)) * TIME_SCALE[match.group(2) or ""]


def parse_length(value: Any) -> int:
    """4096, '4096', '4k' (= 4096), '32K', '1m' (= 1048576) tokens."""
    if isinstance(value, bool):
        raise ValueError(f"not a length: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)\s*", value)
        if match:
            return int(match.group(1)) * LENGTH_SCALE[match.group(2).lower()]
    raise ValueError(f"not a length: {value!r}; write a token count such as 4096 or 4k")
