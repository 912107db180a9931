"""Peak memory over a measured span: peak RSS on CPU; NVML (per process and device) plus torch's
allocator peaks on GPU. Every figure is reset at the start of the span and reported as the rise
above the level before it, so that the model's own weights are not counted as the strategy's.

Where a source is absent its figure is `None`, never a zero that looks measured.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import psutil

SAMPLE_EVERY_S = 0.005


def _status_bytes(field_name: str) -> int | None:
    try:
        text = open("/proc/self/status").read()
    except OSError:
        return None
    match = re.search(rf"{field_name}:\s+(\d+) kB", text)
    return int(match.group(1)) * 1024 if match else None


def release_free_memory() -> None:
    """Hand memory that malloc holds but nothing uses back to the OS (glibc's `malloc_trim`).

    Without it, buffers freed by an earlier example stay resident and the next one reuses them
    without raising RSS, so its peak would read low."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: peaks may read low after large frees
        pass


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process's RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Sampler:
    """Calls `read()` every few milliseconds on a thread and keeps the largest value."""

    def __init__(self, read: Any) -> None:
        self.read = read
        self.peak = read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self.peak = max(self.peak, self.read())

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.read())
        return int(self.peak)


def load_nvml() -> Any | None:
    """The `pynvml` module, initialised, or None where NVML (the driver) is absent."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:
        return None


@dataclass
class MemoryPeak:
    """Rise of each memory figure over the span, in bytes (None where not measured)."""

    rss_bytes: int | None = None
    gpu_process_bytes: int | None = None  # NVML, this process on the device
    gpu_device_bytes: int | None = None  # NVML, whole device: includes other processes
    torch_allocated_bytes: int | None = None
    torch_reserved_bytes: int | None = None
    source: str = "none"
    baseline: dict[str, int] = field(default_factory=dict)

    @property
    def peak_bytes(self) -> int | None:
        """The headline figure: the device's memory where the work ran, else the process RSS."""
        for value in (self.gpu_process_bytes, self.torch_reserved_bytes, self.rss_bytes):
            if value is not None:
                return value
        return None


class MeasureMemory:
    """Context manager: `with MeasureMemory(device) as m: ...; m.result`."""

    def __init__(self, device: str = "cpu", nvml: Any | None = None) -> None:
        self.device = device
        self.on_gpu = device.startswith("cuda")
        self.nvml = nvml if nvml is not None else (load_nvml() if self.on_gpu else None)
        self.result = MemoryPeak()
        self._samplers: dict[str, Sampler] = {}
        self._baseline: dict[str, int] = {}

    def __enter__(self) -> MeasureMemory:
        release_free_memory()
        rss = psutil.Process().memory_info().rss
        self._baseline["rss"] = rss
        if not reset_peak_rss():  # no clear_refs here: sample instead
            self._samplers["rss"] = Sampler(lambda: psutil.Process().memory_info().rss).start()
        if self.on_gpu:
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline["torch_allocated"] = torch.cuda.memory_allocated(self.device)
            self._baseline["torch_reserved"] = torch.cuda.memory_reserved(self.device)
            if self.nvml is not None:
                handle = self.nvml.nvmlDeviceGetHandleByIndex(torch.device(self.device).index or 0)
                for name, read in (("gpu_process", self._process_reader(handle)), ("gpu_device", self._device_reader(handle))):
                    self._baseline[name] = read()
                    self._samplers[name] = Sampler(read).start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        peaks = {name: sampler.stop() for name, sampler in self._samplers.items()}
        rss_peak = peaks.get("rss", _status_bytes("VmHWM"))
        result = MemoryPeak(baseline=dict(self._baseline), source="rss")
        if rss_peak is not None:
            result.rss_bytes = max(0, rss_peak - self._baseline["rss"])
        if self.on_gpu:
            import torch

            torch.cuda.synchronize(self.device)
            result.torch_allocated_bytes = torch.cuda.max_memory_allocated(self.device) - self._baseline["torch_allocated"]
            result.torch_reserved_bytes = torch.cuda.max_memory_reserved(self.device) - self._baseline["torch_reserved"]
            result.source = "torch"
            if "gpu_process" in peaks:
                result.gpu_process_bytes = max(0, peaks["gpu_process"] - self._baseline["gpu_process"])
                result.gpu_device_bytes = max(0, peaks["gpu_device"] - self._baseline["gpu_device"])
                result.source = "nvml"
        self.result = result

    def _process_reader(self, handle: Any) -> Any:
        nvml: Any = self.nvml
        pid = os.getpid()

        def read() -> int:
            for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid == pid and proc.usedGpuMemory is not None:
                    return int(proc.usedGpuMemory)
            return 0

        return read

    def _device_reader(self, handle: Any) -> Any:
        nvml: Any = self.nvml
        return lambda: int(nvml.nvmlDeviceGetMemoryInfo(handle).used)
