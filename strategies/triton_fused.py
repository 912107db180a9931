"""`triton_fused`: the `sparse` patterns computed by lcbench's own Triton kernels.

Prefill runs `kernels/block_sparse_attention.py` (one fused kernel that skips disallowed tiles
and never writes scores to memory); each decode step runs `kernels/decode_attention.py`
(split-K flash-decoding over the, for window patterns bounded, cache). Same settings as
`sparse`. Without CUDA the cell is recorded `unavailable`, never silently run another way;
`TRITON_INTERPRET=1` runs the kernels through Triton's interpreter on CPU, for debugging on
tiny inputs (its times are not performance figures).

Every prefill call runs the fused kernel, each chunk of a chunked prefill over the bounded cache
too (the kept sinks and window are taken by position). Before each generation the kernels it will
need are autotuned and compiled (`interface.warm`: one call per autotune key, the prefill
kernel's power-of-two bucket of the call's length and the decode kernel's of the cache's), so the
first example's `prefill_s` and `decode_s` hold no tuning; `extra["precompile_s"]` says what that
took, `extra["compile_s"]` what tuning or compiling was left inside the generation (nothing is
subtracted from any span). The interpreter compiles and tunes nothing, so nothing is warmed there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lcbench.kernels.launch import HEAD_DIMS, interpreting, triton_missing
from lcbench.model import Model
from lcbench.sparse.interface import SparseCall
from lcbench.strategies.sparse import Sparse


@dataclass
class TritonFused(Sparse):
    name: ClassVar[str] = "triton_fused"
    paths: ClassVar[tuple[str, ...]] = ("triton",)

    path: str = "triton"
    tile: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pattern == "bigbird" and self.block % self.tile:
            raise ValueError(
                f"triton_fused needs tile {self.tile} to divide the bigbird block {self.block}: set tile to {self.block} or less"
            )

    def unavailable_reason(self, model: Model) -> str | None:
        reason = super().unavailable_reason(model) or triton_missing()
        if reason:
            return reason
        if not model.device.startswith("cuda") and not interpreting():
            return (
                f"triton_fused runs Triton kernels on a CUDA GPU and this run is on {model.device}; "
                "TRITON_INTERPRET=1 runs them through Triton's interpreter (slow: tiny inputs, for debugging)"
            )
        config = model.hf_model.config.get_text_config()
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        if head_dim not in HEAD_DIMS:
            return f"triton_fused kernels take head dims {', '.join(map(str, HEAD_DIMS))}; this model's is {head_dim}"
        return None

    def call(self, prompt_tokens: int, query_tokens: int, cache: object | None) -> SparseCall:
        from lcbench.kernels.block_sparse_attention import NO_LIMIT, ElementMask

        globals_ = self.global_positions(prompt_tokens, query_tokens)
        element_mask = {
            "window": ElementMask(window=self.window),
            "sink_window": ElementMask(window=self.window, sinks=self.sinks),
            "longformer": ElementMask(window=self.window, sinks=self.sinks, global_positions=globals_, length=prompt_tokens),
            "strided": ElementMask(window=self.stride, stride=self.stride),
        }.get(self.pattern, ElementMask(window=NO_LIMIT))
        mask = self.mask(prompt_tokens, query_tokens)
        return SparseCall(mask, self.tile, "triton", cache, element_mask, prompt_tokens=prompt_tokens)

    def describe(self, call: SparseCall, prompt_tokens: int) -> str:
        note = super().describe(call, prompt_tokens) + f"; triton configs: {', '.join(sorted(call.configs))}"
        return note + ("; Triton interpreter: times are not performance figures" if interpreting() else "")
