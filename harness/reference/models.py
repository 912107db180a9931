"""Where the shipped models live and which one answers a task under `model: reference`."""

from __future__ import annotations

from pathlib import Path

from lcbench.model import resolve_model

REFERENCE = "reference"  # the suite's `model:` that names the shipped models
REFERENCE_DIR = Path(__file__).parent  # one folder per model, trained by `lcbench train-reference`
# Translation has its own model; every answer family (and a user's jsonl data) goes to the look-up model.
REFERENCE_MODELS = {"mt": "mt"}
LOOKUP = "lookup"


def reference_dir(task: str) -> Path:
    """The shipped model that `model: reference` runs `task` on."""
    return REFERENCE_DIR / REFERENCE_MODELS.get(task, LOOKUP)


def model_path(model: str, task: str) -> Path:
    """The folder of the model that answers `task`, for a suite's `model:` (`reference`, a local
    folder, or a hub id found in the Hugging Face cache)."""
    return reference_dir(task) if model == REFERENCE else resolve_model(model)


def model_label(model: str, task: str) -> str:
    """What answered `task`, as the report and env.json name it."""
    return f"{REFERENCE}/{reference_dir(task).name}" if model == REFERENCE else model
