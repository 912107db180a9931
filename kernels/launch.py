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


def next_power_of_two(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def chosen_config(compiled: Any) -> str:
    """The config autotuning picked, as text for the record."""
    best = getattr(compiled, "best_config", None)
    if best is not None:
        return f"num_warps={best.num_warps}, num_stages={best.num_stages}"
    return "interpreter" if interpreting() else "default"


HEAD_DIMS = (16, 32, 64, 128)
DTYPES = ("float16", "bfloat16", "float32")


def check_attention_inputs(q: Any, k: Any, v: Any) -> None:
    """Refuse, before launch, what the kernels do not cover: q (b, h, n_q, d), k and v
    (b, h_kv, n_kv, d) alike, h a multiple of h_kv, d in HEAD_DIMS, one dtype of DTYPES."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"q, k, v must be 4-D (batch, heads, tokens, head dim); got {q.dim()}, {k.dim()}, {v.dim()} dims")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape; got {tuple(k.shape)} and {tuple(v.shape)}")
    if q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3]:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} must agree on batch and head dim")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"query heads ({q.shape[1]}) must be a multiple of key/value heads ({k.shape[1]})")
    if q.shape[3] not in HEAD_DIMS:
        raise ValueError(
            f"head dim {q.shape[3]} is not supported by the Triton kernels; use one of {', '.join(map(str, HEAD_DIMS))}"
        )
    dtypes = {str(t.dtype).removeprefix("torch.") for t in (q, k, v)}
    if len(dtypes) != 1 or not dtypes <= set(DTYPES):
        raise ValueError(f"q, k, v must share one dtype of {', '.join(DTYPES)}; got {', '.join(sorted(dtypes))}")
    if len({t.device for t in (q, k, v)}) != 1:
        raise ValueError("q, k, v must be on one device")
