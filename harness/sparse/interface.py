"""Sparse attention inside any Hugging Face model, through transformers' `AttentionInterface`
and `AttentionMaskInterface`, with no change to the model's code.

Both are registered under one name: transformers asks the mask interface for the layers' mask
once per forward call (no mask registered would mean no causal masking at all) and hands what it
returns to every layer's attention function. Here the "mask" is a `Plan`: the block list for a
prefill, or one boolean row per query over the cached keys for a decode step. Which mask, cache
and path a call uses comes from the `SparseCall` made active around `Model.generate`.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lcbench.sparse.block_attention import block_sparse_attention
from lcbench.sparse.block_list import BlockList, build_block_list
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
    ran: collections.Counter[str] = field(default_factory=collections.Counter)
    configs: set[str] = field(default_factory=set)  # triton: the autotuned configs that ran
    tiles: list[float] = field(default_factory=list)  # share of tiles visited, per prefill
    compile_s: list[float] = field(default_factory=list)  # flex: seconds of each call that compiled a new bucket

    def plan(self, q_length: int, kv_length: int, q_offset: int) -> Plan:
        q_positions = torch.arange(q_offset, q_offset + q_length)
        if isinstance(self.cache, BoundedCache):
            kv_positions = torch.cat([self.cache.key_positions(), q_positions])
        else:
            kv_positions = torch.arange(kv_length)
        contiguous = int(kv_positions[-1]) - int(kv_positions[0]) + 1 == len(kv_positions)
        if q_length == 1 or not contiguous:
            # Decode, or a prefill chunk over a bounded cache: rows over the kept keys, linear in
            # them; a bounded cache keeps only keys the pattern allows, so a decode row is all true.
            path = "triton-decode" if self.path == "triton" and q_length == 1 else "rows"
            self.ran[path] += 1
            return Plan(path, self, q_positions=q_positions, kv_positions=kv_positions)
        blocks = build_block_list(self.mask, q_positions, int(kv_positions[0]), len(kv_positions), self.tile)
        total = -(-q_length // self.tile) * -(-len(kv_positions) // self.tile)
        self.tiles.append(blocks.tiles_visited() / total)
        path = "blocks" if self.path == "flex" and q_offset else self.path  # flex takes whole prefills only
        self.ran[path] += 1
        return Plan(path, self, blocks=blocks, runs=schedule(blocks) if path == "blocks" else None)


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
        out, config = fused_prefill(query, key, value, plan.blocks, plan.call.element_mask, scaling)
        plan.call.configs.add(f"prefill {config}")
    elif plan.path == "triton-decode":
        from lcbench.kernels.decode_attention import decode_attention

        row = plan.rows(0, 1)
        allowed = None if bool(row.all()) else row[0].to(query.device)
        out, config = decode_attention(query, key, value, allowed, scaling)
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
