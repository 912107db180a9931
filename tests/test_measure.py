"""The memory meter against known allocations; NVML through a fake at its module boundary."""

from __future__ import annotations

import types

import numpy as np
import pytest

from lcbench.prompt import Prompter
from lcbench.run.measure import MeasureMemory, MemoryPeak, Sampler


@pytest.mark.parametrize("megabytes", [64, 256])
def test_peak_rss_within_ten_percent_of_a_known_allocation(megabytes):
    size = megabytes << 20
    big = np.ones(1 << 20, dtype=np.uint8)  # raise the high-water mark before the span
    del big
    with MeasureMemory("cpu", count_tensors=False) as meter:
        block = np.ones(size, dtype=np.uint8)  # ones: every page is touched
        del block
    peak = meter.result
    assert peak.source == "rss" and peak.rss_bytes is not None
    assert abs(peak.rss_bytes - size) <= 0.1 * size, (peak.rss_bytes, size)
    assert peak.gpu_process_bytes is None and peak.torch_allocated_bytes is None  # absent, not zero


def test_live_tensor_bytes_are_counted_exactly_and_alike_on_every_run():
    import torch

    before = torch.ones(16 << 20, dtype=torch.uint8)  # alive before the span: neither it nor its free is counted
    peaks = []
    for _ in range(3):
        with MeasureMemory("cpu") as meter:
            a = torch.ones(8 << 20, dtype=torch.uint8)
            b = torch.ones(4 << 20, dtype=torch.uint8)
            del a
            c = torch.ones(2 << 20, dtype=torch.uint8)
            del b, c
            np.ones(64 << 20, dtype=np.uint8)  # not a tensor: RSS sees it, the tensor count does not
        peaks.append(meter.result)
    del before
    assert [p.tensor_bytes for p in peaks] == [12 << 20] * 3 and all(p.peak_bytes == 12 << 20 for p in peaks)
    assert all(p.source == "tensor_bytes" and p.rss_bytes is not None and p.rss_bytes > 32 << 20 for p in peaks)


def test_counting_is_off_where_a_profiler_already_runs():
    import torch

    with torch.profiler.profile():
        with MeasureMemory("cpu") as meter:
            torch.ones(1 << 20)
    assert meter.result.tensor_bytes is None and meter.result.source == "rss"


def test_each_span_is_reset():
    with MeasureMemory("cpu", count_tensors=False) as first:
        block = np.ones(128 << 20, dtype=np.uint8)
        del block
    with MeasureMemory("cpu", count_tensors=False) as second:
        pass
    assert first.result.rss_bytes > 100 << 20
    assert second.result.rss_bytes < 16 << 20


def test_headline_is_the_allocators_peak_on_a_gpu_else_rss():
    assert MemoryPeak(rss_bytes=5).peak_bytes == 5
    assert MemoryPeak(rss_bytes=5, torch_reserved_bytes=7).peak_bytes == 5  # the pool's growth is not the headline
    assert MemoryPeak(rss_bytes=5, torch_allocated_bytes=7, torch_reserved_bytes=8, gpu_process_bytes=9).peak_bytes == 7
    assert MemoryPeak().peak_bytes is None


def fake_nvml(pid: int, used: list[int]) -> types.SimpleNamespace:
    """NVML's module surface, returning scripted memory readings."""
    readings = iter(used)
    last = [0]

    def processes(handle):
        last[0] = next(readings, last[0])
        return [types.SimpleNamespace(pid=pid + 1, usedGpuMemory=10**9), types.SimpleNamespace(pid=pid, usedGpuMemory=last[0])]

    return types.SimpleNamespace(
        nvmlDeviceGetComputeRunningProcesses=processes,
        nvmlDeviceGetMemoryInfo=lambda handle: types.SimpleNamespace(used=last[0] + 10**9),
    )


