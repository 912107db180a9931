"""How lcbench's Triton kernels are built: compiled for CUDA and autotuned, or run by Triton's
interpreter on CPU tensors when the process starts with `TRITON_INTERPRET=1` (the way Triton's
own CI runs its tutorials without a GPU). Triton fixes the mode when it is first imported, so the
switch is the environment variable, not a setting.

Tuning and compiling happen at a kernel's first call per autotune key (the kernels tune per
power-of-two length bucket) and per compiled variant. `launch` tells its caller the seconds of
those calls (`Compiled`), so a record can show them apart from its prefill and decode seconds,
which include them. Length-like integer arguments are not specialised on (`do_not_specialize`):
Triton would otherwise compile a new variant whenever a length turns divisible by 16 or equal to
1, inside a decode loop whose cache grows by one key a step.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

Compiled = Callable[[float], None]  # told the seconds of a call that autotuned or compiled a kernel


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
def kernel(
    fn: Callable[..., Any], configs: tuple[tuple[int, int], ...] = (), key: tuple[str, ...] = (), lengths: tuple[str, ...] = ()
) -> Any:
    """`fn` as a Triton kernel, autotuned over (num_warps, num_stages) `configs` on `key` when
    compiled, not specialised on the integer arguments `lengths`; the interpreter runs it once as
    is (it has no warps to tune)."""
    import triton

    jitted = triton.jit(fn, do_not_specialize=list(lengths))
    if interpreting() or not configs:
        return jitted
    tuned = [triton.Config({}, num_warps=warps, num_stages=stages) for warps, stages in configs]
    return triton.autotune(configs=tuned, key=list(key))(jitted)


def launch(compiled: Any, grid: tuple[int, ...], *args: Any, heard: Compiled | None = None, **kwargs: Any) -> None:
    """`compiled[grid](*args, **kwargs)`; where the call autotuned a new key or compiled a new
    variant, `heard` gets its seconds, synchronised: the tuning's benchmark runs and the kernel's
    own run included (milliseconds beside the seconds of tuning). Other calls are not synchronised."""
    before = variants(compiled)
    start = time.perf_counter()
    compiled[grid](*args, **kwargs)
    if heard is not None and variants(compiled) != before:
        synchronize(args)
        heard(time.perf_counter() - start)


def variants(compiled: Any) -> tuple[int, int]:
    """(autotuned keys, compiled variants) of a kernel so far: (0, 0) under the interpreter, which
    compiles nothing. Read from Triton's caches (`Autotuner.cache`, `JITFunction.device_caches`);
    where a Triton version has neither, nothing is reported."""
    tuned = getattr(compiled, "cache", None)
    jitted = getattr(compiled, "fn", compiled)
    caches = getattr(jitted, "device_caches", None)
    built = sum(len(entry[0]) for entry in caches.values()) if isinstance(caches, dict) else 0
    return (len(tuned) if isinstance(tuned, dict) else 0), built


def synchronize(args: tuple[Any, ...]) -> None:
    """Wait for the device of the first CUDA tensor among `args`."""
    import torch

    for arg in args:
        if isinstance(arg, torch.Tensor) and arg.is_cuda:
            torch.cuda.synchronize(arg.device)
            return


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
