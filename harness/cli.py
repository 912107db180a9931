"""The `lcbench` command. `main()` parses and delegates; bad input exits 2 with one message."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lcbench.errors import UserError, did_you_mean
from lcbench.prompt import FORMATS
from lcbench.run.engines import EXECUTORS
from lcbench.units import parse_bytes, parse_length, parse_mb, parse_seconds

SETTLE_MIN, SETTLE_MAX = 4, 64  # `--settle` on a suite of fixed samples: its examples per cell, at first and at most

if TYPE_CHECKING:
    from lcbench.config.suite import Suite
    from lcbench.run.chains import RunOptions

EPILOG = """examples:
  lcbench run suites/mt.yaml
  lcbench run suites/needle.yaml --lengths 1k,4k --strategies full,truncation --limit 5
  lcbench run suites/mt.yaml --model ~/models/my-llama --device cuda:0 --out /tmp/runs
  lcbench run suites/longbench.yaml --data-dir ~/data/longbench --model ~/models/my-llama --format chat
  lcbench run suites/needle.yaml --model ~/models/my-llama --lengths 4k --limit 1 --show-prompt
  lcbench validate suites/mt.yaml
  lcbench data fetch longbench
  lcbench ls
  lcbench report results/mt-20260101-120000
  lcbench run suites/mt.yaml --isolate --cell-timeout 600 --max-memory 16G
  lcbench run --resume results/mt-20260101-120000
  lcbench compare results/mt-20260101-120000 results/mt-20260102-090000
  lcbench regress --baseline results/baselines/perf --run results/perf-20260102-090000
