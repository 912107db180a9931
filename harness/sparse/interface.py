"""Sparse attention inside any Hugging Face model, through transformers' `AttentionInterface`
and `AttentionMaskInterface`, with no change to the model's code.

Both are registered under one name: transformers asks the mask interface for the layers' mask
once per forward call (no mask registered would mean no causal masking at all) and hands what it
returns to every layer's attention function. Here the "mask" is a `Plan`: the block list for a
prefill, or one boolean row per query over the cached keys for a decode step. Which mask, cache
and path a call uses comes from the `SparseCall` made active around `Model.generate`.

Every prefill call runs the strategy's named path, a chunk over a bounded cache too: its keys
(the kept sinks and window, then the chunk) are two runs of positions, and the block list is built
over them by position (`build_block_list_over`). Decode steps run the decode path (`rows`, or
`triton-decode`). `SparseCall` counts the calls of each path, prefill apart (`prefill`), and the
seconds of calls that compiled or autotuned a kernel (`compile_s`).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lcbench.sparse.block_attention import block_sparse_attention
from lcbench.sparse.block_list import BlockList, build_block_list_over, key_runs
from lcbench.sparse.block_runs import BlockRun, schedule
from lcbench.sparse.bounded_cache import BoundedCache
from lcbench.sparse.patterns import Mask

NAME = "lcbench_sparse"
Path = Literal["blocks", "flex", "triton"]


@dataclass(frozen=True)
class Plan:
    """What every layer of one forward call runs: a block list, or dense rows over few keys."""

    path: str  # "blocks", "flex", "triton" (prefill), "rows" or "triton-decode" (decode)
    call: SparseCall
    blocks: BlockList | None = None
    runs: list[BlockRun] | None = None  # blocks: the torch path's schedule, made once for every layer
    q_positions: Tensor | None = None  # rows: the queries' and the kept keys' positions
    kv_positions: Tensor | None = None

    def rows(self, lo: int, hi: int) -> Tensor:
        """The mask rows of queries lo .. hi - 1 over every kept key: (hi - lo, n_kv) bool."""
        assert self.q_positions is not None and self.kv_positions is not None
        zero = torch.zeros((), dtype=torch.long)
        return self.call.mask(zero, zero, self.q_positions[lo:hi, None], self.kv_positions[None, :])


@dataclass
class SparseCall:
    """The settings of one generation, and what it did."""

    mask: Mask
    tile: int
    path: Path
    cache: Any
    element_mask: Any = None  # triton: the kernel's in-tile mask (kernels.block_sparse_attention.ElementMask)
    prompt_tokens: int = 0  # calls on positions before this are prefill (0: unknown, a call of one token is decode)
    ran: collections.Counter[str] = field(default_factory=collections.Counter)  # forward calls per path
    prefill: collections.Counter[str] = field(default_factory=collections.Counter)  # prefill calls per path
    configs: set[str] = field(default_factory=set)  # triton: the autotuned configs that ran
    tiles: list[float] = field(default_factory=list)  # share of tiles visited, per prefill
    compile_s: list[float] = field(default_factory=list)  # seconds of each kernel call that compiled or autotuned

    def prefilling(self, q_length: int, q_offset: int) -> bool:
        """Whether a forward call reads prompt tokens (a last chunk of one token is still prefill)."""
        return q_offset < self.prompt_tokens if self.prompt_tokens else q_length > 1

    def plan(self, q_length: int, kv_length: int, q_offset: int) -> Plan:
        q_positions = torch.arange(q_offset, q_offset + q_length)
        if isinstance(self.cache, BoundedCache):
            kv_positions = torch.cat([self.cache.key_positions(), q_positions])
        else:
            kv_positions = torch.arange(kv_length)
        if not self.prefilling(q_length, q_offset):
            # rows over the kept keys, linear in them; a bounded cache keeps only keys the pattern
            # allows, so a decode row is all true
            path = "triton-decode" if self.path == "triton" else "rows"
            self.ran[path] += 1
            return Plan(path, self, q_positions=q_positions, kv_positions=kv_positions)
        # a chunk over a bounded cache: the kept keys by position (sinks, then the window and the chunk)
        blocks = build_block_list_over(self.mask, q_positions, key_runs(kv_positions), self.tile)
        total = -(-q_length // self.tile) * -(-len(kv_positions) // self.tile)
        self.tiles.append(blocks.tiles_visited() / total)
        self.ran[self.path] += 1
        self.prefill[self.path] += 1
        return Plan(self.path, self, blocks=blocks, runs=schedule(blocks) if self.path == "blocks" else None)

    def named_path_share(self) -> float:
        """The share of prefill calls that ran the named path (1.0 where there were none)."""
        calls = sum(self.prefill.values())
        return self.prefill[self.path] / calls if calls else 1.0


@dataclass(frozen=True)
class Expected:
    """The attention calls a generation will make, cut as `Model.generate` cuts the prompt.

    prefill: per prefill call, the query positions (n_q,) and the key positions (n_kv,) it reads;
    decode: the keys of the first and the last decode step (their count only grows)."""

    prefill: list[tuple[Tensor, Tensor]]
    decode: tuple[int, int] | None


def expected_calls(cache: Any, prompt_tokens: int, chunk: int, new_tokens: int) -> Expected:
    """What a generation of `new_tokens` after `prompt_tokens`, fed `chunk` tokens a call (0: one
    pass), will attend over: a bounded cache's kept keys and the call's own, else every key so far."""
    step = chunk if chunk > 0 else prompt_tokens
    prefill = []
    for begin in range(0, prompt_tokens, step):
        queries = torch.arange(begin, min(begin + step, prompt_tokens))
        kept = cache.kept_after(begin) if isinstance(cache, BoundedCache) else torch.arange(begin)
        prefill.append((queries, torch.cat([kept, queries])))
    steps = range(prompt_tokens, prompt_tokens + new_tokens - 1)  # the first new token comes from the prefill
    if not steps:
        return Expected(prefill, None)
    keys = [len(cache.kept_after(seen)) + 1 if isinstance(cache, BoundedCache) else seen + 1 for seen in (steps[0], steps[-1])]
    return Expected(prefill, (keys[0], keys[1]))


@dataclass(frozen=True)
class AttentionShape:
    """What a model's attention calls look like: q (1, heads, n, head_dim), k and v (1, kv_heads, n, head_dim)."""

    heads: int
    kv_heads: int
    head_dim: int
    dtype: torch.dtype
    device: str
    scale: float | None  # the model's softmax scale (None: head_dim ** -0.5)

    def inputs(self, n_q: int, n_kv: int) -> tuple[Tensor, Tensor, Tensor]:
        """Zero q, k, v of these lengths: what a kernel is tuned and compiled on (its values do not matter)."""
        q = torch.zeros(1, self.heads, n_q, self.head_dim, dtype=self.dtype, device=self.device)
        k = torch.zeros(1, self.kv_heads, n_kv, self.head_dim, dtype=self.dtype, device=self.device)
        return q, k, torch.zeros_like(k)


