"""`--executor ray` and `--executor slurm`: the same sweep on a cluster, records unchanged.

The driver (this process) loads no model: it plans the chains, hands them to the cluster's
engine, and writes every record itself (Ray) or merges the shards' part files (Slurm). Site
settings (a Ray address, a Slurm partition and account) come from flags or an execution profile
file (`--profile`), never from the suite, so a suite's hash does not depend on where it runs.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lcbench.errors import UserError

if TYPE_CHECKING:
    from rich.console import Console

    from lcbench.suite import Suite
    from lcbench.sweep import RunOptions

EXECUTORS = ("local", "ray", "slurm")
EXTRAS = {"ray": ("ray", "lcbench.ray_executor"), "slurm": ("submitit", "lcbench.slurm_executor")}
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
        raise UserError(f"profile `{path}` does not exist; write one with a `{executor}:` section (see the README)")
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


def run_on_cluster(suite: Suite, suite_hash: str, suite_file: str, console: Console, options: RunOptions) -> tuple[Path, bool]:
    from lcbench.sweep import finish, open_run_dir, pending

    module = engine(options.executor)
    if hasattr(module, "check_settings"):  # said before a run folder exists
        module.check_settings(suite, options)
    run_dir, suite_hash = open_run_dir(suite, suite_hash, suite_file, options, device=options.executor, dtype=suite.dtype)
    todo, skips = pending(suite, suite_hash, run_dir, options, console)
    completed = module.run_chains(suite, todo, run_dir, skips, options, console)
    finish(run_dir, completed, pending_jobs=not completed and options.cluster.get("wait") is False)
    return run_dir.path, completed
