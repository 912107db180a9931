"""`kv_compression`: the whole input, then a KV cache cut to a budget by a compression method
(SnapKV, H2O, TOVA, key-norm, StreamingLLM's sinks + recent), as kvpress's presses do.

The context is prefilled and scored, each layer keeps its budget of positions per KV head, and the
question is then read against the compressed cache (kvpress's question-agnostic setting);
`question_aware: true` compresses after the question instead (SnapKV's own setting). H2O and TOVA
also evict one position per decode step, so their cache never grows past the budget. The budget is
`compression_ratio` (the share of the prompt's cache dropped; 0.5 where neither is set) or
`budget_tokens` (KV positions kept per head and layer; not both), the same for every method, spread evenly or as a
PyramidKV taper (`schedule: pyramid`). Records carry the KV cache's own bytes at its peak (inside the
prefill, where each layer is cut as soon as its attention has scored it, so one layer at a time is
uncut) and while decoding; `extra` adds the bytes the budgets promise to keep (`kv_promised_bytes`:
per layer min(budget, scored tokens) positions per KV head, keys and values) and the storage held
at the end, spare room included (`kv_reserved_bytes`). H2O and TOVA hold the promise while
decoding; the other methods add each token read after the cut.

With several questions per context (shared-context mode, SCBench's multi-request mode) the context is
prefilled and compressed once, and each question is read from the compressed cache, which is put back
as the compression left it after each answer (H2O and TOVA evict while reading, so their kept entries
are copied once for that). `question_aware: true` compresses after each question: it re-reads the
input per question.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from lcbench.errors import did_you_mean
from lcbench.kv.compression import CompressedCache, KvCall, kv_call, layer_budgets, register
from lcbench.kv.methods import METHODS, KvMethod, build_method
from lcbench.model import Model
from lcbench.strategies.base import Prediction, Strategy, Usage, ask_in_turn, framed
from lcbench.tasks.base import Example


@dataclass
class KvCompression(Strategy):
    name: ClassVar[str] = "kv_compression"
    level: ClassVar = "attention"

    method: str = "snapkv"
    compression_ratio: float | None = None  # share of the cached prompt dropped, in [0, 1); 0.5 where neither is set
    budget_tokens: int | None = None  # or: KV positions kept per head and layer (not both), as sparse's budget_tokens
    schedule: str = "uniform"  # uniform, or pyramid (PyramidKV: 1.5x the budget at the bottom layer to 0.5x at the top)
    window: int = 64  # snapkv: observation window; h2o: recent positions always kept
    kernel: int = 5  # snapkv: pooling width along positions (odd)
    sinks: int = 4  # streaming: first positions always kept
    question_aware: bool = False  # compress after the question (SnapKV's setting), not before it

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(did_you_mean(self.method, METHODS, "method"))
        if self.budget_tokens is not None and self.compression_ratio is not None:
            raise ValueError(
                f"set compression_ratio or budget_tokens, not both (got {self.compression_ratio} and {self.budget_tokens}): "
                "a ratio is a share of each prompt, a budget a number of positions per KV head and layer"
            )
        if self.budget_tokens is not None:
            if self.budget_tokens <= 0:
                raise ValueError(f"budget_tokens must be a positive number of positions, got {self.budget_tokens}")
        else:
            if self.compression_ratio is None:
                self.compression_ratio = 0.5
            if not 0.0 <= self.compression_ratio < 1.0:
                raise ValueError(f"compression_ratio must be in [0, 1) (0 keeps everything), got {self.compression_ratio}")
        if self.schedule not in ("uniform", "pyramid"):
            raise ValueError(f"schedule must be uniform or pyramid, got {self.schedule!r}")
        if self.window < 1 or self.kernel < 1 or self.kernel % 2 == 0 or self.sinks < 0:
            raise ValueError(
                f"window must be >= 1, kernel odd and >= 1, sinks >= 0; got {self.window}, {self.kernel}, {self.sinks}"
            )

    def problems(self, context_lengths: Sequence[int]) -> list[str]:
        if self.budget_tokens is not None and context_lengths and self.budget_tokens >= max(context_lengths):
            longest = max(context_lengths)
            return [f"budget_tokens {self.budget_tokens} holds every context length (max {longest}): nothing is compressed"]
        return []

    def unavailable_reason(self, model: Model) -> str | None:
        if not getattr(model.hf_model, "_supports_attention_backend", False):
            return f"{type(model.hf_model).__name__} does not route attention through transformers' AttentionInterface"
        return None

    def budget(self, tokens: int) -> int:
        if self.budget_tokens is not None:
            return self.budget_tokens
        assert self.compression_ratio is not None
        if self.compression_ratio == 0.0:
            return sys.maxsize  # nothing dropped, not even while decoding: the cache of `full`
        return max(1, math.floor(tokens * (1.0 - self.compression_ratio)))

    def kv_method(self) -> KvMethod:
        """The method, with the settings it takes (the others' settings are left to them)."""
        return build_method(self.method, window=self.window, kernel=self.kernel, sinks=self.sinks)

    def run(self, model: Model, example: Example) -> Prediction:
        frame, context = framed(model, example), model.encode(example.context)
        head = frame.before + context
        prompt = frame(context)
        layers = model.hf_model.config.get_text_config().num_hidden_layers
        scored = len(prompt) if self.question_aware else len(head)
        cache = CompressedCache(layers)
        budgets = layer_budgets(self.budget(scored), layers, self.schedule)
        # each layer is cut as its attention scores the prefill, with room for the question read after it
        call = KvCall(self.kv_method(), budgets, cache, split=scored, headroom=max(1, len(prompt) - scored))
        with kv_call(call), model.attention(register()):
            generation = model.generate(
                prompt, example.max_new_tokens(len(context)), cache=cache, split_at=scored, at_split=call.compress
            )
        usage = Usage.of(generation)
        # the cache peaks inside the prefill's forward (one layer uncut), where the generation's reading cannot see
        usage = dataclasses.replace(usage, kv_peak_bytes=max(usage.kv_peak_bytes, call.peak_bytes, cache.held_bytes()))
        return Prediction(generation.text, usage, extra=self.kv_extra(call, scored))

    def run_questions(self, model: Model, example: Example) -> list[Prediction]:
        if self.question_aware:  # the cache is compressed for each question: nothing to share
            return super().run_questions(model, example)
        frame, context = framed(model, example), model.encode(example.context)
        head = frame.before + context
        layers = model.hf_model.config.get_text_config().num_hidden_layers
        cache = CompressedCache(layers)
        budgets = layer_budgets(self.budget(len(head)), layers, self.schedule)
        room = max(len(model.encode(question.after)) for question in example.asked())
        call = KvCall(self.kv_method(), budgets, cache, split=len(head), headroom=room)
        with kv_call(call), model.attention(register()):
            read = model.prefill(head, cache, at_split=call.compress)
            read = dataclasses.replace(read, kv_peak_bytes=max(read.kv_peak_bytes, call.peak_bytes, cache.held_bytes()))
            mark = call.mark()
            restore, measure = (lambda: call.rewind(mark)), (lambda: self.kv_extra(call, len(head)))
            return ask_in_turn(model, example, cache, read, len(context), restore, measure)

    def kv_extra(self, call: KvCall, scored: int) -> dict[str, float]:
        """What a record adds about the compression of a prefill of `scored` tokens, the cache as it is now."""
        layers = len(call.budgets)
        return {
            "budget_tokens": float(min(self.budget(scored), scored)),  # what budget-matched comparisons group by
            "kv_kept_tokens": round(sum(call.cache.layer(i).kept() for i in range(layers)) / layers, 1),
            "kv_evicted": float(call.evicted),
            "kv_promised_bytes": float(call.promised_bytes(scored)),
            "kv_reserved_bytes": float(call.cache.held_bytes()),  # the storage held at the end, spare room included
        }
