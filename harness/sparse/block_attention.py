"""Block-sparse attention in torch: each query tile attends to only the key tiles its block list
allows, gathered side by side, through PyTorch's fused attention kernel.

Shapes: q (b, h, n_q, d); k, v (b, h_kv, n_kv, d) with h a multiple of h_kv (GQA: the kernel is
told `enable_gqa`, so K and V are never repeated per query head). Returns (b, h, n_q, d).

For a chunk of query tiles, the allowed key tiles are gathered into (tiles, C * T) keys and
`scaled_dot_product_attention` runs over them with the tile masks where a tile is only partly
allowed. The fused kernel walks those keys block by block with the online softmax of flash
attention (Dao et al., FlashAttention, 2022), so the largest thing in memory is the gathered keys
of one chunk: linear in n_q, never n_q x n_kv. Chunks are sized to `CHUNK_BYTES` of gathered K
and V, or of scores where SDPA's CPU kernel takes a masked tile row through its math path, which
keeps the working memory flat in the input length.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from lcbench.sparse.block_list import BlockList, TileBatch

CHUNK_BYTES = 16 << 20


def block_sparse_attention(q: Tensor, k: Tensor, v: Tensor, blocks: BlockList, scale: float | None = None) -> Tensor:
    b, h, n_q, d = q.shape
    h_kv, t = k.shape[1], blocks.tile
    q_tiles = pad_to_tiles(q, t).view(b, h, -1, t, d)
    k_tiles = pad_to_tiles(k, t).view(b, h_kv, -1, t, d)
    v_tiles = pad_to_tiles(v, t).view(b, h_kv, -1, t, v.shape[-1])
    out = q.new_empty(b, h, q_tiles.shape[2], t, v.shape[-1])
    for batch in blocks.batches:
        width = batch.kv_tiles.shape[1]
        gathered = 2 * b * h_kv * width * t * d * k.element_size()
        scores = b * h * t * width * t * 4  # where the kernel falls back to materialising a masked tile row
        step = max(1, CHUNK_BYTES // max(gathered, scores))
        for start in range(0, len(batch.q_tiles), step):
            rows = slice(start, start + step)
            q_index = batch.q_tiles[rows]
            out[:, :, q_index] = attend_rows(q_tiles, k_tiles, v_tiles, blocks, batch, rows, scale)
    return out.view(b, h, -1, v.shape[-1])[:, :, :n_q]


def attend_rows(
    q_tiles: Tensor, k_tiles: Tensor, v_tiles: Tensor, blocks: BlockList, batch: TileBatch, rows: slice, scale: float | None
) -> Tensor:
    """Attention for some query tiles of a batch: (b, h, n, T, d)."""
    b, h, _, t, d = q_tiles.shape
    h_kv = k_tiles.shape[1]
    q_index, kv_index = batch.q_tiles[rows], batch.kv_tiles[rows]
    n, width = kv_index.shape
    query = q_tiles[:, :, q_index].transpose(1, 2).reshape(b * n, h, t, d)
    key = k_tiles[:, :, kv_index].transpose(1, 2).reshape(b * n, h_kv, width * t, d)
    value = v_tiles[:, :, kv_index].transpose(1, 2).reshape(b * n, h_kv, width * t, v_tiles.shape[-1])
    mask = blocks.rows_mask(batch, rows)
    if mask is not None:  # built on the CPU with the block list
        mask = mask.to(query.device).repeat(b, 1, 1)[:, None]  # (b * n, 1, T, C * T): the same for every head
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scale, enable_gqa=h != h_kv)
    return out.view(b, n, h, t, -1).transpose(1, 2)


def pad_to_tiles(x: Tensor, tile: int) -> Tensor:
    """Zero-pad the sequence dimension (-2) to a multiple of `tile`."""
    extra = -x.shape[-2] % tile
    return F.pad(x, (0, 0, 0, extra)) if extra else x
