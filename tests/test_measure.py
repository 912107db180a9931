"""The memory meter against known allocations; NVML through a fake at its module boundary."""

from __future__ import annotations

import types

import numpy as np
import pytest

from lcbench.run.measure import MeasureMemory, MemoryPeak, Sampler


@pytest.mark.parametrize("megabytes", [64, 256])
def test_peak_rss_within_ten_percent_of_a_known_allocation(megabytes):
    size = megabytes << 20
    big = np.ones(1 << 20, dtype=np.uint8)  # raise the high-water mark before the span
    del big
    with MeasureMemory("cpu") as meter:
        block = np.ones(size, dtype=np.uint8)  # ones: every page is touched
        del block
    peak = meter.result
    assert peak.source == "rss" and peak.rss_bytes is not None
    assert abs(peak.rss_bytes - size) <= 0.1 * size, (peak.rss_bytes, size)
    assert peak.gpu_process_bytes is None and peak.torch_allocated_bytes is None  # absent, not zero


def test_each_span_is_reset():
    with MeasureMemory("cpu") as first:
        block = np.ones(128 << 20, dtype=np.uint8)
        del block
    with MeasureMemory("cpu") as second:
        pass
    assert first.result.rss_bytes > 100 << 20
    assert second.result.rss_bytes < 16 << 20


def test_headline_prefers_the_device_figure():
    assert MemoryPeak(rss_bytes=5).peak_bytes == 5
    assert MemoryPeak(rss_bytes=5, torch_reserved_bytes=7).peak_bytes == 7
    assert MemoryPeak(rss_bytes=5, torch_reserved_bytes=7, gpu_process_bytes=9).peak_bytes == 9
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

    from lcbench.run.runner import measure_example
    from lcbench.strategies.base import Prediction, Strategy, Usage
    from lcbench.tasks.needle import Needle

    size = 96 << 20

    @dataclass
    class Hungry(Strategy):
        def run(self, model, example):
            block = np.ones(size, dtype=np.uint8)
            return Prediction(str(int(block[-1])), Usage(calls=1, prefill_tokens=1, decode_tokens=1, prefill_s=1e-3))

    task = Needle()
    example = task.examples(llama, 64, 1, seed=0)[0]
    base = dict(suite="s", task="needle", strategy="hungry", strategy_name="hungry", params={}, context_length=64, cell_key="k")
    record = measure_example(base, Hungry(), task, llama, example, repeats=1)
    assert record.status == "ok" and record.memory["source"] == "rss"
    assert abs(record.peak_mem_bytes - size) <= 0.1 * size, (record.peak_mem_bytes, size)


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
