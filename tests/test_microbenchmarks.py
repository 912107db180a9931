"""pytest-benchmark cases for lcbench's own hot paths besides DP chunking (test_dp_chunked.py):
building a block list, and the torch block-sparse attention path. They run once as plain tests
(benchmarks are disabled by default); to time and compare runs locally:

    pytest tests/test_microbenchmarks.py tests/test_dp_chunked.py --benchmark-enable --benchmark-autosave
    pytest tests/test_microbenchmarks.py tests/test_dp_chunked.py --benchmark-enable \
        --benchmark-compare --benchmark-compare-fail=mean:20%
"""

from __future__ import annotations

import pytest
import torch

from lcbench.sparse.block_attention import block_sparse_attention
from lcbench.sparse.block_list import build_block_list
from lcbench.strategies.sparse import Sparse

N = 8192


@pytest.mark.parametrize("pattern", ["sink_window", "bigbird", "longformer"])
def test_block_list_building(benchmark, pattern):
    mask = Sparse(pattern=pattern, window=512).mask(N, 8)
    blocks = benchmark(build_block_list, mask, torch.arange(N), 0, N, 128)
    assert blocks.tiles_visited() < (N // 128) ** 2 // 2  # sparse: well under the causal half


def test_block_sparse_attention_path(benchmark):
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(1, 8, N, 64, generator=g), torch.randn(1, 2, N, 64, generator=g), torch.randn(1, 2, N, 64, generator=g)
    blocks = build_block_list(Sparse(pattern="sink_window", window=512).mask(N, 0), torch.arange(N), 0, N, 128)
    out = benchmark(block_sparse_attention, q, k, v, blocks)
    assert out.shape == q.shape and torch.isfinite(out).all()