def test_nvml_readers_pick_this_process_and_sample_the_peak():
    import os

    meter = MeasureMemory("cpu", nvml=fake_nvml(os.getpid(), [100, 700, 300]))
    process = meter._process_reader(handle=None)
    sampler = Sampler(process)  # first reading: 100
    assert sampler.peak == 100
    sampler.peak = max(sampler.peak, process())  # 700
    sampler.peak = max(sampler.peak, process())  # 300
    assert sampler.peak == 700
    assert meter._device_reader(None)() == 300 + 10**9


def test_sampler_thread_keeps_the_maximum():
    values = iter([1, 5, 3] + [2] * 10_000)
    sampler = Sampler(lambda: next(values)).start()
    import time

    time.sleep(0.05)
    assert sampler.stop() == 5


def test_a_measured_cell_reports_the_bytes_a_strategy_allocated(llama):
    """Through the runner's own path: a strategy that holds 96 MiB while it answers."""
    from dataclasses import dataclass

    import torch

    from lcbench.run.runner import measure_example
    from lcbench.strategies.base import Prediction, Strategy, Usage
    from lcbench.tasks.needle import Needle

    size = 96 << 20

    @dataclass
    class Hungry(Strategy):
        def run(self, model, example):
            block = torch.ones(size, dtype=torch.uint8)
            return Prediction(str(int(block[-1])), Usage(calls=1, prefill_tokens=1, decode_tokens=1, prefill_s=1e-3))

    task = Needle()
    example = task.examples(Prompter(llama.tokenizer), 64, 1, seed=0)[0]
    base = dict(suite="s", task="needle", strategy="hungry", strategy_name="hungry", params={}, context_length=64, cell_key="k")
    record = measure_example(base, Hungry(), task, llama, example, repeats=1)
    assert record.status == "ok" and record.memory["source"] == "tensor_bytes"
    assert size <= record.peak_mem_bytes <= size + (1 << 20), (record.peak_mem_bytes, size)  # the block, and a little more


def test_appending_after_a_torn_last_line_keeps_the_file_readable(tmp_path):
    from lcbench.run.records import Record, RecordWriter, read_records

    path = tmp_path / "records.jsonl"
    first = Record(
        suite="s", task="t", strategy="x", strategy_name="x", params={}, context_length=1, example_id="a", cell_key="k"
    )
    with RecordWriter(path) as writer:
        writer.write([first])
    with open(path, "a") as f:
        f.write('{"suite": "s", "task": "t", "strat')  # a writer killed mid-line
    with RecordWriter(path) as writer:
        writer.write([Record(**{**first.__dict__, "example_id": "b"})])
    assert [r.example_id for r in read_records(path)] == ["a", "b"]


class CachingAllocator:
    """`torch.cuda`'s memory calls over a pool that behaves like the caching allocator: freed
    blocks stay reserved until `empty_cache`; NVML sees the context plus what is reserved."""

    CONTEXT = 500 << 20

    def __init__(self) -> None:
        self.allocated = self.reserved = self.peak_allocated = self.peak_reserved = 0

    def alloc(self, n: int) -> None:
        self.allocated += n
        self.reserved = max(self.reserved, self.allocated)
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        self.peak_reserved = max(self.peak_reserved, self.reserved)

    def free(self, n: int) -> None:
        self.allocated -= n

    def install(self, monkeypatch) -> None:
        import torch

        def reset(device=None):
            self.peak_allocated, self.peak_reserved = self.allocated, self.reserved

        calls = {
            "synchronize": lambda device=None: None,
            "empty_cache": lambda: setattr(self, "reserved", self.allocated),
            "reset_peak_memory_stats": reset,
            "memory_allocated": lambda device=None: self.allocated,
            "memory_reserved": lambda device=None: self.reserved,
            "max_memory_allocated": lambda device=None: self.peak_allocated,
            "max_memory_reserved": lambda device=None: self.peak_reserved,
            "current_device": lambda: 0,
            "get_device_properties": lambda index: types.SimpleNamespace(uuid=f"uuid-of-cuda-{index}"),
        }
        for name, fn in calls.items():
            monkeypatch.setattr(torch.cuda, name, fn)


