"""Split-K decode attention (flash-decoding) in Triton, beside its plain-torch reference.

Shapes: q (b, h, 1, d) for the one new token; k, v (b, h_kv, n, d), the (possibly bounded)
cache; `allowed` an optional (n,) bool row over the cache (patterns whose cache is not bounded
to what they attend). Returns (b, h, 1, d).

One token cannot fill a GPU by splitting queries, so the keys are split instead: program
(b x kv head, split) runs the online softmax over its slice of the cache for all the query heads
that share the key head (GQA: K and V are read once per group) and writes a partial maximum,
normaliser and weighted sum; a second kernel rescales and adds the splits. Dao et al.,
"Flash-Decoding for long-context inference", 2023.
"""

from __future__ import annotations

import torch
import triton.language as tl
from torch import Tensor

from lcbench.kernels.launch import Compiled, check_attention_inputs, chosen_config, kernel, launch, next_power_of_two

CONFIGS = ((2, 2), (4, 2), (4, 3), (8, 2))
TARGET_SPLITS = 32
LENGTHS = ("n_kv", "n_bucket", "keys_per_split", "n_splits")  # a cache grows by a key a step: one variant for all


def _partials(
    Q, K, V, Allowed, PartAcc, PartBest, PartTotal,  # noqa: N803 (Triton pointers)
    stride_qb, stride_qh, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    n_kv, n_bucket, keys_per_split, kv_heads, groups, n_splits, scale,
    HAS_ALLOWED: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr,  # noqa: N803
    PRECISION: tl.constexpr,  # noqa: N803
):  # fmt: skip
    bkv = tl.program_id(0)
    split = tl.program_id(1)
    b = (bkv // kv_heads).to(tl.int64)  # 64-bit offsets for long caches
    kv_head = (bkv % kv_heads).to(tl.int64)
    lanes = tl.arange(0, BLOCK_H)
    heads = kv_head * groups + lanes
    dims = tl.arange(0, HEAD_DIM)
    live = lanes < groups
    q = tl.load(Q + b * stride_qb + heads[:, None] * stride_qh + dims[None, :], mask=live[:, None], other=0.0)
    best = tl.full([BLOCK_H], -1.0e30, tl.float32)
    total = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, HEAD_DIM], tl.float32)
    log2_scale = scale * 1.4426950408889634
    start = split * keys_per_split
    end = tl.minimum(start + keys_per_split, n_kv)
    for offset in range(start, end, BLOCK_N):
        cols = offset + tl.arange(0, BLOCK_N)
        inside = cols < end
        k = tl.load(
            K + b * stride_kb + kv_head * stride_kh + cols[None, :] * stride_kn + dims[:, None], mask=inside[None, :], other=0.0
        )
        scores = tl.dot(q, k, input_precision=PRECISION) * log2_scale
        if HAS_ALLOWED:
            inside = inside & (tl.load(Allowed + cols, mask=inside, other=0) != 0)
        scores = tl.where(inside[None, :], scores, float("-inf"))
        new_best = tl.maximum(best, tl.max(scores, 1))
        weights = tl.math.exp2(scores - new_best[:, None])
        rescale = tl.math.exp2(best - new_best)
        total = total * rescale + tl.sum(weights, 1)
        v = tl.load(
            V + b * stride_vb + kv_head * stride_vh + cols[:, None] * stride_vn + dims[None, :], mask=inside[:, None], other=0.0
        )
        acc = acc * rescale[:, None] + tl.dot(weights.to(v.dtype), v, input_precision=PRECISION)
        best = new_best
    row = (b * kv_heads * groups + heads) * n_splits + split  # partials laid out (b, h, split)
    tl.store(PartAcc + row[:, None] * HEAD_DIM + dims[None, :], acc, mask=live[:, None])
    tl.store(PartBest + row, best, mask=live)
    tl.store(PartTotal + row, total, mask=live)


def _combine(PartAcc, PartBest, PartTotal, Out, n_splits, BLOCK_S: tl.constexpr, HEAD_DIM: tl.constexpr):  # noqa: N803
    bh = tl.program_id(0)
    splits = tl.arange(0, BLOCK_S)
    live = splits < n_splits
    dims = tl.arange(0, HEAD_DIM)
    best = tl.load(PartBest + bh * n_splits + splits, mask=live, other=-1.0e30)
    total = tl.load(PartTotal + bh * n_splits + splits, mask=live, other=0.0)
    acc = tl.load(PartAcc + (bh * n_splits + splits)[:, None] * HEAD_DIM + dims[None, :], mask=live[:, None], other=0.0)
    weight = tl.math.exp2(best - tl.max(best, 0))
    out = tl.sum(acc * weight[:, None], 0) / tl.sum(total * weight, 0)
    tl.store(Out + bh * HEAD_DIM + dims, out.to(Out.dtype.element_ty))


def decode_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    allowed: Tensor | None = None,
    scale: float | None = None,
    block_n: int = 64,
    compiled: Compiled | None = None,
) -> tuple[Tensor, str]:
    """Returns (output (b, h, 1, d), the autotuned config of the split kernel); `compiled` hears
    the seconds of a call that autotuned or compiled either kernel (`launch`)."""
    b, h, one, d = q.shape
    if one != 1:
        raise ValueError(f"decode_attention takes one query token, got {one}")
    check_attention_inputs(q, k, v)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    n, kv_heads = k.shape[2], k.shape[1]
    groups = h // kv_heads
    keys_per_split = max(block_n, -(-n // TARGET_SPLITS // block_n) * block_n) if n else block_n
    n_splits = max(1, -(-n // keys_per_split))
    partial_acc = torch.empty((b * h * n_splits, d), dtype=torch.float32, device=q.device)
    partial_best = torch.empty(b * h * n_splits, dtype=torch.float32, device=q.device)
    partial_total = torch.empty_like(partial_best)
    row = allowed.to(torch.int8).contiguous() if allowed is not None else torch.zeros(1, dtype=torch.int8, device=q.device)
    split_kernel = kernel(_partials, CONFIGS, ("n_bucket", "HEAD_DIM"), LENGTHS)  # not re-tuned at every new cache length
    launch(
        split_kernel, (b * kv_heads, n_splits),
        q, k, v, row, partial_acc, partial_best, partial_total,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
        n, next_power_of_two(n), keys_per_split, kv_heads, groups, n_splits, d**-0.5 if scale is None else scale,
        HAS_ALLOWED=allowed is not None, BLOCK_H=max(16, next_power_of_two(groups)), BLOCK_N=block_n, HEAD_DIM=d,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32", heard=compiled,
    )  # fmt: skip
    out = torch.empty_like(q)
    combine = kernel(_combine, lengths=("n_splits",))
    launch(
        combine, (b * h,), partial_acc, partial_best, partial_total, out, n_splits,
        BLOCK_S=next_power_of_two(n_splits), HEAD_DIM=d, heard=compiled,
    )  # fmt: skip
    return out, chosen_config(split_kernel)


def reference_decode(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None = None, scale: float | None = None) -> Tensor:
    """Plain softmax over the cache in fp32: the definition."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.float().repeat_interleave(groups, 1), v.float().repeat_interleave(groups, 1)
    scores = (q.float() @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5 if scale is None else scale)
    if allowed is not None:
        scores = scores.masked_fill(~allowed.to(scores.device), float("-inf"))
    return torch.softmax(scores, -1) @ v
