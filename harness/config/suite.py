"""The suite file: YAML validated into frozen, typed models that reject unknown keys.

Every problem in a file is collected and reported at once, each with its line, field, bad
value and fix. Strategy and task params are checked against their classes; no model is loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from lcbench.config.budget import Budget
from lcbench.config.suite_loader import DuplicateKeys, SuiteLoader
from lcbench.errors import UserError, did_you_mean
from lcbench.model import DTYPES
from lcbench.reference.models import REFERENCE
from lcbench.units import parse_length, parse_mb, parse_seconds

MAX_LENGTH = 1 << 24  # 16M tokens: beyond any model's context; larger is a typo
MAX_SAMPLES = 100_000
MAX_FILE_BYTES = 1 << 20
MAX_EXPANDED_NODES = 100_000  # values in a suite once YAML aliases are expanded


def context_length(value: Any) -> int:
    """A context length as a suite or `--lengths` writes it (4096, '4k'): a token count in (0, MAX_LENGTH]."""
    length = parse_length(value)
    if length <= 0:
        raise ValueError("a context length must be greater than 0 tokens; write a token count such as 4096 or 4k")
    if length > MAX_LENGTH:
        raise ValueError(f"a context length is at most {MAX_LENGTH} tokens (16M): a larger one is a typo; write e.g. 4096 or 4k")
    return length


def option_lengths(text: str, option: str = "--lengths") -> list[int]:
    """`--lengths 1k,4k` as token counts; a bad one is said as the option the user wrote, which
    replaces the suite's `context_lengths`, rather than as that key's line in the file."""
    lengths, problems = [], []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        try:
            lengths.append(context_length(item))
        except ValueError as exc:
            problems.append(f"{option} `{item}` (the run's context_lengths): {exc}")
    if not lengths and not problems:
        problems.append(f"{option} gives no length; write e.g. {option} 1k,4k")
    if problems:
        raise UserError(problems)
    return lengths


Length = Annotated[int, BeforeValidator(context_length)]


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PromptSpec(Frozen):
    """How tasks are asked (see `lcbench.prompt`); a task's own `prompt` overrides the suite's, key by key."""

    format: Literal["plain", "instruct", "chat", "auto"] | None = None  # None: auto
    template: str | None = None  # the instruct/chat prompt, naming {context} and {question}
    answer_prefix: str | None = None  # how the answer starts; may name {question} and the task's fields
    system: str | None = None  # chat: a system turn

    def over(self, base: PromptSpec) -> PromptSpec:
        """This spec's keys where set, `base`'s elsewhere."""
        return PromptSpec(**{**base.model_dump(), **self.model_dump(exclude_none=True)})


class TaskSpec(Frozen):
    name: str
    label: str | None = None
    params: dict[str, Any] = {}
    prompt: PromptSpec = PromptSpec()

    @property
    def key(self) -> str:
        """How records and tables name this task: its label, else the task's own name for these
        params (a data set's task names its set: `longbench/hotpotqa`)."""
        if self.label:
            return self.label
        from lcbench.registry import tasks

        return tasks()[self.name](**self.params).label()


class StrategySpec(Frozen):
    name: str
    label: str | None = None
    params: dict[str, Any] = {}

    @property
    def key(self) -> str:
        """How tables and records name this entry: its label, else its strategy name."""
        return self.label or self.name


class Measure(Frozen):
    warmup: int = Field(0, ge=0, le=100)  # untimed runs of the first example before a cell
    repeats: int = Field(1, ge=1, le=100)  # timed runs per example; quality from the first
    # an example's timing is noisy where the machine's probe ran slower than its quiet speed by more
    # than this share, or its repeats spread wider than it: flagged, and rerun by `--rerun noisy`
    noise: float = Field(0.5, gt=0, le=10)  # a 2-core VM times the same example +-15% quiet; a competing job 2x


class Sampling(Frozen):
    """Adaptive sampling (`samples: {min: 4, max: 64}`): every cell runs `min` examples, then more in
    rounds, only where a verdict of the answer is still open, up to `max` per cell."""

    min: int = Field(4, gt=1, le=MAX_SAMPLES)  # two at least: an interval needs a spread
    max: int = Field(64, gt=1, le=MAX_SAMPLES)
    # add no round that would end past this long after the run started (e.g. 4min); --time-budget overrides
    time_budget: Annotated[float, BeforeValidator(parse_seconds)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Sampling:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must be at most max ({self.max})")
        return self


def adaptive_samples(data: Any) -> Any:
    """`samples: {min, max}` sets `sampling` and makes `samples` the maximum (the size a cell is keyed by)."""
    if isinstance(data, dict) and isinstance(data.get("samples"), dict):
        sampling = Sampling.model_validate(data["samples"])
        return {**data, "samples": sampling.max, "sampling": sampling}
    return data


NonNegative = Annotated[float, Field(ge=0)]


class Regress(Frozen):
    """Tolerances of `lcbench regress` for this suite's runs."""

    throughput: NonNegative = 0.5  # relative slowdown allowed, against `full` in the same run
    memory: NonNegative = 0.5  # relative rise of peak memory allowed
    memory_slack_mb: NonNegative = 8.0  # absolute rise always allowed (RSS noise on small cells)
    quality: NonNegative = 0.0  # absolute drop of the headline metric allowed


MemoryBudget = Annotated[float, BeforeValidator(parse_mb)]
LatencyBudget = Annotated[float, BeforeValidator(parse_seconds)]


class Recommend(Frozen):
    """What the report's first screen answers: where strategies break, and the best within budgets."""

    breaks_below: Annotated[float, Field(gt=0, lt=1)] = 0.9  # share of a strategy's own quality at the shortest length
    memory: tuple[MemoryBudget, ...] = ()  # peak memory budgets, e.g. [5MB, 20MB]
    latency: tuple[LatencyBudget, ...] = ()  # per-example latency budgets, e.g. [1s]
    min_quality: float | None = None  # the headline quality a pick must reach

    def budgets(self) -> tuple[Budget, ...]:
        """Each memory budget, each latency budget, or every pair of them where both are given."""
        memory: tuple[float | None, ...] = self.memory or (None,)
        latency: tuple[float | None, ...] = self.latency or (None,)
        pairs = [Budget(m, t, self.min_quality) for m in memory for t in latency]
        return tuple(b for b in pairs if b.memory_mb is not None or b.latency_s is not None or b.min_quality is not None)


class Suite(Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    model: str = REFERENCE
    trust_remote_code: bool = False
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    dtype: Literal[DTYPES] = "auto"  # type: ignore[valid-type]
    # `auto`: a model larger than one GPU spread over every GPU this process sees (accelerate's device
    # map); each layer's cache lives on its layer's GPU. Unset: the whole model on `device`.
    device_map: Literal["auto"] | None = None
    seed: int = 0
    context_lengths: tuple[Length, ...] = Field(min_length=1)
    samples: int = Field(10, gt=0, le=MAX_SAMPLES)  # per cell; with `sampling`, the most per cell
    sampling: Sampling | None = None  # adaptive: set by `samples: {min, max}` or `lcbench run --settle`
    max_new_tokens: int | None = Field(None, gt=0)  # cap; by default the task bounds its output
    prompt: PromptSpec = PromptSpec()
    data_dir: str | None = None  # where data-set tasks find their files (relative paths resolve here)
    tasks: tuple[TaskSpec, ...] = Field(min_length=1)
    strategies: tuple[StrategySpec, ...] = Field(min_length=1)
    measure: Measure = Measure(warmup=0, repeats=1, noise=0.5)
    regress: Regress = Regress()
    recommend: Recommend = Recommend()
    output: str = "results"

    _adaptive = model_validator(mode="before")(adaptive_samples)

    @field_validator("context_lengths")
    @classmethod
    def _sorted_unique(cls, lengths: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(lengths)))

    def prompt_for(self, task: TaskSpec) -> PromptSpec:
        return task.prompt.over(self.prompt)

    def task_params(self, task: TaskSpec) -> dict[str, Any]:
        """The task's params, with the suite's `data_dir` for a data-set task that names none."""
        from lcbench.registry import tasks

        cls = tasks().get(task.name)
        wants_dir = cls is not None and any(f.name == "data_dir" for f in dataclasses.fields(cls))
        if wants_dir and self.data_dir and "data_dir" not in task.params:
            return {**task.params, "data_dir": self.data_dir}
        return dict(task.params)


def suite_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None, str]:
    """(data, node tree for line numbers, text). Only a `SafeLoader`: no Python object tags."""
    if not path.is_file():
        raise UserError(f"suite file `{path}` does not exist; `lcbench ls` lists the shipped suites")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise UserError(f"suite file is {path.stat().st_size} bytes; a suite is at most {MAX_FILE_BYTES}", source=str(path))
    text = path.read_text()
    try:
        node = yaml.compose(text, Loader=SuiteLoader)
        size = expanded_size(node)
        if size > MAX_EXPANDED_NODES:
            raise UserError(
                f"its aliases expand to {size} values (at most {MAX_EXPANDED_NODES}): an alias bomb or a mistake; "
                "write the values out or use fewer nested aliases",
                source=str(path),
            )
        data = yaml.safe_load(text)
    except DuplicateKeys as exc:
        raise UserError(exc.problems, source=str(path)) from None
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise UserError(
            f"{where}{exc.problem}: suites are plain YAML, read with `safe_load`, and no tag may build a Python object; "
            "remove the tag",
            source=str(path),
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise UserError(f"{where}malformed YAML: {exc.problem or exc}; fix the syntax there", source=str(path)) from None
    except yaml.YAMLError as exc:
        raise UserError(f"malformed YAML: {exc}", source=str(path)) from None
    if not isinstance(data, dict):
        raise UserError("a suite is a mapping of keys (name, context_lengths, tasks, strategies, ...)", source=str(path))
    return data, node, text


def expanded_size(node: yaml.Node | None, limit: int = MAX_EXPANDED_NODES) -> int:
    """How many values the document holds once every alias is expanded, counted without
    expanding (an alias is the same node object again), and capped just past `limit`."""
    sizes: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        sizes[id(n)] = 1  # a node reached again while being counted (a cycle) counts once
        if isinstance(n, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in n.value)
        elif isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(v) for v in n.value)
        else:
            total = 1
        sizes[id(n)] = min(total, limit + 1)
        return sizes[id(n)]

    return 0 if node is None else size(node)


def line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at `loc` (or of its nearest existing parent)."""
    line = None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            node = None
    return node.start_mark.line + 1 if node is not None else line


def dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for key in loc:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text or "(top level)"


def locate(node: yaml.Node | None, loc: tuple[Any, ...], message: str) -> str:
    line = line_of(node, loc)
    return f"{f'line {line}, ' if line else ''}`{dotted(loc)}`: {message}"


def schema_problems(error: ValidationError, node: yaml.Node | None, model: type[BaseModel]) -> list[str]:
    problems = []
    errors = error.errors()
    for item in errors:
        loc = tuple(k for k in item["loc"] if not (isinstance(k, str) and k.startswith("function-")))
        if item["type"] == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            known = list(parent.model_fields) if parent else []
            problems.append(locate(node, loc, did_you_mean(str(loc[-1]), known, "key") + "; remove or rename it"))
        elif item["type"] == "missing":
            problems.append(locate(node, loc, "required key is missing; add it"))
        elif item["type"] == "too_short" and _inside(item["loc"], errors):
            continue  # a list emptied by its own bad items: those are the problem, said beside it
        elif item["type"] == "too_short":
            problems.append(locate(node, loc, f"needs at least {item['ctx']['min_length']} entry; add one"))
        else:
            msg = item["msg"].removeprefix("Value error, ")
            said = isinstance(item["input"], str) and repr(item["input"]) in msg  # the message quotes it already
            got = "" if said else f" (got {item['input']!r})"
            problems.append(locate(node, loc, f"{msg}{got}"))
    return problems


def _inside(loc: tuple[Any, ...], errors: list[Any]) -> bool:
    """Whether any of `errors` lies within `loc` (an item of the list at `loc`, say)."""
    return any(len(other["loc"]) > len(loc) and other["loc"][: len(loc)] == loc for other in errors)


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class describing the mapping at `loc`, for listing its known keys."""
    current: Any = model
    for key in loc:
        if isinstance(key, int):
            continue
        field = current.model_fields.get(key) if isinstance(current, type) and issubclass(current, BaseModel) else None
        if field is None:
            return None
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        current = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def params_problems(cls: type, params: dict[str, Any], where: str) -> list[str]:
    """Check `params` against a dataclass's fields and types, then build it (runs its checks)."""
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in params if k not in known]
    if unknown:
        return [f"{where}: " + did_you_mean(k, known, f"param of `{cls.__name__}`") for k in unknown]
    try:
        TypeAdapter(cls).validate_python(params)
    except ValidationError as exc:
        out = []
        for item in exc.errors():
            field = ".".join(str(k) for k in item["loc"])
            msg = item["msg"].removeprefix("Value error, ")
            got = f" (got {item['input']!r})" if field else ""
            out.append(f"{where}{'.' + field if field else ''}: {msg}{got}")
        return out
    except (ValueError, TypeError) as exc:
        return [f"{where}: {exc}"]
    return []


