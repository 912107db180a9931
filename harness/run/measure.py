"""Peak memory over a measured span: the peak of live tensor bytes on CPU, counted from the
allocator's own reports, with peak RSS beside it; NVML (per process and device) plus torch's
allocator peaks on GPU. Every figure is reset at the start of the span and reported as the rise
above the level before it, so that the model's own weights are not counted as the strategy's.

The headline on a CPU is the peak of the bytes of tensors allocated inside the span and still
alive: every allocation and free the CPU allocator makes is reported to torch's profiler (op
events off, memory events only), so the same work gives the same bytes on every run, where peak
RSS moves by tens of MB with what malloc kept from earlier work. Counting costs each allocation a
little time, so it runs in a pass of its own (`counting_slows`: the runner times other passes).

The headline on a GPU is the caching allocator's peak of allocated bytes above the span's start:
the strategy's own tensors, whatever the pool already held. NVML's per-process figure is what the
device saw (the CUDA context, the allocator's cached blocks, other libraries' allocations); it is
kept beside the headline and made honest by emptying the allocator's cache before each span, so
that a pool grown by an earlier example does not hide this one's rise.

Where a source is absent its figure is `None`, never a zero that looks measured: NVML without this
process in its list (a container without the host's PID namespace) or raising (MIG) is absent.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import os
import re
import sys
import threading
from collections.abc import Iterator
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
    """Calls `read()` every few milliseconds on a thread and keeps the largest value. A reading of
    None (not measured) is skipped, so the peak is None only when no reading was ever made."""

    def __init__(self, read: Any) -> None:
        self.read = read
        self.peak: int | None = None
        self._take()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _take(self) -> None:
        value = self.read()
        if value is not None:
            self.peak = value if self.peak is None else max(self.peak, value)

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self._take()

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> int | None:
        self._stop.set()
        self._thread.join()
        self._take()
        return None if self.peak is None else int(self.peak)


def load_nvml() -> Any | None:
    """The `pynvml` module, initialised, or None where NVML (the driver) is absent."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:
        return None


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a moment: the profiler's C++ side logs every start and
    stop there (not through Python, so only the descriptor can silence it)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class TensorBytes:
    """The peak of live CPU tensor bytes allocated between `start` and `stop`, from the allocator's
    reports to torch's profiler: each allocation and free inside the span is one memory event
    (bytes, signed); tensors that existed before the span are not counted, nor their frees."""

    def __init__(self) -> None:
        self.running = False
        self.peak: int | None = None  # after `stop`, or leaving the `with` block

    def __enter__(self) -> TensorBytes:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> TensorBytes:
        import torch._C._profiler as profiler
        from torch.autograd import (
            ProfilerActivity,
            ProfilerConfig,
            ProfilerState,
            _enable_profiler,
            _prepare_profiler,
            _profiler_enabled,
        )

        if _profiler_enabled():  # someone else is profiling this process: leave them be, count nothing
            return self
        config = ProfilerConfig(ProfilerState.KINETO, False, True, False, False, False, profiler._ExperimentalConfig())
        activities = {ProfilerActivity.CPU}
        with quiet_stderr():
            _prepare_profiler(config, activities)
            # only user scopes record op events, and lcbench opens none: memory events alone are kept
            _enable_profiler(config, activities, {profiler.RecordScope.USER_SCOPE})  # type: ignore[call-arg]
        self.running = True
        return self

    def stop(self) -> int | None:
        if not self.running:
            return None
        from torch._C._autograd import DeviceType
        from torch.autograd import _disable_profiler

        with quiet_stderr():
            events = _disable_profiler().events()
        self.running = False
        memory = [e for e in events if e.name() == "[memory]" and e.device_type() == DeviceType.CPU]
        changes = sorted((e.start_ns(), e.nbytes()) for e in memory)  # type: ignore[attr-defined]
        live = peak = 0
        for _, change in changes:
            live += change
            peak = max(peak, live)
        self.peak = peak
        return peak


@dataclass
class MemoryPeak:
    """Rise of each memory figure over the span, in bytes (None where not measured)."""

    tensor_bytes: int | None = None  # CPU: peak of live tensor bytes allocated in the span (exact)
    rss_bytes: int | None = None
    gpu_process_bytes: int | None = None  # NVML, this process on the device
    gpu_device_bytes: int | None = None  # NVML, whole device: includes other processes
    torch_allocated_bytes: int | None = None
    torch_reserved_bytes: int | None = None
    source: str = "none"
    baseline: dict[str, int] = field(default_factory=dict)

    def counted(self, tensor_bytes: int | None) -> MemoryPeak:
        """These figures with the tensor bytes another pass over the same work counted."""
        if tensor_bytes is None:  # nothing counted (another profiler ran): these figures as they are
            return self
        return dataclasses.replace(self, tensor_bytes=tensor_bytes, source="tensor_bytes")

    @property
    def peak_bytes(self) -> int | None:
        """The headline figure, the strategy's own tensors on either device: on a GPU the allocator's
        peak of allocated bytes, on a CPU the counted peak of live tensor bytes; else the process RSS."""
        for value in (self.torch_allocated_bytes, self.tensor_bytes, self.rss_bytes):
            if value is not None:
                return value
        return None


