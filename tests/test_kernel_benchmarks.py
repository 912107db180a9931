"""pytest-benchmark cases for the Triton kernels, on a GPU only: compare runs with
`pytest tests/test_kernel_benchmarks.py --benchmark-enable --benchmark-autosave` and then
`--benchmark-compare --benchmark-compare-fail=mean:10%`."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="the kernel benchmarks time CUDA kernels; there is no GPU here"
)


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, 32, 16384, 128, device="cuda", dtype=torch.bfloat16, generator=g)
    k = torch.randn(1, 8, 16384, 128, device="cuda", dtype=torch.bfloat16, generator=g)
    return q, k, torch.randn_like(k)


def synchronized(fn):
    def run():
        fn()
        torch.cuda.synchronize()

    return run


@pytest.mark.parametrize("pattern", ["causal", "sink_window"])
def test_prefill_kernel(benchmark, inputs, pattern):
    from lcbench.kernels.block_sparse_attention import block_sparse_attention
    from lcbench.sparse.block_list import build_block_list
    from lcbench.strategies.triton_fused import TritonFused

    q, k, v = inputs
    n = q.shape[2]
    call = TritonFused(pattern=pattern, window=1024, tile=128).call(n, 0, None)
    blocks = build_block_list(call.mask, torch.arange(n), 0, n, 128)
    benchmark(synchronized(lambda: block_sparse_attention(q, k, v, blocks, call.element_mask)))


def test_decode_kernel(benchmark, inputs):
    from lcbench.kernels.decode_attention import decode_attention

    q, k, v = inputs
    benchmark(synchronized(lambda: decode_attention(q[:, :, :1], k, v)))
