"""Block-sparse attention in plain torch: online softmax over the key tiles a block list allows.

Shapes: q (b, h, n_q, d); k, v (b, h_kv, n_kv, d) with h a multiple of h_kv (GQA: each key
head serves h / h_kv query heads, which are folded into the rows of a tile, so K and V are never
copied per query head). Returns (b, h, n_q, d).

All query tiles of a batch advance together, one key tile per step (a "slot"); each step keeps
the running maximum, normaliser and weighted sum of the flash-attention recurrence (Dao et al.,
FlashAttention, 2022; Milakov and Gimelshein, "Online normalizer calculation for softmax",
2018). Memory is O(n_q * tile) per step, and no score matrix of n_q x n_kv exists at any time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lcbench.sparse.block_list import BlockList, TileBatch


def block_sparse_attention(q: Tensor, k: Tensor, v: Tensor, blocks: BlockList, scale: float | None = None) -> Tensor:
    b, h, n_q, d = q.shape
    h_kv, t = k.shape[1], blocks.tile
    groups = h // h_kv
    scale = d**-0.5 if scale is None else scale
    q_tiles = pad_to_tiles(q, t).view(b, h_kv, groups, -1, t, d)
    k_tiles = pad_to_tiles(k, t).view(b, h_kv, -1, t, d)
    v_tiles = pad_to_tiles(v, t).view(b, h_kv, -1, t, v.shape[-1])
    out = q.new_zeros(b, h_kv, groups, q_tiles.shape[3], t, v.shape[-1])
    for batch in blocks.batches:
        # (b, h_kv, nq, groups * t, d): the query heads of one key head stacked as rows
        rows = q_tiles[:, :, :, batch.q_tiles].permute(0, 1, 3, 2, 4, 5).reshape(b, h_kv, len(batch.q_tiles), groups * t, d)
        result = attend_batch(rows * scale, k_tiles, v_tiles, blocks, batch, groups)
        out[:, :, :, batch.q_tiles] = result.view(b, h_kv, len(batch.q_tiles), groups, t, -1).permute(0, 1, 3, 2, 4, 5)
    return out.view(b, h, -1, v.shape[-1])[:, :, :n_q]


def attend_batch(rows: Tensor, k_tiles: Tensor, v_tiles: Tensor, blocks: BlockList, batch: TileBatch, groups: int) -> Tensor:
    b, h_kv, nq, width, _ = rows.shape
    t = blocks.tile
    best = rows.new_full((b, h_kv, nq, width, 1), float("-inf"))
    total = rows.new_zeros((b, h_kv, nq, width, 1))
    acc = rows.new_zeros((b, h_kv, nq, width, v_tiles.shape[-1]))
    for slot in range(batch.kv_tiles.shape[1]):
        tiles = batch.kv_tiles[:, slot]
        scores = rows @ k_tiles[:, :, tiles].transpose(-1, -2)  # (b, h_kv, nq, groups * t, t)
        allowed = blocks.slot_mask(batch, slot)
        if allowed is not None:
            scores = scores.view(b, h_kv, nq, groups, t, t).masked_fill(~allowed[:, None], float("-inf")).view(scores.shape)
        new_best = torch.maximum(best, scores.amax(-1, keepdim=True))
        safe = new_best.masked_fill(new_best == float("-inf"), 0.0)  # rows with nothing allowed yet
        weights = torch.exp(scores - safe)
        rescale = torch.exp(best - safe)
        total = total * rescale + weights.sum(-1, keepdim=True)
        acc = acc * rescale + weights @ v_tiles[:, :, tiles]
        best = new_best
    return acc / total.clamp(min=torch.finfo(acc.dtype).tiny)


def pad_to_tiles(x: Tensor, tile: int) -> Tensor:
    """Zero-pad the sequence dimension (-2) to a multiple of `tile`."""
    extra = -x.shape[-2] % tile
    return F.pad(x, (0, 0, 0, extra)) if extra else x