def plugin_problems(
    task_specs: tuple[TaskSpec, ...],
    strategy_specs: tuple[StrategySpec, ...],
    lengths: tuple[int, ...],
    node: yaml.Node | None,
    prompt: PromptSpec = PromptSpec(),
) -> list[str]:
    """Names and params of tasks and strategies, checked against the registered classes, and the
    prompt templates against the fields each task fills."""
    from lcbench.prompt import template_problems
    from lcbench.registry import strategies, tasks

    problems: list[str] = []
    task_keys: dict[str, int] = {}
    for i, task in enumerate(task_specs):
        loc: tuple[Any, ...] = ("tasks", i)
        if task.name not in tasks():
            problems.append(locate(node, (*loc, "name"), did_you_mean(task.name, tasks(), "task")))
            continue
        found = params_problems(tasks()[task.name], task.params, locate(node, (*loc, "params"), "")[:-2])
        problems += found
        if not found:
            if task.key in task_keys:
                twice = f"`{task.key}` appears twice (also tasks[{task_keys[task.key]}]); give each a distinct `label`"
                problems.append(locate(node, loc, twice))
            task_keys.setdefault(task.key, i)
        for key in ("template", "answer_prefix"):
            text = getattr(task.prompt, key) or getattr(prompt, key)
            at = (*loc, "prompt", key) if getattr(task.prompt, key) else ("prompt", key)
            if text is not None:
                problems += [locate(node, at, p) for p in template_problems(text, tasks()[task.name].fields, key)]
    labels: dict[str, int] = {}
    for i, spec in enumerate(strategy_specs):
        loc = ("strategies", i)
        if spec.key in labels:
            twice = f"`{spec.key}` appears twice (also strategies[{labels[spec.key]}]); give each a distinct `label`"
            problems.append(locate(node, loc, twice))
        labels.setdefault(spec.key, i)
        if spec.name not in strategies():
            problems.append(locate(node, (*loc, "name"), did_you_mean(spec.name, strategies(), "strategy")))
            continue
        cls = strategies()[spec.name]
        where = locate(node, (*loc, "params"), "")[:-2]
        found = params_problems(cls, spec.params, where)
        if not found:
            found = [f"{where}: {p}" for p in cls(**spec.params).problems(lengths)]
        problems += found
    return problems