"""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="lcbench",
        description="Long-context strategies for LLMs: quality, peak memory and throughput in the same cell.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run a suite and write records, summary and report",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("suite", type=Path, nargs="?", help="suite YAML file, e.g. suites/mt.yaml (not with --resume)")
    run.add_argument("--model", help="local Hugging Face model folder, or `reference` (the shipped model)")
    run.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    run.add_argument("--lengths", help="context lengths to run, e.g. 1k,4k (replaces the suite's)")
    run.add_argument("--strategies", help="strategy labels or names to run, e.g. full,truncation")
    run.add_argument("--limit", type=int, help="at most N examples per cell")
    run.add_argument("--data-dir", type=Path, help="folder of the data-set tasks' files (replaces the suite's `data_dir`)")
    run.add_argument("--format", choices=FORMATS, help="prompt format of every task: plain, instruct, chat or auto")
    run.add_argument("--show-prompt", action="store_true", help="print every prompt the model read for each cell's first example")
    run.add_argument("--models", help="several local model folders, e.g. a,b: one run folder per model")
    cluster = run.add_argument_group("cluster", "run the chains on a Ray or Slurm cluster (extras lcbench[ray], lcbench[slurm])")
    cluster.add_argument("--executor", choices=EXECUTORS, default="local", help="where cells run (default: this machine)")
    cluster.add_argument("--profile", type=Path, help="execution profile: YAML with `ray:` / `slurm:` site settings")
    cluster.add_argument("--ray-address", help="the Ray cluster to join, e.g. ray://head:10001 (default: start one here)")
    cluster.add_argument("--slurm-partition", help="Slurm partition")
    cluster.add_argument("--slurm-time", help="time limit per shard, minutes or HH:MM:SS")
    cluster.add_argument("--slurm-gpus", type=int, help="GPUs per shard")
    cluster.add_argument("--slurm-array-parallelism", type=int, help="shards running at once")
    cluster.add_argument("--no-wait", action="store_true", help="submit and return; `lcbench collect RUN_DIR` merges later")
    run.add_argument("--out", type=Path, help="folder for the run folder (default: the suite's `output`)")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="complete an interrupted run: only its missing cells run")
    run.add_argument(
        "--rerun",
        choices=("noisy", "errors"),
        help="with --resume: measure again the cells whose timing was noisy, or the examples that failed (error, oom, timeout)",
    )
    run.add_argument(
        "--settle",
        action="store_true",
        help="adaptive sampling: 4 examples per cell, then more only where a verdict is open, up to 64 "
        "(a suite's `samples: {min, max}` does this by itself)",
    )
    run.add_argument(
        "--time-budget",
        type=argument(parse_seconds),
        metavar="DURATION",
        help="with adaptive sampling: add no round that would end past this, e.g. 10m",
    )
    run.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run each cell in a child process (default: on where a GPU is used)",
    )
    run.add_argument("--cell-timeout", type=float, metavar="SECONDS", help="with --isolate: stop a cell after this long")
    run.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="with --isolate: cap each cell's memory, e.g. 8G (on a GPU the allocator's share of it, on CPU the address space)",
    )
    run.add_argument(
        "--no-skip-after-oom",
        dest="skip_after_oom",
        action="store_false",
        help="try longer lengths after a strategy ran out of memory",
    )
    sub.add_parser("ls", help="list strategies, tasks and suites, one line each")
    data = sub.add_parser("data", help="fetch a public data set once into the cache its tasks read")
    fetch = data.add_subparsers(dest="action", required=True, metavar="ACTION").add_parser(
        "fetch", help="download LongBench, LongBench v2, InfiniteBench or RULER's qa sets into the cache"
    )
    fetch.add_argument("name", metavar="NAME", help="longbench, longbench_v2, infinitebench or ruler-qa")
    fetch.add_argument(
        "--cache", type=Path, help="cache folder (default: $LCBENCH_DATA or ~/.cache/lcbench/data); the set goes to CACHE/NAME"
    )
    collect = sub.add_parser("collect", help="merge a Slurm run's shards into its records and write its report")
    collect.add_argument("run_dir", type=Path)
    validate = sub.add_parser(
        "validate",
        help="check a suite file, its data files and its prompts on the model's tokenizer; report every problem at once",
    )
    validate.add_argument("suite", type=Path)
    validate.add_argument("--model", help="local Hugging Face model folder, or `reference`")
    validate.add_argument("--data-dir", type=Path, help="folder of the data-set tasks' files")
    report = sub.add_parser("report", help="re-render summary.csv and report.md from a run's records")
    report.add_argument("run_dir", type=Path)
    compare = sub.add_parser("compare", help="compare runs with the first: quality with bootstrap intervals, speed, memory")
    compare.add_argument("runs", type=Path, nargs="+", help="run folders; the first is the reference")
    compare.add_argument("--out", type=Path, help="also write compare.md and compare.csv here")
    pick = sub.add_parser(
        "recommend",
        help="where each strategy breaks, and the best strategy within a memory and time budget at each measured length",
    )
    pick.add_argument("runs", type=Path, nargs="+", help="run folders, answered one after the other (never mixed)")
    pick.add_argument("--memory", type=argument(parse_mb), help="peak memory budget, e.g. 5MB or 2G")
    pick.add_argument("--latency", type=argument(parse_seconds), help="latency budget per example, e.g. 1s or 500ms")
    pick.add_argument("--min-quality", type=float, help="the headline quality a pick must reach")
    pick.add_argument("--length", type=argument(parse_length), help="answer at this measured length only, e.g. 4k")
    pick.add_argument("--threshold", type=float, help="a strategy breaks below this share of its shortest-length quality (0.9)")
    gate = sub.add_parser("regress", help="exit 1 when a run regressed against a baseline run, and say why")
    gate.add_argument("--baseline", type=Path, required=True, help="the baseline run folder, e.g. results/baselines/perf")
    gate.add_argument("--run", type=Path, required=True, help="the run to check")
    gate.add_argument("--throughput", type=float, help="relative slowdown allowed (against full in the same run)")
    gate.add_argument("--memory", type=float, help="relative rise of peak memory allowed")
    gate.add_argument("--memory-slack-mb", type=float, help="absolute rise of peak memory always allowed")
    gate.add_argument("--quality", type=float, help="absolute drop of the headline metric allowed")
    sub.add_parser("train-reference", help="train the shipped reference model (see --help)", add_help=False)
    return top


def argument(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser raising ValueError: its message, not argparse's generic one."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = parse.__name__
    return convert


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train-reference"]:  # its own options live with the trainer
        from lcbench.reference.train import main as train_main

        train_main(argv[1:])
        return 0
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"lcbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lcbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `lcbench ls | head`: the reader has what it wanted
        sys.stderr.close()
        return 0


def overrides(args: argparse.Namespace) -> dict[str, object]:
    found: dict[str, object] = {"model": args.model, "device": getattr(args, "device", None)}
    if getattr(args, "data_dir", None) is not None:
        found["data_dir"] = str(args.data_dir)
    if getattr(args, "lengths", None) is not None:
        from lcbench.config.suite import option_lengths

        found["context_lengths"] = option_lengths(args.lengths)
    if getattr(args, "out", None) is not None:
        found["output"] = str(args.out)
    return found


def select(suite_data: dict, names: str) -> list:
    """The suite's strategy entries whose label or name is in `names`."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    entries = suite_data.get("strategies") or []
    known = {e.get("label") or e.get("name") for e in entries if isinstance(e, dict)} | {
        e.get("name") for e in entries if isinstance(e, dict)
    }
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise UserError(["--strategies: " + did_you_mean(n, {k for k in known if k}, "strategy in this suite") for n in unknown])
    return [e for e in entries if isinstance(e, dict) and (e.get("label") in wanted or e.get("name") in wanted)]


