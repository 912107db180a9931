"""How lcbench's Triton kernels are built: compiled for CUDA and autotuned, or run by Triton's
interpreter on CPU tensors when the process starts with `TRITON_INTERPRET=1` (the way Triton's
own CI runs its tutorials without a GPU). Triton fixes the mode when it is first imported, so the
switch is the environment variable, not a setting."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any


def triton_missing() -> str | None:
    """Why Triton cannot be used here, or None."""
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        return f"Triton is not installed ({exc}); `pip install triton` on Linux"
    return None


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.cache
def kernel(fn: Callable[..., Any], configs: tuple[tuple[int, int], ...] = (), key: tuple[str, ...] = ()) -> Any:
    """`fn` as a Triton kernel, autotuned over (num_warps, num_stages) `configs` on `key` when
    compiled; the interpreter runs it once as is (it has no warps to tune)."""
    import triton

    jitted = triton.jit(fn)
    if interpreting() or not configs:
        return jitted
    tuned = [triton.Config({}, num_warps=warps, num_stages=stages) for warps, stages in configs]
    return triton.autotune(configs=tuned, key=list(key))(jitted)


def chosen_config(compiled: Any) -> str:
    """The config autotuning picked, as text for the record."""
    best = getattr(compiled, "best_config", None)
    if best is not None:
        return f"num_warps={best.num_warps}, num_stages={best.num_stages}"
    return "interpreter" if interpreting() else "default"
