"""lcbench: long-context strategies for LLMs, with quality and cost measured in the same cell."""

__version__ = "0.1.0"