def model_problems(suite: Suite, node: yaml.Node | None) -> list[str]:
    from lcbench.model import check_model_dir, resolve_model

    if suite.model == REFERENCE:
        return []
    try:
        path = resolve_model(suite.model)
    except UserError as exc:
        return [locate(node, ("model",), p) for p in exc.problems]
    return [locate(node, ("model",), p) for p in check_model_dir(path, suite.trust_remote_code)]


def _lenient(annotation: Any, value: Any, default: Any) -> Any:
    """`value` validated as `annotation`, or `default` where it is invalid (reported elsewhere)."""
    try:
        return TypeAdapter(annotation).validate_python(value)
    except ValidationError:
        return default


def validate(data: dict[str, Any], node: yaml.Node | None = None, source: str | None = None) -> Suite:
    """The suite, or a `UserError` listing every problem: schema, plugins and model at once."""
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        # Check what did parse too, so one run of `validate` shows every mistake in the file.
        problems = schema_problems(exc, node, Suite)
        problems += plugin_problems(
            _lenient(tuple[TaskSpec, ...], data.get("tasks", ()), ()),
            _lenient(tuple[StrategySpec, ...], data.get("strategies", ()), ()),
            _lenient(tuple[Length, ...], data.get("context_lengths", ()), ()),
            node,
        )
        raise UserError(problems, source=source) from None
    problems = plugin_problems(suite.tasks, suite.strategies, suite.context_lengths, node, suite.prompt)
    problems += model_problems(suite, node)
    if problems:
        raise UserError(problems, source=source)
    return suite


def load_suite(path: str | Path, **overrides: Any) -> tuple[Suite, str]:
    """(suite, hash of its file). `overrides` replace top-level keys (from the command line)."""
    path = Path(path)
    data, node, text = read_yaml(path)
    data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    return validate(data, node, str(path)), suite_hash(text)
