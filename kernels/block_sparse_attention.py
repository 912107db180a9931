"""Block-sparse flash attention for prefill, in Triton, beside its plain-torch reference.

Shapes: q (b, h, n_q, d); k, v (b, h_kv, n_kv, d), h a multiple of h_kv (GQA: query head i reads
key head i // (h / h_kv), K and V are never copied); d in {32, 64, 128}. Returns (b, h, n_q, d).

One program per (query tile, batch x head). It walks only the key tiles of its row in a compact
block list (per query tile: how many key tiles, which, and whether each needs an element mask),
keeping the running maximum, normaliser and weighted sum of the online softmax in base 2
(`exp2`, the scale folded with log2(e)), so no score ever reaches memory. Fully allowed tiles
skip the element mask; partly allowed ones compute it from positions: causal and (within
`window` | key < `sinks` | key or query global | distance a multiple of `stride`), which covers
sinks + window, Longformer, strided and, with tiles inside BigBird's blocks, BigBird. Keys are
indexed as they lie in K and V and masked at their true positions (a table of n_kv positions), so
a chunk of a prefill over a bounded cache's sinks + window runs here too.
Dao et al., "FlashAttention", 2022; Tillet et al., Triton's fused-attention tutorial.
"""

from __future__ import annotations

import torch
import triton.language as tl
from torch import Tensor

from lcbench.kernels.launch import Compiled, check_attention_inputs, chosen_config, kernel, launch, next_power_of_two
from lcbench.sparse.block_list import EMPTY, PARTIAL, BlockList
from lcbench.sparse.patterns import Mask
from lcbench.sparse.reference import masked_attention

NO_LIMIT = 2**31 - 1
CONFIGS = ((4, 2), (4, 3), (8, 2), (8, 3))
# integer arguments that change with the prompt: one compiled variant for every length
LENGTHS = ("n_q", "n_kv", "q_offset", "n_bucket", "max_tiles", "sinks", "window", "stride")


def _forward(
    Q, K, V, Out, Counts, Indices, Flags, KvPositions, Globals,  # noqa: N803 (Triton pointers)
    stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_ob, stride_oh, stride_on,
    n_q, n_kv, q_offset, n_bucket, max_tiles, heads, groups, scale,
    sinks, window, stride,
    HAS_GLOBALS: tl.constexpr, BLOCK: tl.constexpr, HEAD_DIM: tl.constexpr, PRECISION: tl.constexpr,  # noqa: N803
):  # fmt: skip
    tile = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // heads).to(tl.int64)  # 64-bit offsets: b * stride overflows 32 bits past ~500k tokens
    h = (bh % heads).to(tl.int64)
    kv_head = h // groups
    rows = tile * BLOCK + tl.arange(0, BLOCK)
    dims = tl.arange(0, HEAD_DIM)
    q = tl.load(
        Q + b * stride_qb + h * stride_qh + rows[:, None] * stride_qn + dims[None, :], mask=rows[:, None] < n_q, other=0.0
    )
    q_pos = rows + q_offset
    if HAS_GLOBALS:
        q_global = tl.load(Globals + q_pos, mask=rows < n_q, other=0) != 0
    best = tl.full([BLOCK], -1.0e30, tl.float32)  # finite: a row with nothing allowed yet stays 0
    total = tl.zeros([BLOCK], tl.float32)
    acc = tl.zeros([BLOCK, HEAD_DIM], tl.float32)
    log2_scale = scale * 1.4426950408889634
    count = tl.load(Counts + tile)
    for j in range(0, count):
        kv_tile = tl.load(Indices + tile * max_tiles + j)
        cols = kv_tile * BLOCK + tl.arange(0, BLOCK)
        k = tl.load(
            K + b * stride_kb + kv_head * stride_kh + cols[None, :] * stride_kn + dims[:, None],
            mask=cols[None, :] < n_kv,
            other=0.0,
        )
        scores = tl.dot(q, k, input_precision=PRECISION) * log2_scale
        if tl.load(Flags + tile * max_tiles + j) != 0:
            # the keys' true positions, looked up (masked tiles only): a bounded cache's sinks and window
            # are two runs of positions, so a position is not the key's index plus one offset
            kv_pos = tl.load(KvPositions + cols, mask=cols < n_kv, other=0)
            distance = q_pos[:, None] - kv_pos[None, :]
            near = (distance < window) | (kv_pos[None, :] < sinks) | ((stride > 0) & (distance % tl.maximum(stride, 1) == 0))
            if HAS_GLOBALS:
                k_global = tl.load(Globals + kv_pos, mask=cols < n_kv, other=0) != 0
                near = near | q_global[:, None] | k_global[None, :]
            allowed = near & (distance >= 0) & (cols[None, :] < n_kv)
            scores = tl.where(allowed, scores, float("-inf"))
        new_best = tl.maximum(best, tl.max(scores, 1))
        weights = tl.math.exp2(scores - new_best[:, None])
        rescale = tl.math.exp2(best - new_best)
        total = total * rescale + tl.sum(weights, 1)
        v = tl.load(
            V + b * stride_vb + kv_head * stride_vh + cols[:, None] * stride_vn + dims[None, :],
            mask=cols[:, None] < n_kv,
            other=0.0,
        )
        acc = acc * rescale[:, None] + tl.dot(weights.to(v.dtype), v, input_precision=PRECISION)
        best = new_best
    out = acc / tl.where(total > 0, total, 1.0)[:, None]  # padding rows past n_q may allow nothing
    o_ptrs = Out + b * stride_ob + h * stride_oh + rows[:, None] * stride_on + dims[None, :]
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=rows[:, None] < n_q)


