"""The block list a mask compiles to: for each query tile, which key tiles to visit and whether
each needs an element mask. Built once per forward call, shared by every layer.

Only tiles inside the mask's `spans` are examined, so building costs time and memory linear in
the number of allowed tiles, never N x N (unlike evaluating the mask on every pair). Query tiles
are batched by how many key tiles they visit: the many ordinary ones together, the few that see
far more (a global query row, a BigBird global block) apart, so that padding never turns the
work quadratic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lcbench.sparse.patterns import Mask

EMPTY, PARTIAL, FULL = 0, 1, 2
CACHED_MASK_BYTES = 64 << 20  # element masks kept across layers up to this size, else recomputed


@dataclass(frozen=True)
class TileBatch:
    """Query tiles that share a padded list of key tiles.

    q_tiles: (nq,) query tile indices; kv_tiles: (nq, C) key tile indices, padding repeats tile 0;
    kinds: (nq, C) EMPTY (padding) / PARTIAL / FULL; masks: one (nq, T, T) bool tensor per slot
    where some tile is not FULL, or None where they must be recomputed (too big to keep)."""

    q_tiles: Tensor
    kv_tiles: Tensor
    kinds: Tensor
    masks: list[Tensor | None] | None


@dataclass(frozen=True)
class BlockList:
    mask: Mask
    tile: int
    q_positions: Tensor  # (n_q,) absolute positions of the queries
    kv_start: int  # keys are the contiguous positions kv_start .. kv_start + n_kv - 1
    n_kv: int
    batches: tuple[TileBatch, ...]

    @property
    def n_q(self) -> int:
        return len(self.q_positions)

    def tiles_visited(self) -> int:
        return sum(int((b.kinds != EMPTY).sum()) for b in self.batches)

    def slot_mask(self, batch: TileBatch, slot: int) -> Tensor | None:
        """(nq, T, T) element mask for one slot of a batch, or None where every tile is FULL."""
        if bool((batch.kinds[:, slot] == FULL).all()):
            return None
        if batch.masks is not None and batch.masks[slot] is not None:
            return batch.masks[slot]
        return self.evaluate(batch.q_tiles, batch.kv_tiles[:, slot], batch.kinds[:, slot])

    def evaluate(self, q_tiles: Tensor, kv_tiles: Tensor, kinds: Tensor | None = None) -> Tensor:
        """The mask on whole tiles: (nq, T, T) bool, False outside the sequence and on EMPTY slots."""
        t = self.tile
        q_index = q_tiles[:, None] * t + torch.arange(t)  # (nq, T)
        kv_index = kv_tiles[:, None] * t + torch.arange(t)
        q_pos = self.q_positions[q_index.clamp(max=self.n_q - 1)]
        kv_pos = kv_index + self.kv_start
        zero = torch.zeros((), dtype=torch.long)
        allowed = self.mask(zero, zero, q_pos[:, :, None], kv_pos[:, None, :])
        allowed = allowed & (q_index < self.n_q)[:, :, None] & (kv_index < self.n_kv)[:, None, :]
        if kinds is not None:
            allowed = allowed & (kinds != EMPTY)[:, None, None]
        return allowed


def build_block_list(mask: Mask, q_positions: Tensor, kv_start: int, n_kv: int, tile: int) -> BlockList:
    """Compile `mask` for queries at `q_positions` (ascending) over keys kv_start .. kv_start+n_kv-1."""
    n_q = len(q_positions)
    n_q_tiles, n_kv_tiles = -(-n_q // tile), -(-n_kv // tile)
    candidates: list[list[int]] = []
    for qt in range(n_q_tiles):
        lo, hi = int(q_positions[qt * tile]), int(q_positions[min((qt + 1) * tile, n_q) - 1]) + 1
        tiles: set[int] = set()
        for start, end in mask.spans(lo, hi):
            first, end_index = max(start - kv_start, 0), min(end - kv_start, n_kv)
            if end_index > first:
                tiles.update(range(first // tile, (end_index - 1) // tile + 1))
        candidates.append(sorted(t for t in tiles if t < n_kv_tiles))
    probe = BlockList(mask, tile, q_positions, kv_start, n_kv, ())
    kinds_per_tile = classify(probe, candidates)
    visited = [[t for t, k in zip(c, kinds) if k != EMPTY] for c, kinds in zip(candidates, kinds_per_tile)]
    full = [[k == FULL for k in kinds if k != EMPTY] for kinds in kinds_per_tile]
    batches = tuple(pack(probe, rows, visited, full) for rows in split_by_width(visited) if rows)
    return BlockList(mask, tile, q_positions, kv_start, n_kv, batches)


def classify(probe: BlockList, candidates: list[list[int]]) -> list[list[int]]:
    """EMPTY / PARTIAL / FULL for every candidate tile, evaluated a slot at a time."""
    width = max((len(c) for c in candidates), default=0)
    kinds = [[EMPTY] * len(c) for c in candidates]
    t = probe.tile
    for slot in range(width):
        rows = [i for i, c in enumerate(candidates) if slot < len(c)]
        q_tiles = torch.tensor(rows)
        kv_tiles = torch.tensor([candidates[i][slot] for i in rows])
        allowed = probe.evaluate(q_tiles, kv_tiles).view(len(rows), -1).sum(-1)
        q_real = (torch.minimum((q_tiles + 1) * t, torch.tensor(probe.n_q)) - q_tiles * t).clamp(min=0)
        kv_real = (torch.minimum((kv_tiles + 1) * t, torch.tensor(probe.n_kv)) - kv_tiles * t).clamp(min=0)
        for i, count, real in zip(rows, allowed.tolist(), (q_real * kv_real).tolist()):
            kinds[i][slot] = EMPTY if count == 0 else FULL if count == real and real == t * t else PARTIAL
    return kinds


def split_by_width(visited: list[list[int]]) -> list[list[int]]:
    """Query tiles in two groups: ordinary widths, and the few much wider ones."""
    widths = sorted(len(v) for v in visited)
    if not widths:
        return []
    limit = max(4, 2 * widths[len(widths) // 2])
    return [[i for i, v in enumerate(visited) if len(v) <= limit], [i for i, v in enumerate(visited) if len(v) > limit]]


def pack(probe: BlockList, rows: list[int], visited: list[list[int]], full: list[list[bool]]) -> TileBatch:
    width = max(1, max(len(visited[i]) for i in rows))
    kv_tiles = torch.zeros((len(rows), width), dtype=torch.long)
    kinds = torch.full((len(rows), width), EMPTY, dtype=torch.int8)
    for r, i in enumerate(rows):
        kv_tiles[r, : len(visited[i])] = torch.tensor(visited[i], dtype=torch.long)
        kinds[r, : len(visited[i])] = torch.tensor([FULL if f else PARTIAL for f in full[i]], dtype=torch.int8)
    q_tiles = torch.tensor(rows, dtype=torch.long)
    batch = TileBatch(q_tiles, kv_tiles, kinds, None)
    if len(rows) * width * probe.tile**2 > CACHED_MASK_BYTES:
        return batch
    masks = [probe.slot_mask(batch, slot) for slot in range(width)]
    return TileBatch(q_tiles, kv_tiles, kinds, masks)
