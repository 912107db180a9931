"""The same block list run by PyTorch's FlexAttention, compiled (Dong et al., "Flex Attention:
A Programming Model for Generating Optimized Attention Kernels", 2024).

The `BlockMask` is made from lcbench's own block list (`BlockMask.from_kv_blocks`), not from
`create_block_mask`, which evaluates the mask on every (query, key) pair. The compiled kernel is
built once per process and per shape, and compiling takes tens of seconds on a CPU, so inputs are
padded up to a few bucket lengths (`bucket`: 1, 2, 3, 4, 6, 8, 12, ... tiles, at most 1.5x the
input) with the pad keys masked out and the pad queries' tiles skipped: a suite run compiles once
per bucket, not once per prompt length. The first call of each bucket is timed (`Compiled`).

Keys are looked up by position (a table, one entry per key), so a chunk of a prefill over a
bounded cache's sinks and window runs here as a whole prefill does, in the same compiled kernel.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from lcbench.sparse.block_list import EMPTY, FULL, BlockList


def bucket(n: int, tile: int) -> int:
    """`n` rounded up to a bucket length: tile x 1, 2, 3, 4, 6, 8, 12, 16, ... (2^k and 1.5 x 2^k)."""
    tiles, power = -(-n // tile), 1
    while True:
        for size in (power, power * 3 // 2):
            if size >= tiles:
                return size * tile
        power *= 2


def block_mask(blocks: BlockList, n_q: int | None = None, n_kv: int | None = None, device: Any = "cpu") -> Any:
    """A FlexAttention `BlockMask` (one for all batches and heads) from a block list, for inputs
    padded to `n_q` queries and `n_kv` keys (default: unpadded), on `device`: pad tiles are
    skipped, and pad keys inside the last tile masked out. Made once per block list, padding and
    device (`blocks.cached`), so every layer of a forward call shares it."""
    n_q, n_kv = n_q or blocks.n_q, n_kv or blocks.n_kv
    key = ("flex", n_q, n_kv, str(device))
    if key not in blocks.cached:
        blocks.cached[key] = make_block_mask(blocks, n_q, n_kv, torch.device(device))
    return blocks.cached[key]


def make_block_mask(blocks: BlockList, n_q: int, n_kv: int, device: torch.device) -> Any:
    from torch.nn.attention.flex_attention import BlockMask

    n_q_tiles, n_kv_tiles = -(-n_q // blocks.tile), -(-n_kv // blocks.tile)
    partial = torch.zeros((n_q_tiles, n_kv_tiles), dtype=torch.bool)
    full = torch.zeros_like(partial)
    for batch in blocks.batches:
        rows = batch.q_tiles[:, None].expand_as(batch.kv_tiles)
        full[rows[batch.kinds == FULL], batch.kv_tiles[batch.kinds == FULL]] = True
        mixed = (batch.kinds != FULL) & (batch.kinds != EMPTY)
        partial[rows[mixed], batch.kv_tiles[mixed]] = True
    counts, indices = compact(partial)
    full_counts, full_indices = compact(full)
    # tensors, not ints: the compiled kernel then takes them as inputs, instead of being
    # specialised (and recompiled) on each prompt's lengths
    q_offset = torch.tensor(int(blocks.q_positions[0]) if blocks.n_q else 0)
    real_kv = torch.tensor(blocks.n_kv)
    # each key's position, padded to the bucket: keys may be a bounded cache's sinks and window
    # (two runs of positions), so a position is looked up, not computed from the index
    kv_positions = torch.zeros(n_kv, dtype=torch.long)
    kv_positions[: blocks.n_kv] = blocks.kv_positions
    kv_positions = kv_positions.to(device)

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return blocks.mask(b, h, q_idx + q_offset, kv_positions[kv_idx]) & (kv_idx < real_kv)

    return BlockMask.from_kv_blocks(
        counts,
        indices,
        full_counts,
        full_indices,
        BLOCK_SIZE=blocks.tile,
        mask_mod=mask_mod,
        seq_lengths=(n_q, n_kv),
    ).to(device)


def compact(tiles: Tensor) -> tuple[Tensor, Tensor]:
    """(rows, cols) bool -> per-row counts (1, 1, rows) and column indices (1, 1, rows, cols), listed first."""
    counts = tiles.sum(-1, dtype=torch.int32)
    order = torch.argsort((~tiles).to(torch.int8), dim=-1, stable=True).to(torch.int32)
    return counts[None, None], order[None, None]


@functools.cache
def compiled_flex_attention() -> Any:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


Compiled = Callable[[float], None]  # told the seconds of a call that compiled a new bucket
COMPILED: set[tuple[Any, ...]] = set()  # the shapes compiled so far in this process


def flex_block_attention(
    q: Tensor, k: Tensor, v: Tensor, blocks: BlockList, scale: float | None = None, compiled: Compiled | None = None
) -> Tensor:
    """Shapes as `block_sparse_attention`: q (b, h, n_q, d), k, v (b, h_kv, n_kv, d) -> (b, h, n_q, d).
    Inputs are padded to their bucket lengths; `compiled` hears the time of a first call per bucket."""
    n_q, n_kv = bucket(blocks.n_q, blocks.tile), bucket(blocks.n_kv, blocks.tile)
    mask = block_mask(blocks, n_q, n_kv, q.device)
    padded = [pad(q, n_q), pad(k, n_kv), pad(v, n_kv)]
    # the pattern too: its numbers (window, sinks) are constants of the compiled graph
    shape = (n_q, n_kv, q.shape[:2], k.shape[1], q.shape[-1], v.shape[-1], q.dtype, q.device, scale, blocks.mask.__name__)
    start = time.perf_counter()
    options = kernel_options(blocks.tile, q)
    extra = {"kernel_options": options} if options else {}
    out = compiled_flex_attention()(*padded, block_mask=mask, scale=scale, enable_gqa=q.shape[1] != k.shape[1], **extra)
    if shape not in COMPILED:
        COMPILED.add(shape)
        if compiled is not None:
            compiled(time.perf_counter() - start)
    return out[:, :, : blocks.n_q]


def kernel_options(tile: int, q: Tensor) -> dict[str, int]:
    """On CUDA, flex's kernel blocks taken from the tile: its defaults (BLOCK_M 128 for bf16 on
    sm90) must divide the BlockMask's block size, so a 64-token tile would fail there. The CPU
    kernel has no such blocks."""
    if q.device.type != "cuda" or tile >= 128:
        return {}
    return {"BLOCK_M": tile, "BLOCK_N": tile}


def pad(x: Tensor, length: int) -> Tensor:
    """Zero-pad the sequence dimension (-2) to `length`."""
    return torch.nn.functional.pad(x, (0, 0, 0, length - x.shape[-2])) if length > x.shape[-2] else x