WARMED: set[tuple[Any, ...]] = set()  # the kernels' keys warmed so far in this process


def compiles(path: str) -> bool:
    """Whether a path compiles or autotunes kernels: flex always; Triton's kernels unless interpreted
    (the interpreter compiles and tunes nothing, and runs slowly: warming would only cost time)."""
    if path == "flex":
        return True
    if path == "triton":
        from lcbench.kernels.launch import interpreting

        return not interpreting()
    return False


def warm(call: SparseCall, shape: AttentionShape, expected: Expected) -> float:
    """Compile and autotune, before a generation, each kernel variant its calls will need (one call
    per autotune key or flex bucket, on zero inputs of the same shapes and the same block lists),
    so that `prefill_s` and `decode_s` leave them out. Returns the seconds spent (synchronised):
    outside those spans, inside the example's latency."""
    if not compiles(call.path):
        return 0.0
    start = time.perf_counter()
    with torch.inference_mode():  # as `Model.generate` runs: a flex graph compiled outside it would not be reused
        for queries, keys in expected.prefill:
            warm_prefill(call, shape, queries, keys)
        if call.path == "triton" and expected.decode is not None:
            for n in decode_lengths(*expected.decode):
                warm_decode(call, shape, n)
    if shape.device.startswith("cuda"):
        torch.cuda.synchronize(shape.device)
    return time.perf_counter() - start


def warm_prefill(call: SparseCall, shape: AttentionShape, queries: Tensor, keys: Tensor) -> None:
    """One prefill call of the path's kernel at these positions, where its key was not warmed yet."""
    if call.path == "flex":
        from lcbench.sparse.flex import bucket

        # a graph per bucket and per pattern: the mask's numbers are constants in it
        key: tuple[Any, ...] = ("flex", bucket(len(queries), call.tile), bucket(len(keys), call.tile), call.mask.__name__)
    else:
        from lcbench.kernels.launch import next_power_of_two

        key = ("triton", next_power_of_two(max(len(queries), len(keys))), bool(call.element_mask.global_positions))
    key += (call.tile, shape)
    if key in WARMED:
        return
    blocks = build_block_list_over(call.mask, queries, key_runs(keys), call.tile)
    q, k, v = shape.inputs(len(queries), len(keys))
    if call.path == "flex":
        from lcbench.sparse.flex import flex_block_attention

        flex_block_attention(q, k, v, blocks, shape.scale)
    else:
        from lcbench.kernels.block_sparse_attention import block_sparse_attention as fused_prefill

        fused_prefill(q, k, v, blocks, call.element_mask, shape.scale)
    WARMED.add(key)


