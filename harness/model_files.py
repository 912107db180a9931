"""A model folder's files checked before anything loads them: weights cut short by an interrupted
download or copy, a damaged tokenizer file, and an architecture this transformers does not know.

Each check reads headers only (a safetensors file's JSON header is a few KB at the front of a file
of gigabytes), so `lcbench validate` and the run's preflight cost no weight loading. Each problem
is one line: the file, what is wrong with it and the fix.
"""

from __future__ import annotations

import difflib
import json
import struct
from pathlib import Path
from typing import Any

SAFETENSORS_INDEX = "model.safetensors.index.json"
TOKENIZER_JSON = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json")
MAX_HEADER_BYTES = 100 << 20  # the safetensors library refuses larger headers: a larger length is damage
AGAIN = "download or save the model again"
INTERRUPTED = "an interrupted download or copy"


def weight_problems(path: Path) -> list[str]:
    """The safetensors files transformers would read from `path`: the single file and every shard
    its index names."""
    files = [path / "model.safetensors"] if (path / "model.safetensors").is_file() else []
    index = path / SAFETENSORS_INDEX
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            return [f"`{index}` is not a safetensors index ({type(exc).__name__}: {exc}); {AGAIN}"]
        missing = [name for name in shards if not (path / name).is_file()]
        if missing:
            return [f"`{path / missing[0]}` is missing ({len(missing)} of the {len(shards)} files {index.name} names); {AGAIN}"]
        files += [path / name for name in shards]
    return [problem for file in files if (problem := safetensors_problem(file))]


def safetensors_problem(file: Path) -> str | None:
    """What is wrong with a safetensors file's layout, or None: an 8-byte header length, a JSON
    header, then the tensors' bytes, whose offsets end exactly at the end of the file."""
    size = file.stat().st_size
    with file.open("rb") as handle:
        head = handle.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        if len(head) < 8 or 8 + length > size or length > MAX_HEADER_BYTES:
            return f"`{file}` is cut short ({size} bytes, less than its own header): {INTERRUPTED}; {AGAIN}"
        try:
            header = json.loads(handle.read(length))
            end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return f"`{file}` has a damaged header (not the JSON of a safetensors file); {AGAIN}"
    expected = 8 + length + end
    if size < expected:
        return f"`{file}` is cut short ({size} of the {expected} bytes its header describes): {INTERRUPTED}; {AGAIN}"
    if size > expected:
        return f"`{file}` has {size - expected} bytes past the tensors its header describes: a damaged file; {AGAIN}"
    return None


def architecture_problems(path: Path, config: dict[str, Any]) -> list[str]:
    """A `model_type` transformers has no class for, or no causal-LM class for."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    kind = config.get("model_type")
    file = path / "config.json"
    if not isinstance(kind, str) or not kind:
        return [f"`{file}` has no `model_type`, so transformers cannot tell its architecture; {AGAIN} with `save_pretrained`"]
    if kind not in CONFIG_MAPPING_NAMES:
        close = difflib.get_close_matches(kind, list(CONFIG_MAPPING_NAMES), n=1)
        hint = f" (did you mean `{close[0]}`?)" if close else ""
        return [
            f"`{file}`: model_type `{kind}` is not an architecture transformers {transformers.__version__} knows{hint}; "
            "correct it, or upgrade transformers (`pip install -U transformers`) if the model is newer"
        ]
    if kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return [f"`{file}`: model_type `{kind}` has no causal-LM class in transformers; lcbench runs decoder-only models"]
    return []


def tokenizer_problems(path: Path) -> list[str]:
    """The tokenizer's JSON files that do not parse: what makes a tokenizer fail to load, named."""
    problems = []
    for name in TOKENIZER_JSON:
        file = path / name
        if not file.is_file():
            continue
        try:
            json.loads(file.read_bytes())
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both
            problems.append(
                f"`{file}` is not valid JSON ({exc}): a damaged or cut-short file; "
                "download it again or save the tokenizer again with `tokenizer.save_pretrained`"
            )
    return problems
