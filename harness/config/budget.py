"""A budget the answer picks within: peak memory, latency per example and a quality floor."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    memory_mb: float | None = None
    latency_s: float | None = None
    min_quality: float | None = None

    def admits(self, memory_mb: float | None, latency_s: float | None, quality: float) -> bool:
        """Whether a strategy with these costs and headline quality fits (an unmeasured cost does not)."""
        for limit, cost in ((self.memory_mb, memory_mb), (self.latency_s, latency_s)):
            if limit is not None and (cost is None or cost > limit):
                return False
        return self.min_quality is None or quality >= self.min_quality

    def text(self) -> str:
        parts = [f"peak memory <= {self.memory_mb:g} MB"] if self.memory_mb is not None else []
        parts += [f"latency <= {self.latency_s:g} s"] if self.latency_s is not None else []
        parts += [f"quality >= {self.min_quality:g}"] if self.min_quality is not None else []
        return ", ".join(parts) or "no budget"
