"""What a result was measured on: versions, device, driver, CPU. Kept beside every run."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from lcbench import __version__


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu() -> dict[str, Any]:
    import torch

    from lcbench.run.measure import load_nvml

    # is_available and device_count ask NVML, not the driver: no CUDA context is made here, so a
    # parent whose cells run in child processes (or on other nodes) holds no memory on GPU 0.
    info: dict[str, Any] = {"cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda}
    if info["cuda_available"]:
        info["gpu_count"] = torch.cuda.device_count()
        if torch.cuda.is_initialized():  # this process computes on a GPU already
            info["gpu"] = torch.cuda.get_device_name(torch.cuda.current_device())
    nvml = load_nvml()
    info["nvml_available"] = nvml is not None
    if nvml is not None:
        info["driver"] = nvml.nvmlSystemGetDriverVersion()
        if info["cuda_available"] and "gpu" not in info:
            info["gpu"] = _first_visible_gpu_name(nvml)
    return info


def _first_visible_gpu_name(nvml: Any) -> str | None:
    """The name of the GPU torch would call cuda:0, from NVML (CUDA_VISIBLE_DEVICES by index or UUID)."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(int(first)) if first.isdigit() else nvml.nvmlDeviceGetHandleByUUID(first)
        name = nvml.nvmlDeviceGetName(handle)
    except Exception:
        return None
    return name.decode() if isinstance(name, bytes) else str(name)


def environment(**run: Any) -> dict[str, Any]:
    """The environment of this process, plus `run` facts (seed, suite hash, model, device)."""
    return {
        "lcbench": __version__,
        "git_sha": _git_sha(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "triton": _version("triton"),
        **_gpu(),
        **run,
    }
