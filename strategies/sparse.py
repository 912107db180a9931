"""`sparse`: the whole input, but each token attends only to the keys a pattern allows.

Patterns (`pattern`): `sink_window` (StreamingLLM: the first `sinks` tokens and a sliding
`window`; Xiao et al., 2023), `window` (a sliding window alone), `longformer` (window, sinks and
global tokens, by default the prompt's query; Beltagy et al., 2020), `bigbird` (local, seeded
random and global blocks; Zaheer et al., 2020), `strided` (a local window of `stride` plus every
`stride`-th key; Child et al., 2019) and `causal` (dense; a check). Prefill runs block by block
over only the allowed tiles (`path: blocks`, plain torch) or through compiled FlexAttention
(`path: flex`); neither builds an N x N matrix. Window patterns decode from a cache bounded to
sinks + window + globals, so memory and decode time stay flat as the input grows. `bigbird` and
`strided` decode from the whole cache, as `full` does: a BigBird query block's random blocks may
fall anywhere in the past, and strided keys are counted back from each query, so each next token
reads a different residue class of past positions (Sparse Transformers' "fixed" variant, with
absolute summary positions, could be bounded; this one cannot).

Every prefill call runs the named path, the chunks of a chunked prefill over the bounded cache
too (their keys, the kept sinks and window and the chunk, are taken by position). The record's
`extra` says what ran: `path_calls.<path>` (forward calls per path, decode steps included),
`prefill_calls`, `named_path_share` (the share of prefill calls on the named path; the report
flags a cell under 0.9), `compile_s` / `compiles` (calls that compiled a flex bucket or autotuned
or compiled a Triton kernel inside the generation: within `prefill_s` / `decode_s`) and
`precompile_s` (the kernels the generation will need, compiled and tuned before it: outside
`prefill_s` and `decode_s`, within the example's latency). Nothing is subtracted from any span.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from lcbench.errors import did_you_mean
from lcbench.model import Model
from lcbench.sparse import patterns as p
from lcbench.sparse.bounded_cache import BoundedCache
from lcbench.sparse.interface import AttentionShape, SparseCall, compiles, expected_calls, register, sparse_call, warm
from lcbench.strategies.base import Prediction, Strategy, Usage, framed
from lcbench.tasks.base import Example

PATTERNS = ("sink_window", "window", "longformer", "bigbird", "strided", "causal")
DEFAULT_WINDOW = 512
WINDOWED = ("sink_window", "window", "longformer")  # patterns whose decode needs a bounded set of keys
WHOLE_CACHE = {  # patterns whose decode may read any past key, and why
    "bigbird": "random blocks may fall anywhere in the past",
    "strided": "each next token reads every stride-th key counted back from itself",
}


@dataclass
class Sparse(Strategy):
    name: ClassVar[str] = "sparse"
    level: ClassVar = "attention"
    paths: ClassVar[tuple[str, ...]] = ("blocks", "flex")

    pattern: str = "sink_window"
    window: int | None = None  # sink_window, window, longformer: keys within this many positions back (512)
    budget_tokens: int | None = None  # or: the KV tokens a window pattern keeps, sinks + window (not both)
    sinks: int = 4  # sink_window, longformer: the first tokens, always attended
    global_query: bool = True  # longformer: the prompt's query tokens are global
    block: int = 64  # bigbird: block size in tokens
    local_blocks: int = 3  # bigbird: blocks on each side (causal: back) of a query's own
    random_blocks: int = 2  # bigbird: seeded random blocks per query block
    global_blocks: int = 1  # bigbird: leading blocks that attend and are attended everywhere
    stride: int = 128  # strided
    seed: int = 0
    tile: int = 128  # the compute block: tiles of tile x tile are visited or skipped whole
    path: str = "blocks"  # prefill: `blocks` (torch) or `flex` (compiled FlexAttention)
    bounded_cache: bool = True  # window patterns: decode from sinks + window + globals only
    prefill_chunk: int = 1024  # window patterns with the bounded cache: prompt tokens per forward (0: one pass)

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(did_you_mean(self.pattern, PATTERNS, "pattern"))
        if self.budget_tokens is not None:
            self.window = self.window_for_budget()
        elif self.window is None:
            self.window = DEFAULT_WINDOW
        positive = {"window": self.span, "block": self.block, "local_blocks": self.local_blocks, "stride": self.stride}
        for field_name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{field_name} must be a positive number, got {value}")
        for field_name, value in {
            "sinks": self.sinks,
            "random_blocks": self.random_blocks,
            "global_blocks": self.global_blocks,
            "prefill_chunk": self.prefill_chunk,
        }.items():
            if value < 0:
                raise ValueError(f"{field_name} must be 0 or more, got {value}")
        if self.tile < 16 or self.tile & (self.tile - 1):
            raise ValueError(f"tile must be a power of two of at least 16, got {self.tile}")
        if self.pattern == "bigbird" and self.block % self.tile and self.tile % self.block:
            raise ValueError(
                f"bigbird block {self.block} and tile {self.tile}: one must divide the other, e.g. block {self.tile}"
            )
        if self.path not in self.paths:
            raise ValueError(f"path must be {' or '.join(self.paths)}, got {self.path!r}")

    def window_for_budget(self) -> int:
        """The window that keeps `budget_tokens` KV tokens: the budget less the sinks the pattern keeps
        (a longformer's global query tokens come on top, as the question does for a KV method)."""
        assert self.budget_tokens is not None
        if self.window is not None:
            raise ValueError(
                f"set window or budget_tokens, not both (got {self.window} and {self.budget_tokens}): "
                "the budget is the sinks plus the window"
            )
        if self.pattern not in WINDOWED:
            raise ValueError(
                f"budget_tokens bounds the KV cache of {', '.join(WINDOWED)}; {self.pattern} keeps every key "
                f"({WHOLE_CACHE.get(self.pattern, 'it is dense')}): leave budget_tokens out"
            )
        sinks = self.kept_sinks()
        if self.budget_tokens <= sinks:
            raise ValueError(f"budget_tokens must exceed the {sinks} sinks it includes, got {self.budget_tokens}")
        return self.budget_tokens - sinks

    def kept_sinks(self) -> int:
        return 0 if self.pattern == "window" else self.sinks

    @property
    def span(self) -> int:
        """The window, resolved (the default, or what `budget_tokens` leaves after the sinks)."""
        assert self.window is not None
        return self.window

    def problems(self, context_lengths: Sequence[int]) -> list[str]:
        return []  # a window past the context is allowed: the record says it attends like full

    def unavailable_reason(self, model: Model) -> str | None:
        if not getattr(model.hf_model, "_supports_attention_backend", False):
            return (
                f"{type(model.hf_model).__name__} does not route attention through transformers' AttentionInterface, "
                "so sparse cannot replace its attention"
            )
        return None

    def mask(self, prompt_tokens: int, query_tokens: int) -> p.Mask:
        """The pattern for a prompt of `prompt_tokens` whose last `query_tokens` are the query."""
        if self.pattern == "window":
            return p.causal() & p.sliding_window(self.span)
        if self.pattern == "sink_window":
            return p.causal() & (p.sinks(self.sinks) | p.sliding_window(self.span))
        if self.pattern == "longformer":
            chosen = p.global_tokens(self.global_positions(prompt_tokens, query_tokens), prompt_tokens)
            return p.causal() & (p.sinks(self.sinks) | p.sliding_window(self.span) | chosen)
        if self.pattern == "bigbird":
            return p.causal() & p.block_sparse(self.block, self.local_blocks, self.random_blocks, self.global_blocks, self.seed)
        if self.pattern == "strided":
            return p.causal() & (p.sliding_window(self.stride) | p.strided(self.stride))
        return p.causal()

    def global_positions(self, prompt_tokens: int, query_tokens: int) -> list[int]:
        if self.pattern != "longformer" or not self.global_query:
            return []
        return list(range(prompt_tokens - query_tokens, prompt_tokens))

    def cache_for(self, model: Model, prompt_tokens: int, query_tokens: int) -> object | None:
        if self.pattern not in WINDOWED or not self.bounded_cache:
            return None  # the model's own cache, unbounded
        layers = model.hf_model.config.get_text_config().num_hidden_layers
        return BoundedCache(layers, self.kept_sinks(), self.span, self.global_positions(prompt_tokens, query_tokens))

    def chunk_for(self, cache: object | None) -> int:
        """Chunked prefill only where the cache is bounded: each chunk then attends to at most
        sinks + window + globals cached keys besides itself, so prefill memory stays flat."""
        if not isinstance(cache, BoundedCache) or cache.has_globals():
            return 0  # global query tokens at the prompt's end must see every key: one pass
        return self.prefill_chunk

    def call(self, prompt_tokens: int, query_tokens: int, cache: object | None) -> SparseCall:
        """The settings one generation runs with (the attention path, mask and cache)."""
        mask = self.mask(prompt_tokens, query_tokens)
        return SparseCall(mask, self.tile, self.path, cache, prompt_tokens=prompt_tokens)  # type: ignore[arg-type]

    def run(self, model: Model, example: Example) -> Prediction:
        """The prediction; its `prefill_s` and `decode_s` are `Model.generate`'s spans, which include
        any compiling and tuning left to the generation (`extra["compile_s"]`), and leave out what
        `warm` did before it (`extra["precompile_s"]`, within the latency)."""
        frame, context = framed(model, example), model.encode(example.context)
        prompt, new_tokens = frame(context), example.max_new_tokens(len(context))
        cache = self.cache_for(model, len(prompt), len(frame.after))
        call, chunk = self.call(len(prompt), len(frame.after), cache), self.chunk_for(cache)
        precompile_s = self.prepare(model, call, len(prompt), chunk, new_tokens)
        with sparse_call(call), model.attention(register()):
            generation = model.generate(prompt, new_tokens, cache=cache, prefill_chunk=chunk)
        extra = self.extra(call, cache, precompile_s)
        return Prediction(generation.text, Usage.of(generation), note=self.describe(call, len(prompt)), extra=extra)

    def prepare(self, model: Model, call: SparseCall, prompt_tokens: int, chunk: int, new_tokens: int) -> float:
        """Compile and tune before the generation what its calls will need, where the path compiles
        anything (flex; Triton unless interpreted); the seconds it took."""
        if not compiles(call.path):
            return 0.0
        return warm(call, attention_shape(model), expected_calls(call.cache, prompt_tokens, chunk, new_tokens))

    def extra(self, call: SparseCall, cache: object | None, precompile_s: float) -> dict[str, float]:
        """The record's counters: tiles, kept keys, calls per path, the named path's share of the
        prefill calls, and compile seconds inside and before the generation."""
        extra = {"tile_density": round(sum(call.tiles) / max(len(call.tiles), 1), 4)}
        if isinstance(cache, BoundedCache):
            extra["kv_cache_tokens"] = float(cache.kept_tokens())
            extra["budget_tokens"] = float(self.kept_sinks() + self.span)  # what budget-matched comparisons group by
        extra.update({f"path_calls.{path}": float(count) for path, count in sorted(call.ran.items())})
        extra["prefill_calls"] = float(sum(call.prefill.values()))
        extra["named_path_share"] = round(call.named_path_share(), 4)
        extra.update(compiles=float(len(call.compile_s)), compile_s=round(sum(call.compile_s), 3))
        extra["precompile_s"] = round(precompile_s, 3)
        if self.path == "flex":  # as records before `compiles` named it: flex buckets compiled inside the generation
            extra["flex_compiles"] = float(len(call.compile_s))
        return extra

    def describe(self, call: SparseCall, prompt_tokens: int) -> str:
        ran = ", ".join(f"{path} x{count}" for path, count in sorted(call.ran.items()))
        note = f"{call.mask.__name__}; attention ran: {ran}"
        if call.named_path_share() < 1:
            note += f"; {self.path} ran {call.prefill[self.path]} of {sum(call.prefill.values())} prefill calls"
        if self.pattern in WINDOWED and self.span >= prompt_tokens:
            note += f"; window {self.span} >= prompt {prompt_tokens} tokens: attends like full"
        if self.pattern in WHOLE_CACHE:
            note += f"; decode reads the whole KV cache ({WHOLE_CACHE[self.pattern]})"
        return note


def attention_shape(model: Model) -> AttentionShape:
    """The shapes, dtype, device and softmax scale of `model`'s attention calls."""
    config = model.hf_model.config.get_text_config()
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    scale = next((m.scaling for m in model.hf_model.modules() if isinstance(getattr(m, "scaling", None), float)), None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    return AttentionShape(heads, kv_heads, head_dim, model.hf_model.dtype, str(model.device), scale)
