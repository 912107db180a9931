"""`kv_quantized`: the whole input, its KV cache stored in 2 to 8 bits (transformers' QuantizedCache,
after KIVI): the most recent `residual_length` positions stay in the model's precision, the rest are
quantized in groups of `q_group_size`. Nothing is dropped; what it buys is bytes, what it costs is
the rounding error and the dequantization at every step.

Backends: `quanto` (optimum-quanto, 2 or 4 bits: `pip install 'lcbench[kvquant]'`), `hqq` (hqq, 1 to
8 bits: `pip install hqq`) and `fp8` (8-bit floats with one scale per tensor; needs only torch).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, ClassVar

from lcbench.errors import did_you_mean
from lcbench.model import Model
from lcbench.strategies.base import Prediction, Strategy, Usage, framed
from lcbench.tasks.base import Example

# backend -> (the module it imports, the bit widths transformers accepts for it, how to install it)
BACKENDS: dict[str, tuple[str | None, tuple[int, ...], str]] = {
    "quanto": ("optimum.quanto", (2, 4), "pip install 'lcbench[kvquant]'"),
    "hqq": ("hqq", (1, 2, 3, 4, 8), "pip install hqq"),
    "fp8": (None, (8,), ""),
}


@dataclass
class KvQuantized(Strategy):
    name: ClassVar[str] = "kv_quantized"
    level: ClassVar = "attention"

    backend: str = "quanto"
    nbits: int | None = None  # quanto: 2 or 4; hqq: 1, 2, 3, 4 or 8; fp8: 8; unset: 4 (fp8: 8)
    q_group_size: int = 64  # values sharing one scale and zero point (quanto, hqq)
    residual_length: int = 128  # most recent positions kept unquantized (quanto, hqq)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(did_you_mean(self.backend, BACKENDS, "backend"))
        widths = BACKENDS[self.backend][1]
        if self.nbits is None:
            self.nbits = 8 if self.backend == "fp8" else 4
        if self.nbits not in widths:
            raise ValueError(f"nbits for backend {self.backend} must be one of {list(widths)}, got {self.nbits}")
        if self.q_group_size < 1 or self.residual_length < 0:
            raise ValueError(
                f"q_group_size must be >= 1 and residual_length >= 0; got {self.q_group_size}, {self.residual_length}"
            )

    def unavailable_reason(self, model: Model) -> str | None:
        module, _, install = BACKENDS[self.backend]
        if module is not None and importlib.util.find_spec(module.split(".")[0]) is None:
            return f"backend {self.backend} needs {module.split('.')[-1]}, which is not installed; run: {install}"
        try:
            self.new_cache(model)
        except (ImportError, ValueError) as error:  # e.g. a model with sliding-window layers
            return f"transformers' QuantizedCache refuses this model: {error}"
        return None

    def new_cache(self, model: Model) -> Any:
        from transformers import QuantizedCache

        if self.backend == "fp8":  # one scale per tensor: no groups, no residual window
            return QuantizedCache("fp8", model.hf_model.config)
        return QuantizedCache(
            self.backend,
            model.hf_model.config,
            nbits=self.nbits,
            q_group_size=self.q_group_size,
            residual_length=self.residual_length,
        )

    def run(self, model: Model, example: Example) -> Prediction:
        context = model.encode(example.context)
        prompt = framed(model, example)(context)
        generation = model.generate(prompt, example.max_new_tokens(len(context)), cache=self.new_cache(model))
        return Prediction(generation.text, Usage.of(generation))
