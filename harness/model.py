"""The model adapter: a local Hugging Face causal LM and its tokenizer, greedy decoding with a KV
cache, prefill and decode timed apart, and a way to run calls with another attention function.

Nothing is fetched from a hub: paths are local, Hugging Face runs offline, and remote code is
refused unless the suite allows it.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import inspect
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lcbench.errors import UserError
from lcbench.model_files import architecture_problems, tokenizer_problems, weight_problems

DTYPES = ("auto", "float32", "float16", "bfloat16")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def go_offline() -> None:
    """Make any accidental hub access fail fast instead of reaching the network."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    new_tokens: int  # includes the first token, produced by the prefill
    prefill_s: float  # time to first token
    decode_s: float  # the remaining new_tokens - 1 steps
    logprob: float = 0.0  # sum of the chosen tokens' log-probabilities: the model's confidence
    kv_peak_bytes: int = 0  # the KV cache's own size at its largest during this call
    kv_decode_bytes: int = 0  # its size at the last decode step
    attention: str = ""  # the attention implementation the call ran with (sdpa, flash_attention_2, lcbench_sparse, ...)


def cache_bytes(cache: Any) -> int:
    """The bytes a KV cache's tensors hold (keys and values of every layer), in whatever form a layer
    stores them: plain tensors, or a quantized cache's packed data with its scales and zero points."""
    return sum(
        _stored_bytes(getattr(layer, field, None))
        for layer in getattr(cache, "layers", ())
        for field in ("keys", "values", "_quantized_keys", "_quantized_values")
    )


def _stored_bytes(held: Any) -> int:
    import torch

    if isinstance(held, torch.Tensor):
        # A tensor subclass (a quantized tensor) is the sum of the tensors it is made of.
        inner = getattr(held, "__tensor_flatten__", None)
        if inner is not None and type(held) is not torch.Tensor:
            return sum(_stored_bytes(getattr(held, name)) for name in inner()[0])
        return int(held.nbytes)
    if isinstance(held, dict):
        return sum(_stored_bytes(value) for value in held.values())
    if isinstance(held, (list, tuple)):
        return sum(_stored_bytes(value) for value in held)
    return 0


def rewinder(cache: Any) -> Callable[[], None]:
    """A function that puts `cache` back as it is now, once more tokens have been read into it: cut back
    to its present length where every layer can be (transformers' full-attention layers), else a copy of
    its layers put back (a sliding-window layer drops what a cut would need)."""
    import torch

    length = cache.get_seq_length()
    if all(getattr(layer, "is_croppable", False) and not getattr(layer, "is_sliding", False) for layer in cache.layers):

        def crop() -> None:
            if cache.get_seq_length() > length:
                with torch.inference_mode():
                    cache.crop(length - cache.get_seq_length())  # a negative count: that many tokens removed

        return crop
    with torch.inference_mode():
        saved = copy.deepcopy(cache.layers)

    def put_back() -> None:
        with torch.inference_mode():
            cache.layers = copy.deepcopy(saved)

    return put_back


HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?")