def nvml_over(pool: CachingAllocator, pid: int, visible: str = "GPU-uuid-of-cuda-0", listed: bool = True, raises: bool = False):
    """NVML with two GPUs, ours the one whose UUID is `visible`; the other always reads 80 GB used."""

    def handle_by_uuid(uuid):
        if uuid not in (visible, "GPU-another"):
            raise LookupError(uuid)
        return uuid

    def processes(handle):
        if raises:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED (MIG)")
        if handle != visible:
            return [types.SimpleNamespace(pid=pid, usedGpuMemory=80 << 30)]
        mine = [types.SimpleNamespace(pid=pid, usedGpuMemory=pool.CONTEXT + pool.reserved)] if listed else []
        return [types.SimpleNamespace(pid=pid + 1, usedGpuMemory=10**9), *mine]

    def memory_info(handle):
        if raises:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED (MIG)")
        return types.SimpleNamespace(used=(80 << 30) if handle != visible else 10**9 + pool.CONTEXT + pool.reserved)

    return types.SimpleNamespace(
        nvmlDeviceGetHandleByUUID=handle_by_uuid,
        nvmlDeviceGetComputeRunningProcesses=processes,
        nvmlDeviceGetMemoryInfo=memory_info,
    )


def measured(pool: CachingAllocator, nvml, size: int, device: str = "cuda:0") -> MemoryPeak:
    with MeasureMemory(device, nvml=nvml) as meter:
        pool.alloc(size)
        pool.free(size)
    return meter.result


def test_every_example_of_a_chain_reads_its_own_gpu_peak(monkeypatch):
    """The second example reuses the pool the first grew: without emptying the cache between
    spans, NVML's and the reserved rise would read 0 there."""
    import os

    pool = CachingAllocator()
    pool.install(monkeypatch)
    nvml = nvml_over(pool, os.getpid())
    size = 96 << 20
    pool.alloc(size)  # a warm-up outside any span grows the pool
    pool.free(size)
    for _ in range(3):
        peak = measured(pool, nvml, size)
        assert peak.source == "torch_allocated" and peak.peak_bytes == size
        assert peak.torch_reserved_bytes == size and peak.gpu_process_bytes == size and peak.gpu_device_bytes == size


def test_nvml_that_does_not_list_this_process_or_raises_is_absent_not_zero(monkeypatch):
    import os

    pool = CachingAllocator()
    pool.install(monkeypatch)
    unlisted = measured(pool, nvml_over(pool, os.getpid(), listed=False), 1 << 20)
    assert unlisted.gpu_process_bytes is None and unlisted.gpu_device_bytes == 1 << 20 and unlisted.peak_bytes == 1 << 20
    raising = measured(pool, nvml_over(pool, os.getpid(), raises=True), 1 << 20)
    assert raising.gpu_process_bytes is None and raising.gpu_device_bytes is None and raising.peak_bytes == 1 << 20


def test_nvml_reads_the_gpu_torch_uses_found_by_uuid(monkeypatch):
    """Under CUDA_VISIBLE_DEVICES torch's cuda:0 is not NVML's device 0: the UUID decides, and a
    UUID NVML does not know gives no NVML figure rather than another GPU's."""
    import os

    pool = CachingAllocator()
    pool.install(monkeypatch)
    ours = measured(pool, nvml_over(pool, os.getpid()), 2 << 20)
    assert ours.gpu_process_bytes == 2 << 20
    unknown = measured(pool, nvml_over(pool, os.getpid(), visible="GPU-not-this-one"), 2 << 20)
    assert unknown.gpu_process_bytes is None and unknown.gpu_device_bytes is None and unknown.peak_bytes == 2 << 20
