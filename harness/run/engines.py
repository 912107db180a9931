"""The engines a sweep can run on: this machine (`local`), or a cluster (`--executor ray`,
`--executor slurm`), records unchanged.

On a cluster the driver (this process) loads no model: the sweep hands the chains to the engine's
module (`run_chains(sweep) -> bool`), which writes every record itself (Ray) or merges the shards'
part files (Slurm). Site settings (a Ray address, a Slurm partition and account) come from flags
or an execution profile file (`--profile`), never from the suite, so a suite's hash does not
depend on where it runs.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml

from lcbench.errors import UserError

EXECUTORS = ("local", "ray", "slurm")
EXTRAS = {"ray": ("ray", "lcbench.run.ray_engine"), "slurm": ("submitit", "lcbench.run.slurm_engine")}
PROFILE_KEYS = {
    "ray": ("address", "actors", "cpus_per_actor"),
    "slurm": ("partition", "account", "time", "gpus", "cpus_per_task", "array_parallelism", "folder", "cluster"),
}


def engine(executor: str) -> Any:
    """The module that runs chains on `executor`, or the pip command that installs its extra."""
    package, module = EXTRAS[executor]
    try:
        importlib.import_module(package)
    except ImportError:
        raise UserError(
            f"--executor {executor} needs {package}, which is not installed; run: pip install 'lcbench[{executor}]'"
        ) from None
    return importlib.import_module(module)


def read_profile(path: Path, executor: str) -> dict[str, Any]:
    """An execution profile: YAML with one section per executor (`ray:`, `slurm:`) of site settings."""
    if not path.is_file():
        raise UserError(
            f"profile `{path}` does not exist; write one with a `{executor}:` section (see docs/clusters.md, Execution profiles)"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"profile `{path}` is not valid YAML ({exc})") from None
    section = data.get(executor, {}) if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise UserError(f"profile `{path}`: `{executor}` must be a mapping of settings, e.g. {PROFILE_KEYS[executor][0]}: ...")
    unknown = sorted(set(section) - set(PROFILE_KEYS[executor]))
    if unknown:
        raise UserError(
            f"profile `{path}`: unknown {executor} setting {', '.join(unknown)}; known: {', '.join(PROFILE_KEYS[executor])}"
        )
    return section
