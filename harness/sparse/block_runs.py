"""The torch block path's schedule: a block list cut into query rows of `ROWS`, each with one
contiguous band of keys and a short list of scattered keys, and rows that line up grouped in runs.

A row's band is the last contiguous run of key tiles its query tile visits (for a window pattern:
the window and the diagonal), trimmed to the keys the mask's `spans` allow for those rows, so the
window's trailing edge and the diagonal cost rows x (window + rows) keys, not whole tiles. Its
scattered keys are the other visited tiles' keys inside `spans` (sinks, global tokens, BigBird's
random blocks): the 4 sink keys of a StreamingLLM pattern cost 4 keys, not a tile. Rows whose band
starts `ROWS` keys after the previous row's, with the same width, form a run: a run's queries and
bands are strided views of Q, K and V, so nothing is gathered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from lcbench.sparse.block_list import EMPTY, BlockList, one_thread
from lcbench.sparse.patterns import Spans, intersect, normalise

ROWS = 64  # query rows per band: fewer keys past the diagonal and the window's edge than a 128 tile


@dataclass(frozen=True)
class BlockRun:
    """`count` rows of `rows` queries from query index `q_start`, row i at q_start + i * rows;
    its band is keys band_start + i * rows .. + width - 1. `scattered`: (count, S) key indices
    outside the band, -1 for padding, or (1, S) where every row has the same; None where no row
    has any. `band_mask`, `scattered_mask`: (rows, keys) bool, the element mask every row shares,
    made once for all layers; None where rows differ (evaluated per chunk then)."""

    q_start: int
    rows: int
    count: int
    band_start: int
    width: int
    scattered: Tensor | None = None
    band_mask: Tensor | None = None
    scattered_mask: Tensor | None = None
    biases: dict[tuple[str, torch.dtype, torch.device], Tensor | None] = field(default_factory=dict, compare=False)

    @property
    def keys(self) -> int:
        """Keys each query of the run is scored against: its band and its (padded) scattered keys."""
        return self.width + (0 if self.scattered is None else self.scattered.shape[1])

    def q_index(self, first: int, count: int) -> Tensor:
        """(count, rows, 1) query indices of rows first .. first + count - 1."""
        return self.q_start + first * self.rows + torch.arange(count * self.rows).view(count, self.rows, 1)

    def band_index(self, first: int, count: int) -> Tensor:
        """(count, 1, width) key indices of those rows' bands."""
        start = self.band_start + first * self.rows
        return start + torch.arange(self.width).view(1, 1, -1) + self.rows * torch.arange(count).view(-1, 1, 1)

    def scattered_index(self, first: int, count: int) -> Tensor:
        """(count | 1, 1, S) scattered key indices of those rows, -1 for padding."""
        assert self.scattered is not None
        return (self.scattered if len(self.scattered) == 1 else self.scattered[first : first + count])[:, None, :]


def schedule(blocks: BlockList) -> list[BlockRun]:
    """The torch block path's schedule for `blocks`, built on one thread (many small tensor ops):
    made once per forward call (`interface.Plan.runs`) and shared by every layer."""
    with one_thread():
        return build_runs(blocks)


def build_runs(blocks: BlockList, rows: int = ROWS, budget: int = 1 << 20) -> list[BlockRun]:
    """The runs covering every query of `blocks` once, in query order; masks are evaluated
    `budget` bytes of position arithmetic (8 a pair) at a time."""
    t, rows = blocks.tile, min(rows, blocks.tile)
    visited = visited_tiles(blocks)
    q_pos = blocks.q_positions.tolist()
    cut: list[tuple[int, int, int, int, list[int]]] = []  # (q_start, rows, band start, width, scattered)
    for qt, tiles in enumerate(visited):
        band_lo, band_hi = band_of(tiles)
        for q0 in range(qt * t, min((qt + 1) * t, blocks.n_q), rows):
            q1 = min(q0 + rows, (qt + 1) * t, blocks.n_q)
            spans = key_spans(blocks, q_pos[q0], q_pos[q1 - 1] + 1)
            band = intersect(spans, [(band_lo * t, min(band_hi * t, blocks.n_kv))])
            start, end = (band[0][0], band[-1][1]) if band else (band_lo * t, band_lo * t)
            outside = [(k * t, min((k + 1) * t, blocks.n_kv)) for k in tiles if not band_lo <= k < band_hi]
            scattered = [i for lo, hi in intersect(spans, normalise(outside)) for i in range(lo, hi)]
            cut.append((q0, q1 - q0, start, end - start, scattered))
    return [shared_masks(blocks, run, budget) for run in group(cut)]