class MeasureMemory:
    """Context manager: `with MeasureMemory(device) as m: ...; m.result`. `count_tensors` (CPU)
    counts live tensor bytes exactly, at a small cost in time per allocation."""

    def __init__(self, device: str = "cpu", nvml: Any | None = None, count_tensors: bool = True) -> None:
        self.device = device
        self.on_gpu = device.startswith("cuda")
        self._tensors = TensorBytes() if count_tensors and not self.on_gpu else None
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
            gc.collect()  # tensors an earlier example left to the collector go back to the pool ...
            torch.cuda.empty_cache()  # ... and the pool's unused blocks to the driver, so NVML's rise is this span's
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline["torch_allocated"] = torch.cuda.memory_allocated(self.device)
            self._baseline["torch_reserved"] = torch.cuda.memory_reserved(self.device)
            handle = nvml_handle(self.nvml, self.device) if self.nvml is not None else None
            if handle is not None:
                for name, read in (("gpu_process", self._process_reader(handle)), ("gpu_device", self._device_reader(handle))):
                    sampler = Sampler(read)
                    if sampler.peak is not None:  # a reader that never reads is absent, not zero
                        self._baseline[name] = sampler.peak
                        self._samplers[name] = sampler.start()
        if self._tensors is not None:
            self._tensors.start()  # last: what the meter itself allocated is not counted
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        tensor_peak = self._tensors.stop() if self._tensors is not None else None
        peaks = {name: sampler.stop() for name, sampler in self._samplers.items()}
        rss_peak = peaks["rss"] if "rss" in peaks else _status_bytes("VmHWM")
        result = MemoryPeak(baseline=dict(self._baseline), source="rss" if tensor_peak is None else "tensor_bytes")
        result.tensor_bytes = tensor_peak
        if rss_peak is not None:
            result.rss_bytes = max(0, rss_peak - self._baseline["rss"])
        if self.on_gpu:
            import torch

            torch.cuda.synchronize(self.device)
            result.torch_allocated_bytes = torch.cuda.max_memory_allocated(self.device) - self._baseline["torch_allocated"]
            result.torch_reserved_bytes = torch.cuda.max_memory_reserved(self.device) - self._baseline["torch_reserved"]
            result.source = "torch_allocated"
            result.gpu_process_bytes = self._rise(peaks, "gpu_process")
            result.gpu_device_bytes = self._rise(peaks, "gpu_device")
        self.result = result

    def _rise(self, peaks: dict[str, int | None], name: str) -> int | None:
        peak = peaks.get(name)
        return None if peak is None else max(0, peak - self._baseline[name])

    def _process_reader(self, handle: Any) -> Any:
        nvml: Any = self.nvml
        pid = os.getpid()

        def read() -> int | None:
            """This process's bytes on the device; None where NVML does not list it (no host PID
            namespace) or cannot say (MIG, a driver error)."""
            try:
                for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    if proc.pid == pid and proc.usedGpuMemory is not None:
                        return int(proc.usedGpuMemory)
            except Exception:
                return None
            return None

        return read

    def _device_reader(self, handle: Any) -> Any:
        nvml: Any = self.nvml

        def read() -> int | None:
            try:
                return int(nvml.nvmlDeviceGetMemoryInfo(handle).used)
            except Exception:
                return None

        return read


def nvml_handle(nvml: Any, device: str) -> Any | None:
    """NVML's handle of the GPU torch calls `device`, found by UUID: under CUDA_VISIBLE_DEVICES
    (Ray actors, Slurm jobs) torch's ordinal is not NVML's index. None where it cannot be found,
    rather than another GPU's figures."""
    import torch

    index = torch.device(device).index
    try:
        uuid = str(torch.cuda.get_device_properties(torch.cuda.current_device() if index is None else index).uuid)
    except Exception:
        return None
    for name in (uuid, f"GPU-{uuid}", f"MIG-{uuid}"):
        try:
            return nvml.nvmlDeviceGetHandleByUUID(name)
        except Exception:
            continue
    return None


def counting_slows(device: str) -> bool:
    """Whether measuring memory on `device` slows the work measured (the CPU's counting does; the
    GPU allocator's peak is kept by the allocator anyway): then memory and time take separate passes."""
    return not device.startswith("cuda")