def run_options(args: argparse.Namespace, device: str) -> RunOptions:
    from lcbench.run.chains import RunOptions
    from lcbench.run.executor import Limits, default_isolation

    # a cluster executor always runs cells in a child process of its own (timeouts, caps, crashes as records)
    isolate = args.executor != "local" or (default_isolation(device) if args.isolate is None else args.isolate)
    if (args.cell_timeout is not None or args.max_memory is not None) and not isolate:
        raise UserError("--cell-timeout and --max-memory act on isolated cells; add --isolate")
    if args.cell_timeout is not None and args.cell_timeout <= 0:
        raise UserError(f"--cell-timeout must be a positive number of seconds, got {args.cell_timeout}")
    max_memory = None
    if args.max_memory is not None:
        try:
            max_memory = parse_bytes(args.max_memory)
        except ValueError:
            raise UserError(f"--max-memory: `{args.max_memory}` is not a size; write e.g. 8G or 512M") from None
    return RunOptions(
        isolate, Limits(args.cell_timeout, max_memory), args.skip_after_oom, args.resume, args.show_prompt,
        args.executor, cluster_settings(args), args.rerun,
    )  # fmt: skip


def cluster_settings(args: argparse.Namespace) -> dict[str, object]:
    """The executor's site settings: the profile's section, then the flags over it."""
    from lcbench.run.engines import read_profile

    if args.executor == "local":
        if args.profile is not None or args.no_wait:
            raise UserError("--profile and --no-wait act on a cluster; add --executor ray or --executor slurm")
        return {}
    settings = read_profile(args.profile, args.executor) if args.profile is not None else {}
    flags = {
        "address": args.ray_address,
        "partition": args.slurm_partition,
        "time": args.slurm_time,
        "gpus": args.slurm_gpus,
        "array_parallelism": args.slurm_array_parallelism,
    }
    settings.update({k: v for k, v in flags.items() if v is not None})
    if args.no_wait:
        settings["wait"] = False
    return settings


def cmd_run(args: argparse.Namespace) -> int:
    from lcbench.config.suite import read_yaml, validate
    from lcbench.run.preflight import preflight
    from lcbench.run.run_dir import RunDir

    if args.rerun is not None and args.resume is None:
        raise UserError(f"--rerun {args.rerun} measures cells of an existing run again; add --resume RUN_DIR")
    if args.limit is not None and args.limit <= 0:
        raise UserError(f"--limit must be a positive number of examples, got {args.limit}")
    if args.resume is not None:
        if args.suite is not None:
            raise UserError("give either a suite file or --resume RUN_DIR (the run folder holds its suite)")
        suite = validate(RunDir.resume(args.resume).suite_data, None, str(args.resume / "suite.json"))
        preflight(suite)
        options = run_options(args, suite.device)
        path, completed = run(suite, "", str(args.resume / "suite.json"), options, args.time_budget)
        return finish(path, completed, options)
    if args.suite is None:
        raise UserError("give a suite file, e.g. `lcbench run suites/mt.yaml`, or --resume RUN_DIR")
    data, node, text = read_yaml(args.suite)
    if args.models is None:
        return run_one(args, data, node, text)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.model is not None or not models:
        raise UserError("give either --model PATH or --models a,b (several local model folders)")
    status = 0
    for model in models:  # one run folder per model: resume, report, compare and regress see ordinary runs
        args.model = model
        status = max(status, run_one(args, dict(data), node, text))
    return status