def compact_block_list(blocks: BlockList, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(counts (n_tiles,), indices (n_tiles, C), needs-mask flags (n_tiles, C), key positions (n_kv,))
    as int32 / int8 / int32 on `device`: made once per block list and device, for every layer."""
    key = ("triton", str(device))
    if key not in blocks.cached:
        blocks.cached[key] = compact(blocks, device)
    return blocks.cached[key]


def compact(blocks: BlockList, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    n_tiles = -(-blocks.n_q // blocks.tile)
    width = max((b.kv_tiles.shape[1] for b in blocks.batches), default=1)
    counts = torch.zeros(n_tiles, dtype=torch.int32)
    indices = torch.zeros((n_tiles, width), dtype=torch.int32)
    flags = torch.zeros((n_tiles, width), dtype=torch.int8)
    for batch in blocks.batches:
        used = batch.kinds != EMPTY
        counts[batch.q_tiles] = used.sum(-1, dtype=torch.int32)
        indices[batch.q_tiles, : batch.kv_tiles.shape[1]] = batch.kv_tiles.to(torch.int32)
        flags[batch.q_tiles, : batch.kv_tiles.shape[1]] = (batch.kinds == PARTIAL).to(torch.int8)
    positions = blocks.kv_positions.to(torch.int32) if blocks.n_kv else torch.zeros(1, dtype=torch.int32)
    return counts.to(device), indices.to(device), flags.to(device), positions.to(device)


def block_sparse_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    blocks: BlockList,
    element_mask: ElementMask,
    scale: float | None = None,
    compiled: Compiled | None = None,
) -> tuple[Tensor, str]:
    """The kernel over `blocks` (tiles of `blocks.tile`), partly allowed tiles masked by
    `element_mask`. Returns (output, the autotuned config); `compiled` hears the seconds of a call
    that autotuned or compiled (`launch`)."""
    b, h, n_q, d = q.shape
    check_attention_inputs(q, k, v)
    if k.shape[2] != blocks.n_kv or n_q != blocks.n_q:
        raise ValueError(f"the block list covers {blocks.n_q} queries x {blocks.n_kv} keys; got {n_q} x {k.shape[2]}")
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    out = torch.empty_like(q)
    counts, indices, flags, kv_positions = compact_block_list(blocks, q.device)
    globals_ = element_mask.global_table(q.device)
    table = globals_ if globals_ is not None else torch.zeros(1, dtype=torch.int8, device=q.device)
    run = kernel(_forward, CONFIGS, ("n_bucket", "HEAD_DIM"), LENGTHS)  # tuned per power-of-two length, not per length
    launch(
        run, (len(counts), b * h),
        q, k, v, out, counts, indices, flags, kv_positions, table,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        n_q, blocks.n_kv, int(blocks.q_positions[0]) if n_q else 0, next_power_of_two(max(n_q, blocks.n_kv)),
        indices.shape[1], h, h // k.shape[1],
        d**-0.5 if scale is None else scale,
        element_mask.sinks, element_mask.window, element_mask.stride,
        HAS_GLOBALS=globals_ is not None, BLOCK=blocks.tile, HEAD_DIM=d, PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        heard=compiled,
    )  # fmt: skip
    return out, chosen_config(run)


class ElementMask:
    """What the kernel computes inside a partly allowed tile, as numbers: causal and (distance
    < window | key < sinks | a global end | distance % stride == 0), on true positions (a query's
    is its offset plus its row; a key's comes from the block list's position table, since a bounded
    cache's keys are two runs of positions). Must agree with the mask function the block list was
    built from (tests check each pattern against the dense reference, on whole prefills and on
    chunks over a bounded cache's kept keys)."""

    def __init__(
        self, window: int = NO_LIMIT, sinks: int = 0, stride: int = 0, global_positions: list[int] | None = None, length: int = 0
    ):
        self.window, self.sinks, self.stride = window, sinks, stride
        self.global_positions, self.length = global_positions or [], length

    def global_table(self, device: torch.device) -> Tensor | None:
        if not self.global_positions:
            return None
        table = torch.zeros(max(self.length, 1), dtype=torch.int8)
        table[self.global_positions] = 1
        return table.to(device)


def reference_attention(q: Tensor, k: Tensor, v: Tensor, mask: Mask) -> Tensor:
    """The kernel's reference: dense masked attention in fp32 (small inputs only)."""
    return masked_attention(q.float(), k.float(), v.float(), mask)
