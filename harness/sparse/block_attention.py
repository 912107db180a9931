"""Block-sparse attention in torch: each query row attends to its band of keys (strided views of
K and V, never copied) and to its few scattered keys (gathered), as `block_runs` schedules them.

Shapes: q (b, h, n_q, d); k, v (b, h_kv, n_kv, d) with h a multiple of h_kv (GQA: K and V are
never repeated per query head). Returns (b, h, n_q, d).

The band and the scattered keys are two attention calls, each returning its log-sum-exp, merged
as flash attention merges blocks (Dao et al., FlashAttention, 2022): softmax over the union is
the two partial outputs weighted by exp(lse_part - lse_all). On a CPU both calls are PyTorch's
fused flash kernel (`_scaled_dot_product_flash_attention_for_cpu`, which returns the log-sum-exp
and takes an additive mask); elsewhere the same in plain torch. Element masks are evaluated per
chunk from the mask function, and one mask stands for a whole chunk where every row's is the same
(a window pattern's interior), so nothing N-sized is kept across layers. Chunks hold about
`CHUNK_BYTES` of outputs, masks and gathered keys, or 1/`CHUNK_SHARE` of the output where that is
more: the working memory is the output plus one chunk, and a long input's many rows are taken a
few to a call (each kernel call costs tens of microseconds: at 128k, rows taken one a call took
2.2 s, three a call 1.8 s).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lcbench.sparse.block_list import BlockList
from lcbench.sparse.block_runs import BlockRun, element_mask, schedule

CHUNK_BYTES = 512 << 10
CHUNK_SHARE = 256


def block_sparse_attention(
    q: Tensor, k: Tensor, v: Tensor, blocks: BlockList, scale: float | None = None, runs: Sequence[BlockRun] | None = None
) -> Tensor:
    """`runs` is the forward call's schedule (`Plan.runs`, made once for every layer), else made here."""
    b, h, n_q, _ = q.shape
    runs = schedule(blocks) if runs is None else runs  # made before the output is: their transient buffers are gone
    out = q.new_empty(b, h, n_q, v.shape[-1])
    chunk = max(CHUNK_BYTES, out.numel() * out.element_size() // CHUNK_SHARE)
    for run in runs:
        step = max(1, chunk // row_bytes(q, k, run))
        for first in range(0, run.count, step):
            count = min(step, run.count - first)
            for batch in range(b):
                rows = attend_rows(q, k, v, blocks, run, batch, first, count, scale)
                start = run.q_start + first * run.rows
                out[batch, :, start : start + count * run.rows].view(h, count, run.rows, -1).copy_(rows.transpose(0, 1))
    return out


def row_bytes(q: Tensor, k: Tensor, run: BlockRun) -> int:
    """Working memory per row of a run: its outputs (two parts and their merge), masks, gathered keys,
    and off the CPU the scores that plain torch holds (float32 scores and their softmax)."""
    h, d = q.shape[1], q.shape[-1]
    scattered = 0 if run.scattered is None else run.scattered.shape[1]
    masks = 0 if run.band_mask is not None else run.rows * run.keys * (8 + q.element_size())  # positions, bias
    scores = 0 if q.device.type == "cpu" else 2 * h * run.rows * run.keys * 4
    return 2 * h * run.rows * d * q.element_size() + masks + 2 * k.shape[1] * scattered * d * k.element_size() + scores


def attend_rows(
    q: Tensor, k: Tensor, v: Tensor, blocks: BlockList, run: BlockRun, batch: int, first: int, count: int, scale: float | None
) -> Tensor:
    """Attention for rows first .. first + count - 1 of a run, one batch element: (count, h, rows, d)."""
    query = rows_view(q[batch], run.q_start + first * run.rows, run.rows, count, run.rows)
    parts = []
    if run.width:
        band = run.band_start + first * run.rows
        key, value = rows_view(k[batch], band, run.rows, count, run.width), rows_view(v[batch], band, run.rows, count, run.width)
        bias = shared_bias(run, "band", query) if run.band_mask is not None else None
        if run.band_mask is None:
            bias = additive(element_mask(blocks, run.q_index(first, count), run.band_index(first, count)), query)
        parts.append(attend(query, key, value, bias, scale))
    if run.scattered is not None:
        index = run.scattered_index(first, count)  # (count | 1, 1, S)
        key, value = gather(k[batch], index, count), gather(v[batch], index, count)
        bias = shared_bias(run, "scattered", query) if run.scattered_mask is not None else None
        if run.scattered_mask is None:
            bias = additive(element_mask(blocks, run.q_index(first, count), index), query)
        parts.append(attend(query, key, value, bias, scale))
    if not parts:  # nothing allowed: rows past every key (no pattern in lcbench leaves a query without one)
        return query.new_zeros(count, q.shape[1], run.rows, v.shape[-1])
    return merge(parts)


def gather(x: Tensor, index: Tensor, count: int) -> Tensor:
    """(heads, n, d) at key indices (count | 1, 1, S) -> (count, heads, S, d); one row of indices
    for all is gathered once and broadcast (a StreamingLLM pattern's sinks)."""
    heads, _, d = x.shape
    picked = x.index_select(1, index.clamp(min=0).reshape(-1).to(x.device)).view(heads, len(index), -1, d).transpose(0, 1)
    return picked.expand(count, -1, -1, -1) if len(index) == 1 else picked


def rows_view(x: Tensor, start: int, step: int, count: int, length: int) -> Tensor:
    """(heads, n, d) -> (count, heads, length, d): row i is positions start + i * step .. + length - 1,
    a strided view (no copy)."""
    heads, _, d = x.shape
    s_head, s_pos, s_dim = x.stride()
    return x.as_strided((count, heads, length, d), (step * s_pos, s_head, s_pos, s_dim), x.storage_offset() + start * s_pos)


def attend(query: Tensor, key: Tensor, value: Tensor, bias: Tensor | None, scale: float | None) -> tuple[Tensor, Tensor]:
    """Attention with an additive mask and its log-sum-exp: query (n, h, m, d), key/value
    (n, h_kv, k, d), bias (n | 1, 1, m, k) or None -> out (n, h, m, d), lse (n, h, m) float32."""
    if query.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, attn_mask=bias, scale=scale)
        return out, lse
    groups = query.shape[1] // key.shape[1]
    scores = query @ key.repeat_interleave(groups, 1).transpose(-1, -2) * (scale or query.shape[-1] ** -0.5)
    scores = scores.float() if bias is None else scores.float() + bias.float()
    lse = torch.logsumexp(scores, -1)
    return (torch.exp(scores - lse[..., None]).to(value.dtype) @ value.repeat_interleave(groups, 1)), lse


def additive(allowed: Tensor, like: Tensor) -> Tensor | None:
    """A bool mask (..., m, k) as SDPA's additive bias (n | 1, 1, m, k): 0 where allowed, the
    dtype's lowest elsewhere (finite, so that a row with nothing allowed gets weight 0 in the merge,
    not NaN); None where all is allowed."""
    if bool(allowed.all()):
        return None
    lowest = torch.finfo(like.dtype).min
    bias = torch.zeros(allowed.shape, dtype=like.dtype, device=like.device).masked_fill_(~allowed.to(like.device), lowest)
    return bias.view(-1, 1, *allowed.shape[-2:])


def shared_bias(run: BlockRun, part: str, like: Tensor) -> Tensor | None:
    """`additive` for a run's shared mask (`part`: band or scattered), made once for every chunk and layer."""
    key = (part, like.dtype, like.device)
    if key not in run.biases:
        allowed = run.band_mask if part == "band" else run.scattered_mask
        assert allowed is not None
        run.biases[key] = additive(allowed, like)
    return run.biases[key]


def merge(parts: list[tuple[Tensor, Tensor]]) -> Tensor:
    """Partial attention outputs over disjoint keys, with their log-sum-exps, as one output."""
    if len(parts) == 1:
        return parts[0][0]
    (out_a, lse_a), (out_b, lse_b) = parts
    # weight of part b relative to the whole: sigmoid(lse_b - lse_a); the merge is a lerp, in place
    weight_b = torch.sigmoid(lse_b - lse_a)[..., None]
    if out_a.dtype != torch.float32:
        return torch.lerp(out_a.float(), out_b.float(), weight_b).to(out_a.dtype)
    return out_a.lerp_(out_b, weight_b)