def run_one(args: argparse.Namespace, data: dict[str, Any], node: Any, text: str) -> int:
    from lcbench.config.suite import suite_hash, validate
    from lcbench.run.preflight import preflight

    data = {**data, **{k: v for k, v in overrides(args).items() if v is not None}}
    if args.strategies:
        data["strategies"] = select(data, args.strategies)
    if args.settle and not isinstance(data.get("samples"), dict):
        data["samples"] = {"min": SETTLE_MIN, "max": SETTLE_MAX}
    if args.limit is not None and isinstance(data.get("samples", 10), int):
        data["samples"] = min(args.limit, data.get("samples", 10))
    elif args.limit is not None and isinstance(data["samples"], dict):  # the most per cell
        top = min(args.limit, data["samples"].get("max", SETTLE_MAX))
        low = min(top, data["samples"].get("min", SETTLE_MIN))
        # one example per cell has no interval to settle: fixed sampling
        data["samples"] = top if top < 2 else {**data["samples"], "min": max(2, low), "max": top}
    if args.format is not None:
        data["prompt"] = {**(data.get("prompt") or {}), "format": args.format}
        data["tasks"] = [
            {**t, "prompt": {**(t.get("prompt") or {}), "format": args.format}} if isinstance(t, dict) else t
            for t in data.get("tasks") or []
        ]
    suite = validate(data, node, str(args.suite))
    preflight(suite)
    options = run_options(args, suite.device)
    path, completed = run(suite, suite_hash(text), str(args.suite), options, args.time_budget)
    return finish(path, completed, options)


def run(suite: Suite, hash_: str, suite_file: str, options: RunOptions, time_budget_s: float | None) -> tuple[Path, bool]:
    """The suite's run: in adaptive rounds where it sets `sampling`, else every cell at its count."""
    from lcbench.run.sweep import run_suite
    from lcbench.settle import run_adaptive

    if suite.sampling is None:
        if time_budget_s is not None:
            raise UserError("--time-budget bounds adaptive sampling; add --settle or give the suite `samples: {min, max}`")
        return run_suite(suite, hash_, suite_file, options=options)
    if options.executor != "local":
        raise UserError("adaptive sampling runs on this machine; on a cluster give the suite a fixed `samples: N`")
    budget = time_budget_s if time_budget_s is not None else suite.sampling.time_budget
    return run_adaptive(suite, hash_, suite_file, options=options, time_budget_s=budget)


def finish(path: Path, completed: bool, options: RunOptions | None = None) -> int:
    """Write the report and say where it is; how to finish a run that stopped early, whose cluster
    jobs are still running, or whose cluster lost examples. Returns the exit status: 130 where the
    run stopped early (Ctrl-C), 0 where it is complete or was submitted without waiting."""
    from lcbench.analysis.report import headline, write_report
    from lcbench.run.records import read_records
    from lcbench.run.run_dir import RunDir

    summary = write_report(path)
    print(headline(summary))
    print(f"\nresults in {path}/ (records.jsonl, summary.csv, report.md, env.json)")
    submitted = options is not None and options.cluster.get("wait") is False
    lost = sum(r.status == "lost" for r in read_records(path / "records.jsonl"))
    if not completed and submitted:
        print(f"jobs still running: the report covers the cells collected; merge the rest with `lcbench collect {path}`")
    elif not completed:
        print(f"interrupted: the report covers the cells that ran; resume with `lcbench run --resume {path}`")
    elif lost:
        executor = RunDir(path).env.get("executor", "local")
        again = f" --executor {executor}" if executor != "local" else ""
        print(
            f"{lost} examples were lost to the cluster (not the strategies); "
            f"`lcbench run --resume {path}{again}` measures them again"
        )
    return 0 if completed or submitted else 130


