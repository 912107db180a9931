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

from lcbench.sparse.patterns import ALL, NONE, Mask

EMPTY, PARTIAL, FULL = 0, 1, 2
CACHED_MASK_BYTES = 64 << 20  # element masks kept across layers up to this size, else recomputed


@dataclass(frozen=True)
class TileBatch:
    """Query tiles that share a padded list of key tiles.

    q_tiles: (nq,) query tile indices; kv_tiles: (nq, C) key tile indices, padding repeats tile 0;
    kinds: (nq, C) EMPTY (padding) / PARTIAL / FULL; masks: the (nq, T, C * T) element mask,
    None where every tile is FULL, or not kept (`kept_masks` False) where too big to keep."""

    q_tiles: Tensor
    kv_tiles: Tensor
    kinds: Tensor
    masks: Tensor | None = None
    kept_masks: bool = False

    @property
    def all_full(self) -> bool:
        return bool((self.kinds == FULL).all())


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

    def rows_mask(self, batch: TileBatch, rows: slice) -> Tensor | None:
        """(n, T, C * T) element mask for some rows of a batch, or None where they are all FULL."""
        if batch.all_full:
            return None
        if batch.kept_masks:
            return None if batch.masks is None else batch.masks[rows]
        q_tiles, kv_tiles, kinds = batch.q_tiles[rows], batch.kv_tiles[rows], batch.kinds[rows]
        n, width = kv_tiles.shape
        allowed = self.evaluate(q_tiles.repeat_interleave(width), kv_tiles.reshape(-1), kinds.reshape(-1))
        return allowed.view(n, width, self.tile, self.tile).transpose(1, 2).reshape(n, self.tile, width * self.tile)

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
    visited, partial = classify(probe, candidates)
    batches = tuple(pack(probe, rows, visited, partial) for rows in split_by_width(visited) if rows)
    return BlockList(mask, tile, q_positions, kv_start, n_kv, batches)


Tile = tuple[int, int]  # (query tile, key tile)


def classify(probe: BlockList, candidates: list[list[int]]) -> tuple[list[list[int]], dict[Tile, Tensor | None]]:
    """The key tiles each query tile must visit (candidates with anything allowed), and the
    element masks of those only partly allowed; tiles absent from that dict are FULL.

    Tiles the mask settles by itself (wholly inside or outside a window, say) cost nothing; the
    rest are evaluated once, a slot at a time (every query tile's `slot`-th candidate together),
    so a causal or window pattern evaluates only its diagonal and edges."""
    t = probe.tile
    visited: list[list[int]] = [[] for _ in candidates]
    partial: dict[Tile, Tensor | None] = {}  # None: partly allowed, its mask recomputed when needed
    q_pos = probe.q_positions.tolist()
    for slot in range(max((len(c) for c in candidates), default=0)):
        unknown: list[int] = []
        for i, tiles in enumerate(candidates):
            if slot >= len(tiles):
                continue
            kv = tiles[slot]
            q_lo, q_hi = q_pos[i * t], q_pos[min((i + 1) * t, probe.n_q) - 1] + 1
            whole = (i + 1) * t <= probe.n_q and (kv + 1) * t <= probe.n_kv
            box = (q_lo, q_hi, probe.kv_start + kv * t, probe.kv_start + min((kv + 1) * t, probe.n_kv))
            settled = probe.mask.settles(box)
            if settled is ALL and whole:
                visited[i].append(kv)
            elif settled is not NONE:
                unknown.append(i)
        if not unknown:
            continue
        q_tiles, kv_tiles = torch.tensor(unknown), torch.tensor([candidates[i][slot] for i in unknown])
        allowed = probe.evaluate(q_tiles, kv_tiles)
        counts = allowed.view(len(unknown), -1).sum(-1).tolist()
        for r, i in enumerate(unknown):
            kv = candidates[i][slot]
            if counts[r]:
                visited[i].append(kv)
                whole = (i + 1) * t <= probe.n_q and (kv + 1) * t <= probe.n_kv
                if not (whole and counts[r] == t * t):
                    # kept only while small: a view would hold its whole slot alive (strided: N^2/2 bytes)
                    keep = (len(partial) + 1) * t * t <= CACHED_MASK_BYTES
                    partial[(i, kv)] = allowed[r].clone() if keep else None
    return visited, partial


def split_by_width(visited: list[list[int]]) -> list[list[int]]:
    """Query tiles in two groups: ordinary widths, and the few much wider ones."""
    widths = sorted(len(v) for v in visited)
    if not widths:
        return []
    limit = max(4, 2 * widths[len(widths) // 2])
    return [[i for i, v in enumerate(visited) if len(v) <= limit], [i for i, v in enumerate(visited) if len(v) > limit]]


def pack(probe: BlockList, rows: list[int], visited: list[list[int]], partial: dict[Tile, Tensor | None]) -> TileBatch:
    t = probe.tile
    width = max(1, max(len(visited[i]) for i in rows))
    kv_tiles = torch.zeros((len(rows), width), dtype=torch.long)
    kinds = torch.full((len(rows), width), EMPTY, dtype=torch.int8)
    for r, i in enumerate(rows):
        kv_tiles[r, : len(visited[i])] = torch.tensor(visited[i], dtype=torch.long)
        kinds[r, : len(visited[i])] = torch.tensor(
            [PARTIAL if (i, kv) in partial else FULL for kv in visited[i]], dtype=torch.int8
        )
    batch = TileBatch(torch.tensor(rows, dtype=torch.long), kv_tiles, kinds)
    unkept = any(partial.get((i, kv), 0) is None for i in rows for kv in visited[i])
    if batch.all_full or unkept or len(rows) * width * t * t > CACHED_MASK_BYTES:
        return batch
    masks = (kinds == FULL)[:, None, :, None].expand(len(rows), t, width, t).clone()  # padding slots: False
    for r, i in enumerate(rows):
        for slot, kv in enumerate(visited[i]):
            tile_mask = partial.get((i, kv))
            if tile_mask is not None:
                masks[r, :, slot] = tile_mask
    return TileBatch(batch.q_tiles, kv_tiles, kinds, masks.view(len(rows), t, width * t), kept_masks=True)
