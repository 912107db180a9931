"""The same block list run by PyTorch's FlexAttention, compiled (Dong et al., "Flex Attention:
A Programming Model for Generating Optimized Attention Kernels", 2024).

The `BlockMask` is made from lcbench's own block list (`BlockMask.from_kv_blocks`), not from
`create_block_mask`, which evaluates the mask on every (query, key) pair. The compiled kernel is
built once per process and per shape; compiling takes tens of seconds on a CPU, so this path
pays off on long inputs and repeated shapes.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from lcbench.sparse.block_list import EMPTY, FULL, BlockList


def block_mask(blocks: BlockList) -> Any:
    """A FlexAttention `BlockMask` (one for all batches and heads) from a block list."""
    from torch.nn.attention.flex_attention import BlockMask

    n_q_tiles, n_kv_tiles = -(-blocks.n_q // blocks.tile), -(-blocks.n_kv // blocks.tile)
    partial = torch.zeros((n_q_tiles, n_kv_tiles), dtype=torch.bool)
    full = torch.zeros_like(partial)
    for batch in blocks.batches:
        rows = batch.q_tiles[:, None].expand_as(batch.kv_tiles)
        full[rows[batch.kinds == FULL], batch.kv_tiles[batch.kinds == FULL]] = True
        mixed = (batch.kinds != FULL) & (batch.kinds != EMPTY)
        partial[rows[mixed], batch.kv_tiles[mixed]] = True
    counts, indices = compact(partial)
    full_counts, full_indices = compact(full)
    q_offset = int(blocks.q_positions[0]) if blocks.n_q else 0
    kv_start = blocks.kv_start

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return blocks.mask(b, h, q_idx + q_offset, kv_idx + kv_start)

    return BlockMask.from_kv_blocks(
        counts,
        indices,
        full_counts,
        full_indices,
        BLOCK_SIZE=blocks.tile,
        mask_mod=mask_mod,
        seq_lengths=(blocks.n_q, blocks.n_kv),
    )


def compact(tiles: Tensor) -> tuple[Tensor, Tensor]:
    """(rows, cols) bool -> per-row counts (1, 1, rows) and column indices (1, 1, rows, cols), listed first."""
    counts = tiles.sum(-1, dtype=torch.int32)
    order = torch.argsort((~tiles).to(torch.int8), dim=-1, stable=True).to(torch.int32)
    return counts[None, None], order[None, None]


@functools.cache
def compiled_flex_attention() -> Any:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def flex_block_attention(q: Tensor, k: Tensor, v: Tensor, blocks: BlockList, scale: float | None = None) -> Tensor:
    """Shapes as `block_sparse_attention`: q (b, h, n_q, d), k, v (b, h_kv, n_kv, d) -> (b, h, n_q, d)."""
    flex = compiled_flex_attention()
    return flex(q, k, v, block_mask=block_mask(blocks).to(q.device), scale=scale, enable_gqa=q.shape[1] != k.shape[1])