def cmd_validate(args: argparse.Namespace) -> int:
    from lcbench.config.suite import load_suite
    from lcbench.run.preflight import preflight

    suite, _ = load_suite(args.suite, **overrides(args))
    preflight(suite)
    cells = len(suite.tasks) * len(suite.context_lengths) * len(suite.strategies)
    print(f"{args.suite}: ok ({cells} cells, {cells * suite.samples} examples)")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from lcbench.registry import strategies, tasks

    for name, cls in sorted(strategies().items()):
        print(f"strategy  {name:<14} [{cls.level}] {first_sentence(cls)}")
    for name, task_cls in sorted(tasks().items()):
        print(f"task      {name:<14} {first_sentence(task_cls)}")
    for path in sorted(Path("suites").glob("*.yaml")):
        print(f"suite     {str(path):<14} {suite_comment(path)}")
    return 0


def first_sentence(cls: type) -> str:
    """The first sentence of a plugin's module docstring (one plugin per file), else its class's,
    whole even where it runs over several lines."""
    module = sys.modules.get(cls.__module__)
    doc = (module.__doc__ if module else None) or cls.__doc__ or ""
    paragraph = " ".join(doc.strip().split("\n\n", 1)[0].split())
    return re.split(r"(?<=[.!?])\s(?=[A-Z`])", paragraph, maxsplit=1)[0]


def suite_comment(path: Path) -> str:
    """A suite's first comment line says what it shows."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def cmd_data(args: argparse.Namespace) -> int:
    from lcbench.data_fetch import fetch

    fetch(args.name, args.cache)
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from lcbench.run.engines import engine
    from lcbench.run.run_dir import RunDir

    run_dir = RunDir.resume(args.run_dir)
    added = engine("slurm").collect_run(run_dir)
    print(f"collected {added} records into {run_dir.records_path}")
    return finish(run_dir.path, completed=True)


def cmd_report(args: argparse.Namespace) -> int:
    from lcbench.analysis.report import write_report

    if not args.run_dir.is_dir():
        raise UserError(f"`{args.run_dir}` is not a run folder; give one written by `lcbench run`")
    write_report(args.run_dir)
    print(f"wrote {args.run_dir / 'summary.csv'} and {args.run_dir / 'report.md'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from lcbench.analysis.compare import compare

    if len(args.runs) < 2:
        raise UserError("give at least two run folders: the first is the reference")
    print(compare(args.runs, args.out), end="")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from lcbench.analysis.answer import Question, answer
    from lcbench.analysis.recommend import measured_length
    from lcbench.analysis.report import question_of
    from lcbench.analysis.runs import Run
    from lcbench.config.budget import Budget
    from lcbench.run.run_dir import RunDir

    if args.threshold is not None and not 0 < args.threshold < 1:
        raise UserError(f"--threshold must be a share in (0, 1), e.g. 0.9; got {args.threshold}")
    runs = [Run.load(path) for path in args.runs]
    for run in runs:  # every refusal before any answer
        measured_length(run, args.length)
    given = Budget(args.memory, args.latency, args.min_quality)
    for run in runs:
        suite = question_of(RunDir(run.path).suite_data if (run.path / "suite.json").is_file() else {})
        budgets = (given,) if given != Budget() else suite.budgets
        lengths = tuple(measured_length(run, args.length))
        question = Question(args.threshold or suite.threshold, budgets, lengths)
        env = run.env
        machine = f"{env.get('device')} ({env.get('gpu') or env.get('cpu')})"
        print(f"## {run.path}: suite {run.suite}, model {env.get('model')}, {machine}\n")
        print("\n".join(answer(run, question)))
    return 0


def cmd_regress(args: argparse.Namespace) -> int:
    from lcbench.analysis.regress import regress

    limits = {
        "throughput": args.throughput,
        "memory": args.memory,
        "memory_slack_mb": args.memory_slack_mb,
        "quality": args.quality,
    }
    findings, notes = regress(args.baseline, args.run, limits)
    for note in notes:
        print(note)
    for finding in findings:
        print(f"REGRESSED {finding}")
    print(f"{len(findings)} regression(s) against {args.baseline}" if findings else f"no regression against {args.baseline}")
    return 1 if findings else 0


COMMANDS = {
    "run": cmd_run,
    "validate": cmd_validate,
    "ls": cmd_ls,
    "data": cmd_data,
    "report": cmd_report,
    "collect": cmd_collect,
    "compare": cmd_compare,
    "regress": cmd_regress,
    "recommend": cmd_recommend,
}


if __name__ == "__main__":
    sys.exit(main())
