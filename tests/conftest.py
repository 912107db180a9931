"""Shared fixtures: tiny models built in code (no download), saved as real model folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# Without a GPU the Triton kernels run through Triton's interpreter, which must be chosen before
# Triton is first imported: here, before any test module loads.
if not _has_cuda():
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parent.parent
SUITES = sorted((ROOT / "suites").glob("*.yaml"))
ARCHS = ["llama", "qwen2", "smollm3"]


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from lcbench.tiny_model import save_tiny_model

    root = tmp_path_factory.mktemp("models")
    return {arch: save_tiny_model(root / arch, arch) for arch in ARCHS}


@pytest.fixture(scope="session")
def tiny_dir(tiny_dirs: dict[str, Path]) -> Path:
    return tiny_dirs["llama"]


@pytest.fixture(scope="session", params=ARCHS)
def tiny_model(request: pytest.FixtureRequest, tiny_dirs: dict[str, Path]):
    from lcbench.model import Model

    return Model.load(tiny_dirs[request.param], device="cpu")


@pytest.fixture(scope="session")
def llama(tiny_dir: Path):
    from lcbench.model import Model

    return Model.load(tiny_dir, device="cpu")


def write_suite(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def suite_file(tmp_path: Path, tiny_dir: Path):
    """A factory: a small valid suite on the tiny model, with extra YAML lines appended."""

    def make(extra: str = "", strategies: str | None = None) -> Path:
        strategies = strategies or "  - name: full\n  - {name: truncation, label: trunc-48, params: {budget: 48}}\n"
        text = (
            "# a small suite for tests\n"
            "name: t\n"
            f"model: {tiny_dir}\n"
            "device: cpu\n"
            "context_lengths: [64, 96]\n"
            "samples: 2\n"
            "prompt: {format: plain}\n"  # lengths this short hold no instruct prompt (test_prompts.py asks those)
            "tasks: [{name: needle}]\n"
            f"strategies:\n{strategies}"
            f"output: {tmp_path / 'results'}\n"
            f"{extra}"
        )
        return write_suite(tmp_path / "suite.yaml", text)

    return make


@pytest.fixture(scope="session")
def reference():
    """The shipped translation model, loaded exactly as `model: reference` loads it for mt."""
    from lcbench.model import Model
    from lcbench.sweep import reference_dir

    return Model.load(reference_dir("mt"), device="cpu")


@pytest.fixture(scope="session")
def lookup():
    """The shipped look-up model (the answer families), loaded as `model: reference` loads it."""
    from lcbench.model import Model
    from lcbench.sweep import reference_dir

    return Model.load(reference_dir("needle"), device="cpu")