def decode_lengths(first: int, last: int) -> list[int]:
    """One cache length per power-of-two bucket from `first` to `last` keys (the decode kernel's autotune key)."""
    from lcbench.kernels.launch import next_power_of_two

    lengths, n = [], first
    while n <= last:
        lengths.append(n)
        n = next_power_of_two(n) + 1
    return lengths


def warm_decode(call: SparseCall, shape: AttentionShape, n: int) -> None:
    """One decode step over `n` keys, masked as the pattern masks it where the cache is not bounded."""
    from lcbench.kernels.decode_attention import decode_attention
    from lcbench.kernels.launch import next_power_of_two

    zero = torch.zeros((), dtype=torch.long)
    row = None if isinstance(call.cache, BoundedCache) else call.mask(zero, zero, torch.tensor(n - 1), torch.arange(n))
    allowed = None if row is None or bool(row.all()) else row.to(shape.device)
    key = ("triton-decode", next_power_of_two(n), allowed is not None, shape)
    if key in WARMED:
        return
    q, k, v = shape.inputs(1, n)
    decode_attention(q, k, v, allowed, shape.scale)
    WARMED.add(key)


ACTIVE: contextvars.ContextVar[SparseCall] = contextvars.ContextVar("lcbench_sparse_call")


def build_plan(batch_size: int, q_length: int, kv_length: int, q_offset: int = 0, **kwargs: Any) -> Plan:
    """The mask builder transformers calls once per forward (as `AttentionMaskInterface`)."""
    return ACTIVE.get().plan(q_length, kv_length, int(q_offset))


def sparse_attention(
    module: Any, query: Tensor, key: Tensor, value: Tensor, attention_mask: Any, scaling: float | None = None, **kwargs: Any
) -> tuple[Tensor, None]:
    """The attention function transformers calls per layer: query (b, h, n_q, d), key/value
    (b, h_kv, n_kv, d) -> ((b, n_q, h, d), no weights)."""
    plan = attention_mask
    if not isinstance(plan, Plan):
        raise RuntimeError(
            f"{NAME} attention was called without its plan (mask: {type(plan).__name__}); use it through `sparse_call`"
        )
    if plan.path == "triton":
        from lcbench.kernels.block_sparse_attention import block_sparse_attention as fused_prefill

        assert plan.blocks is not None
        out, config = fused_prefill(
            query, key, value, plan.blocks, plan.call.element_mask, scaling, compiled=plan.call.compile_s.append
        )
        plan.call.configs.add(f"prefill {config}")
    elif plan.path == "triton-decode":
        from lcbench.kernels.decode_attention import decode_attention

        row = plan.rows(0, 1)
        allowed = None if bool(row.all()) else row[0].to(query.device)
        out, config = decode_attention(query, key, value, allowed, scaling, compiled=plan.call.compile_s.append)
        plan.call.configs.add(f"decode {config}")
    elif plan.path == "flex":
        from lcbench.sparse.flex import flex_block_attention

        assert plan.blocks is not None
        out = flex_block_attention(query, key, value, plan.blocks, scaling, compiled=plan.call.compile_s.append)
    elif plan.blocks is not None:
        out = block_sparse_attention(query, key, value, plan.blocks, scaling, plan.runs)
    else:
        out = rows_attention(plan, query, key, value, scaling)
    return out.transpose(1, 2).contiguous(), None


ROWS_BYTES = 1 << 20  # rows path: queries taken together while their mask's temporaries fit


def rows_attention(plan: Plan, query: Tensor, key: Tensor, value: Tensor, scaling: float | None) -> Tensor:
    """Dense attention over the kept keys, a slice of query rows at a time, so that the mask (and
    the position arithmetic that makes it, 8 bytes a pair) never spans the whole chunk x keys."""
    n_q, n_kv = query.shape[2], key.shape[2]
    step = max(1, ROWS_BYTES // (8 * n_kv))
    out = query.new_empty(*query.shape[:3], value.shape[-1])
    for lo in range(0, n_q, step):
        hi = min(lo + step, n_q)
        allowed = plan.rows(lo, hi)
        out[:, :, lo:hi] = F.scaled_dot_product_attention(
            query[:, :, lo:hi],
            key,
            value,
            attn_mask=None if bool(allowed.all()) else allowed.to(query.device),
            scale=scaling,
            enable_gqa=query.shape[1] != key.shape[1],
        )
    return out


def register() -> str:
    from lcbench.model import register_attention

    register_attention(NAME, sparse_attention, build_plan)
    return NAME


def sparse_call(call: SparseCall) -> contextlib.AbstractContextManager[SparseCall]:
    from lcbench.model import active

    return active(ACTIVE, call)