@functools.cache
def resolve_model(model: str) -> Path:
    """A suite's or `--model`'s model as a folder: a local folder as it is, or a Hugging Face hub
    id (`org/name`, `org/name@revision`) from the local Hugging Face cache. lcbench never
    downloads at run time: a hub model not in the cache is a clear error with the command that
    fetches it."""
    local = Path(model).expanduser()
    match = HUB_ID.fullmatch(model)
    if local.exists() or match is None:
        return local
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo, revision = match.group("repo"), match.group("revision")
    try:
        return Path(snapshot_download(repo, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        fetch = f"hf download {repo}" + (f" --revision {revision}" if revision else "")
        raise UserError(
            f"model `{model}` is neither a local folder nor in the Hugging Face cache (`{constants.HF_HUB_CACHE}`); "
            f"lcbench does not download at run time: fetch it once with `{fetch}` (pip install huggingface_hub), "
            "or give the folder it is saved in"
        ) from None


def check_model_dir(path: Path, trust_remote_code: bool = False) -> list[str]:
    """Problems that make `path` unusable as a local model, each with its fix."""
    if not path.exists():
        return [f"model path `{path}` does not exist; give a local Hugging Face model folder or `reference`"]
    if not path.is_dir() or not (path / "config.json").is_file():
        return [f"model path `{path}` is not a model folder (no config.json); give a folder saved by `save_pretrained`"]
    problems = []
    if not any((path / f).exists() for f in WEIGHT_FILES):
        problems.append(f"model folder `{path}` has no weights ({', '.join(WEIGHT_FILES)}); save the model there")
    if not any((path / f).exists() for f in TOKENIZER_FILES):
        problems.append(f"model folder `{path}` has no tokenizer; save one with `tokenizer.save_pretrained`")
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        return [*problems, f"model folder `{path}`: config.json is not valid JSON ({exc}); download or save the model again"]
    if "auto_map" in config and not trust_remote_code:
        problems.append(
            f"model folder `{path}` asks for remote code (auto_map in config.json); "
            "set `trust_remote_code: true` in the suite only if you trust that code"
        )
    elif "auto_map" not in config:  # remote code brings its own architecture
        problems += architecture_problems(path, config)
    return problems + weight_problems(path)


def load_tokenizer(path: Path, trust_remote_code: bool = False) -> Any:
    """The tokenizer as saved, or a `UserError` naming the file that keeps it from loading."""
    try:
        return _load_tokenizer(path, trust_remote_code)
    except Exception as exc:  # a damaged file fails deep in transformers or tokenizers, as any type (tokenizers: `Exception`)
        detail = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
        again = "save it again with `tokenizer.save_pretrained`"
        raise UserError(tokenizer_problems(path) or f"the tokenizer in `{path}` does not load ({detail}); {again}") from None


def _load_tokenizer(path: Path, trust_remote_code: bool) -> Any:
    """A plain `tokenizers` file saved through the generic class is loaded as such: `AutoTokenizer`
    would otherwise pick the architecture's own class (Qwen2's byte-level BPE, say), which re-reads
    a word-level vocabulary wrongly and drops every word."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    config_file = path / "tokenizer_config.json"
    saved_class = json.loads(config_file.read_text()).get("tokenizer_class") if config_file.is_file() else None
    if saved_class in ("TokenizersBackend", "PreTrainedTokenizerFast") and (path / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
    return AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)


def register_attention(name: str, attention: Any, mask: Any | None = None) -> None:
    """Register an attention function under `name` for `Model.attention(name)`.

    transformers builds the mask from `AttentionMaskInterface` under the same name: without a
    mask registered there, causal masking would silently be lost. `mask` defaults to the SDPA
    mask builder (a boolean causal mask, or None where `is_causal` suffices).
    """
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(name, attention)
    AttentionMaskInterface.register(name, mask if mask is not None else sdpa_mask)


T = TypeVar("T")


@contextlib.contextmanager
def active(setting: contextvars.ContextVar[T], value: T) -> Iterator[T]:
    """`setting` holds `value` inside: how a registered attention function learns its call's settings."""
    token = setting.set(value)
    try:
        yield value
    finally:
        setting.reset(token)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device `{device}` was asked for but CUDA is not available here; use `--device cpu`")
    return device


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, dtype)


def synchronize(device: str) -> None:
    """Wait for queued device work, so that the clock reads finished work."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def greedy(logits: Any) -> tuple[int, float]:
    """The most likely next token and its log-probability, from one position's logits."""
    import torch

    logprobs = torch.log_softmax(logits.float(), dim=-1)
    token = int(logprobs.argmax())
    return token, float(logprobs[token])


class Model:
    """A loaded causal LM. `generate` is greedy with a KV cache."""

    def __init__(self, hf_model: Any, tokenizer: Any, device: str, name: str) -> None:
        self.hf_model = hf_model
        self.tokenizer = tokenizer
        self.device = device
        self.name = name
        config_eos = hf_model.generation_config.eos_token_id if hf_model.generation_config else None
        eos = config_eos if config_eos is not None else tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        # transformers renamed `past_key_values` to `cache`; speak whichever this version knows.
        forward_params = inspect.signature(hf_model.forward).parameters
        self._cache_keyword = "cache" if "cache" in forward_params else "past_key_values"
        self._kept: list[tuple[list[int], Generation]] | None = None

    def new_cache(self) -> Any:
        """An empty KV cache for one generation."""
        from transformers import DynamicCache

        return DynamicCache(config=self.hf_model.config)

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        device_map: str | None = None,
    ) -> Model:
        """The model in `path` on `device`; `device_map="auto"` spreads its layers over every visible
        GPU (inputs then go to the first layer's device, `hf_model.device`)."""
        go_offline()
        path = Path(path)
        problems = check_model_dir(path, trust_remote_code)
        if problems:
            raise UserError(problems)
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # lcbench shows its own progress
        device = resolve_device(device)
        tokenizer = load_tokenizer(path, trust_remote_code)
        # On a GPU the weights load straight onto it (accelerate's device map): loading on the host
        # first would cost host RAM the model's size, again for every replaced worker.
        if device_map is not None and not device.startswith("cuda"):
            raise UserError(f"device_map: {device_map} spreads a model over GPUs and this run is on `{device}`; drop it on a CPU")
        placement = {"device_map": device_map or device} if device.startswith("cuda") else {}
        hf_model = AutoModelForCausalLM.from_pretrained(
            path,
            local_files_only=True,
            trust_remote_code=trust_remote_code,
            dtype=resolve_dtype(dtype, device),
            attn_implementation="sdpa",
            **placement,
        )
        if not placement:
            hf_model.to(device)  # type: ignore[arg-type]
        hf_model.eval()
        if device_map is not None:
            device = str(hf_model.device)  # where inputs go: the embedding's GPU
        return cls(hf_model, tokenizer, device, path.name)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def decode_all(self, ids: list[int]) -> str:
        """The text of `ids` with special tokens written out: a prompt exactly as the model read it."""
        return str(self.tokenizer.decode(ids, skip_special_tokens=False))

    @contextlib.contextmanager
    def keeping_calls(self, calls: list[tuple[list[int], Generation]] | None) -> Iterator[None]:
        """Append every call made inside, its prompt and its generation, to `calls` (None: keep nothing)."""
        self._kept = calls
        try:
            yield
        finally:
            self._kept = None

    def generate(
        self,
        prompt: list[int],
        max_new_tokens: int,
        cache: Any | None = None,
        prefill_chunk: int = 0,
        split_at: int = 0,
        at_split: Callable[[], None] | None = None,
    ) -> Generation:
        """Greedy decoding: a prefill over `prompt`, then one token at a time from the cache
        (`cache`, empty, where a strategy brings its own, e.g. a bounded one). A `prefill_chunk`
        feeds the prompt that many tokens per forward call: with a bounded cache, prefill memory
        then stays flat in the prompt length. `at_split` runs once the first `split_at` tokens are in
        the cache (0: once the whole prompt is; never where `split_at` is past its end): the prefill
        is cut there, so a strategy can change the cache before the rest of the prompt is read (KV
        compression prunes it after the context, before the question). It counts as prefill time."""
        import torch

        if not prompt:
            raise ValueError("cannot generate from an empty prompt")
        with torch.inference_mode():
            synchronize(self.device)
            start = time.perf_counter()
            kv = self.new_cache() if cache is None else cache  # filled in place by every call
            out, peak = self._read(prompt, kv, prefill_chunk, split_at, at_split)
            token, logprob = greedy(out.logits[0, -1])
            synchronize(self.device)
            first = time.perf_counter()
            new = [token]
            while len(new) < max_new_tokens and token not in self.eos_ids:
                token, step_logprob = self.step(token, kv)
                logprob += step_logprob
                new.append(token)
            synchronize(self.device)
            end = time.perf_counter()
            decode_bytes = cache_bytes(kv)
        text_ids = [t for t in new if t not in self.eos_ids]
        generation = Generation(
            self.decode(text_ids),
            len(prompt),
            len(new),
            first - start,
            end - first,
            logprob,
            max(peak, decode_bytes),
            decode_bytes,
            str(self.hf_model.config._attn_implementation),
        )
        if self._kept is not None:
            self._kept.append((list(prompt), generation))
        return generation

    def step(self, token: int, cache: Any) -> tuple[int, float]:
        """One decode step: `token` read into `cache`; the next token (greedy) and its log-probability.
        Called under `torch.inference_mode()`, as `generate` calls it."""
        import torch

        out = self.hf_model(input_ids=torch.tensor([[token]], device=self.device), use_cache=True, **{self._cache_keyword: cache})
        return greedy(out.logits[0, -1])

    def _read(
        self, prompt: list[int], kv: Any, prefill_chunk: int, split_at: int, at_split: Callable[[], None] | None
    ) -> tuple[Any, int]:
        """The prefill: `prompt` into the cache `kv`, `prefill_chunk` tokens per forward (0: at once),
        cut at `split_at` for `at_split`; returns the last forward's output and the cache's peak bytes."""
        import torch

        step_size = prefill_chunk if prefill_chunk > 0 else len(prompt)
        cuts = sorted(
            {*range(step_size, len(prompt), step_size), len(prompt)} | ({split_at} if 0 < split_at < len(prompt) else set())
        )
        begin, peak, out = 0, 0, None
        for end_at in cuts:
            ids = torch.tensor([prompt[begin:end_at]], device=self.device)
            out = self.hf_model(input_ids=ids, use_cache=True, logits_to_keep=1, **{self._cache_keyword: kv})
            peak = max(peak, cache_bytes(kv))
            if at_split is not None and end_at == (split_at or len(prompt)):
                at_split()
            begin = end_at
        return out, peak

    def prefill(self, prompt: list[int], cache: Any, split_at: int = 0, at_split: Callable[[], None] | None = None) -> Generation:
        """`prompt` read into `cache` and nothing generated: a context that several questions then
        read from the same cache (`generate` with that cache, one question each). The `Generation`
        has no new tokens; its prefill seconds are the read's. `split_at` and `at_split` as in `generate`."""
        import torch

        if not prompt:
            raise ValueError("cannot prefill an empty prompt")
        with torch.inference_mode():
            synchronize(self.device)
            start = time.perf_counter()
            _, peak = self._read(prompt, cache, 0, split_at, at_split)
            synchronize(self.device)
            seconds = time.perf_counter() - start
        held = cache_bytes(cache)
        attention = str(self.hf_model.config._attn_implementation)
        generation = Generation("", len(prompt), 0, seconds, 0.0, 0.0, max(peak, held), held, attention)
        if self._kept is not None:
            self._kept.append((list(prompt), generation))
        return generation

    @contextlib.contextmanager
    def attention(self, implementation: str) -> Iterator[None]:
        """Run the calls inside with another attention function, registered beforehand with
        transformers' `AttentionInterface` (and `AttentionMaskInterface` for its mask)."""
        previous = self.hf_model.config._attn_implementation
        self.hf_model.set_attn_implementation(implementation)
        try:
            yield
        finally:
            self.hf_model.set_attn_implementation(previous)
