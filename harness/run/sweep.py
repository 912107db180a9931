"""`lcbench run`: plan the cells, group them into chains, hand the chains still to run to an engine
(this machine, Ray or Slurm) and append their records.

A run can be isolated (each cell in a child process with a timeout and a memory cap), spread over
a Ray or Slurm cluster (`--executor`), resumed (`--resume RUN_DIR` runs only the cells whose
records are not all there) and interrupted with Ctrl-C (the cell in flight finishes, and the
caller writes the partial report and says how to resume).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console

from lcbench.config.plan import chains, plan
from lcbench.config.suite import Suite
from lcbench.errors import UserError
from lcbench.model import check_model_dir
from lcbench.reference.models import model_label, model_path
from lcbench.run.chains import Local, RunOptions, Skips, Sweep, chain_model, run_locally
from lcbench.run.engines import engine
from lcbench.run.environment import environment
from lcbench.run.run_dir import FAILED, LOST, RunDir


def check_models(suite: Suite) -> None:
    """Every model folder the suite needs, checked before anything loads."""
    paths = sorted({model_path(suite.model, t.name) for t in suite.tasks})
    problems = [p for path in paths for p in check_model_dir(path, suite.trust_remote_code)]
    if problems:  # said here, plainly, rather than as a worker that died loading
        raise UserError(problems)


def run_suite(
    suite: Suite, suite_hash: str, suite_file: str, console: Console | None = None, options: RunOptions | None = None
) -> tuple[Path, bool]:
    """Run every cell of `suite` not yet done; return (the run folder, whether every cell ran).
    A new folder is made only once the first model has loaded (or, on a cluster, once its settings
    are checked), so a bad model path or site setting leaves nothing."""
    console = console or Console(stderr=True)
    options = options or RunOptions()
    check_models(suite)
    if options.executor != "local":
        module = engine(options.executor)
        if hasattr(module, "check_settings"):
            module.check_settings(suite, options)
        if options.resume is not None and hasattr(module, "settle_resumed"):
            module.settle_resumed(RunDir.resume(options.resume), console)  # earlier jobs collected first
        sweep = start(suite, suite_hash, suite_file, options, console, device=options.executor, dtype=suite.dtype)
        return sweep.run_dir.path, module.run_chains(sweep)
    local = Local(suite, options)
    try:
        first = local.for_model(str(model_path(suite.model, suite.tasks[0].name)))
        sweep = start(suite, suite_hash, suite_file, options, console, first.device, first.dtype)
        completed = run_locally(sweep, lambda chain: local.for_model(chain_model(suite, chain)))
    finally:
        local.close()
    return sweep.run_dir.path, completed


def start(
    suite: Suite, suite_hash: str, suite_file: str, options: RunOptions, console: Console, device: str, dtype: str
) -> Sweep:
    """The run folder (new, or the one resumed) and the chains of the cells still to run in it."""
    run_dir, suite_hash = open_run_dir(suite, suite_hash, suite_file, options, device, dtype)
    cells = plan(suite, suite_hash)
    kept: dict[str, int] = {}
    if options.resume is not None:
        redo = LOST | FAILED if options.rerun == "errors" else LOST
        kept = run_dir.keep_finished(cells, suite.samples, redo, options.rerun == "noisy", options.partial)
    done = {key for key, count in kept.items() if count >= suite.samples}
    if options.only is not None:
        done |= {c.key for c in cells if c.key not in options.only}
    if done and options.only is None:
        console.print(f"resuming {run_dir.path}: {len(done)} cells done, {len(cells) - len(done)} to run")
    todo = chains([dataclasses.replace(c, first=kept.get(c.key, 0), round=options.round) for c in cells if c.key not in done])
    return Sweep(suite, todo, run_dir, Skips(suite, run_dir.oom_at(), options.skip_after_oom), options, console)


def open_run_dir(
    suite: Suite, suite_hash: str, suite_file: str, options: RunOptions, device: str, dtype: str
) -> tuple[RunDir, str]:
    """(the run folder, the suite hash its cell keys use): the resumed one, or a new one with its
    env.json and suite.json written."""
    if options.resume is not None:
        run_dir = RunDir.resume(options.resume)
        return run_dir, run_dir.env.get("suite_hash", suite_hash)
    run_dir = RunDir.create(Path(suite.output), suite.name)
    env = environment(
        suite=suite.name, suite_file=suite_file, suite_hash=suite_hash, seed=suite.seed, model=suite.model,
        models={t.key: model_label(suite.model, t.name) for t in suite.tasks}, device=device, dtype=dtype,
        executor=options.executor,
    )  # fmt: skip
    run_dir.write_env(env)
    run_dir.write_suite(suite.model_dump_json(indent=2))
    run_dir.append([])  # records.jsonl exists from the start: the run is under way
    return run_dir, suite_hash