def visited_tiles(blocks: BlockList) -> list[list[int]]:
    """Per query tile, the key tiles it visits, ascending."""
    visited: list[list[int]] = [[] for _ in range(-(-blocks.n_q // blocks.tile))]
    for batch in blocks.batches:
        for q_tile, kv_tiles, kinds in zip(batch.q_tiles.tolist(), batch.kv_tiles.tolist(), batch.kinds.tolist()):
            visited[q_tile] = sorted(kv for kv, kind in zip(kv_tiles, kinds) if kind != EMPTY)
    return visited


def band_of(tiles: list[int]) -> tuple[int, int]:
    """The last run of consecutive tiles, as [first, end); (0, 0) where there are none."""
    if not tiles:
        return 0, 0
    first = len(tiles) - 1
    while first and tiles[first - 1] == tiles[first] - 1:
        first -= 1
    return tiles[first], tiles[-1] + 1


def key_spans(blocks: BlockList, q_lo: int, q_hi: int) -> Spans:
    """The mask's key bound for query positions [q_lo, q_hi), as key indices within 0..n_kv."""
    return blocks.key_spans(blocks.mask.spans(q_lo, q_hi))


def group(cut: list[tuple[int, int, int, int, list[int]]]) -> list[BlockRun]:
    """Consecutive rows of the same size and band width, each band `rows` keys after the last, as runs."""
    runs: list[BlockRun] = []
    for q0, size, start, width, _ in cut:
        last = runs[-1] if runs else None
        if (
            last is not None
            and size == last.rows
            and width == last.width
            and q0 == last.q_start + last.count * size
            and start == last.band_start + last.count * size
        ):
            runs[-1] = BlockRun(last.q_start, size, last.count + 1, last.band_start, width)
        else:
            runs.append(BlockRun(q0, size, 1, start, width))
    return attach_scattered(runs, [c[4] for c in cut])


def attach_scattered(runs: list[BlockRun], scattered: list[list[int]]) -> list[BlockRun]:
    """Each run with its rows' scattered keys as one padded (count, S) tensor."""
    out, row = [], 0
    for run in runs:
        lists = scattered[row : row + run.count]
        row += run.count
        width = max(len(s) for s in lists)
        if not width:
            out.append(run)
            continue
        same = all(keys == lists[0] for keys in lists)
        table = torch.full((1 if same else run.count, width), -1, dtype=torch.long)
        for i, keys in enumerate(lists[:1] if same else lists):
            table[i, : len(keys)] = torch.tensor(keys, dtype=torch.long)
        out.append(BlockRun(run.q_start, run.rows, run.count, run.band_start, run.width, table))
    return out


# (query, key) pairs whose mask is evaluated together, about 8 bytes of arithmetic each: the rows
# whose masks differ (a window's first rows) are evaluated inside the attention call, adding to its peak
MASK_SLICE = 1 << 14


def element_mask(blocks: BlockList, q_index: Tensor, kv_index: Tensor) -> Tensor:
    """The mask on query indices (count, rows, 1) x key indices (count | 1, 1, keys), evaluated at
    the keys' positions, -1 keys excluded: (count, rows, keys) bool, made `MASK_SLICE` pairs at a time (a strided row's keys
    reach back to the first)."""
    zero = torch.zeros((), dtype=torch.long)
    count, rows, width = q_index.shape[0], q_index.shape[1], kv_index.shape[-1]
    q_pos = blocks.q_positions[q_index]
    allowed = torch.empty(count, rows, width, dtype=torch.bool)
    step = max(1, MASK_SLICE // (count * rows))
    for lo in range(0, width, step):
        keys = kv_index[..., lo : lo + step]
        allowed[..., lo : lo + step] = blocks.mask(zero, zero, q_pos, blocks.key_positions(keys)) & (keys >= 0)
    return allowed


def shared_masks(blocks: BlockList, run: BlockRun, budget: int) -> BlockRun:
    """`run` with the band and scattered masks its rows all share, found `budget` mask bytes at a time."""
    masks: dict[str, Tensor | None] = {"band": None, "scattered": None}
    if run.count == 1:
        return run  # a lone row's mask is its own: kept, it would only hold memory across layers
    if run.width and bands_shift_alike(blocks, run):  # one row's mask is every row's: no need to look at all
        masks["band"] = element_mask(blocks, run.q_index(0, 1), run.band_index(0, 1))[0]
    for part, width in (("band", run.width), ("scattered", 0 if run.scattered is None else run.scattered.shape[1])):
        if masks[part] is not None:
            continue
        first_mask: Tensor | None = None
        step = max(1, budget // (8 * run.rows * max(1, width)))
        for first in range(0, run.count if width else 0, step):
            count = min(step, run.count - first)
            index = run.band_index(first, count) if part == "band" else run.scattered_index(first, count)
            allowed = element_mask(blocks, run.q_index(first, count), index)
            first_mask = allowed[0] if first_mask is None else first_mask
            if not bool((allowed == first_mask).all()):
                first_mask = None
                break
        masks[part] = first_mask
    return BlockRun(run.q_start, run.rows, run.count, run.band_start, run.width, run.scattered, masks["band"], masks["scattered"])


def bands_shift_alike(blocks: BlockList, run: BlockRun) -> bool:
    """Whether every row of `run` has its first row's band mask without evaluating them: each row's
    queries and band keys are the first row's shifted by the same number of positions (both lie in
    one run of consecutive positions), and the mask is a function of q - kv alone over them
    (`Mask.shift_free`: a window and causal pattern's band, away from the sinks)."""
    q_last = run.q_start + run.count * run.rows - 1
    kv_last = run.band_start + (run.count - 1) * run.rows + run.width - 1
    q_lo, q_hi = int(blocks.q_positions[run.q_start]), int(blocks.q_positions[q_last])
    kv_lo, kv_hi = blocks.position(run.band_start), blocks.position(kv_last)
    consecutive = q_hi - q_lo == q_last - run.q_start and kv_hi - kv_lo == kv_last - run.band_start
    return consecutive and blocks.mask.shift_free((q_lo, q_hi + 1, kv_lo, kv_hi + 1))
