"""Shared fixtures: tiny models built in code (no download), saved as real model folders."""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Reports without their PNGs (a third of a second a figure, four a task): the tests that check
# plots ask for them with the `plots` fixture
os.environ.setdefault("LCBENCH_PLOTS", "0")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# Without a GPU the Triton kernels run through Triton's interpreter, which must be chosen before
# Triton is first imported: here, before any test module loads.
if not _has_cuda():
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parent.parent
SUITES = sorted((ROOT / "suites").glob("*.yaml"))
ARCHS = ["llama", "qwen2", "smollm3"]


@pytest.hookimpl(optionalhook=True)  # known only where xdist is loaded
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """With `pytest -n N`: each test goes to whichever worker is free, except that a file with a
    module-scoped fixture (a Ray cluster, a loaded model) stays on one worker, which builds it
    once. (xdist's `loadgroup` marks do not take under pytest 9: the group never reaches the node id.)"""
    from xdist.scheduler import LoadScopeScheduling

    class EachTestUnlessShared(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return file if shares_a_module_fixture(file) else nodeid

    return EachTestUnlessShared(config, log)


def real_slurm_here() -> bool:
    """Whether tests/local_slurm.sh can start a real Slurm cluster here: its daemons installed, as root."""
    return os.getuid() == 0 and all(shutil.which(n) for n in ("slurmctld", "slurmd", "sbatch", "munged"))


@functools.cache
def shares_a_module_fixture(file: str) -> bool:
    return 'scope="module"' in (ROOT / file).read_text()


@pytest.fixture
def plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reports draw their plots, as they do by default outside the tests."""
    monkeypatch.setenv("LCBENCH_PLOTS", "1")


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from lcbench.reference.tiny_model import save_tiny_model

    root = tmp_path_factory.mktemp("models")
    return {arch: save_tiny_model(root / arch, arch) for arch in ARCHS}


@pytest.fixture(scope="session")
def tiny_dir(tiny_dirs: dict[str, Path]) -> Path:
    return tiny_dirs["llama"]


@pytest.fixture(scope="session", params=ARCHS)
def tiny_model(request: pytest.FixtureRequest, tiny_dirs: dict[str, Path]):
    from lcbench.model import Model

    return Model.load(tiny_dirs[request.param], device="cpu")


@pytest.fixture(scope="session")
def llama(tiny_dir: Path):
    from lcbench.model import Model

    return Model.load(tiny_dir, device="cpu")


def write_suite(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def suite_file(tmp_path: Path, tiny_dir: Path):
    """A factory: a small valid suite on the tiny model; extra YAML lines are appended, and replace
    the defaults they name."""

    def make(extra: str = "", strategies: str | None = None) -> Path:
        strategies = strategies or "  - name: full\n  - {name: truncation, label: trunc-48, params: {budget: 48}}\n"
        defaults = [
            "name: t",
            f"model: {tiny_dir}",
            "device: cpu",
            "context_lengths: [64, 96]",
            "samples: 2",
            "prompt: {format: plain}",  # lengths this short hold no instruct prompt (test_prompts.py asks those)
            "tasks: [{name: needle}]",
            f"strategies:\n{strategies.rstrip()}",
            f"output: {tmp_path / 'results'}",
        ]
        given = {line.split(":", 1)[0] for line in extra.splitlines() if line[:1].isalpha()}
        kept = [line for line in defaults if line.split(":", 1)[0] not in given]  # a suite names each key once
        text = "# a small suite for tests\n" + "\n".join(kept) + "\n" + extra
        return write_suite(tmp_path / "suite.yaml", text)

    return make


@pytest.fixture(scope="session")
def reference():
    """The shipped translation model, loaded exactly as `model: reference` loads it for mt."""
    from lcbench.model import Model
    from lcbench.reference.models import reference_dir

    return Model.load(reference_dir("mt"), device="cpu")


@pytest.fixture(scope="session")
def lookup():
    """The shipped look-up model (the answer families), loaded as `model: reference` loads it."""
    from lcbench.model import Model
    from lcbench.reference.models import reference_dir

    return Model.load(reference_dir("needle"), device="cpu")


def train_bpe(texts: list[str], vocab_size: int = 600):
    """A byte-level BPE trained here on `texts` (small: words split into several pieces), with a
    ChatML chat template: the subword tokenizer the prompt tests measure lengths on."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from lcbench.reference.tiny_model import with_chat_template

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<s>", "</s>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    return with_chat_template(tokenizer, "chatml")


def task_texts() -> list[str]:
    """Every synthetic task's examples in the plain and instruct formats: text to train a BPE on."""
    from lcbench.prompt import Prompter, Style
    from lcbench.reference.word_tokenizer import WordCounter
    from lcbench.registry import tasks

    texts = []
    for cls in tasks().values():
        if cls.vocabulary():
            task = cls()
            for style in (Style(), Style("instruct", task.instruction())):
                texts += [e.before + e.context + e.after for e in task.examples(Prompter(WordCounter(), style), 600, 4, 1)]
    return texts


def sample_texts() -> list[str]:
    """The shipped data sample's texts (LongBench, LongBench v2, RULER layouts), line by line."""
    return [line for path in sorted((ROOT / "data" / "sample").rglob("*.json*")) for line in path.read_text().splitlines()]


@pytest.fixture(scope="session")
def bpe():
    """Trained on the synthetic tasks and the data sample: English and pseudo-words both split into pieces."""
    return train_bpe(task_texts() + sample_texts(), vocab_size=3000)


@pytest.fixture(scope="session")
def chat_dirs(tmp_path_factory: pytest.TempPathFactory, bpe) -> dict[str, Path]:
    """Tiny Llamas whose tokenizers have a chat template: word-level ChatML and Llama 3, and the BPE."""
    from lcbench.reference.tiny_model import save_tiny_model

    root = tmp_path_factory.mktemp("chat-models")
    dirs = {chat: save_tiny_model(root / chat, chat=chat) for chat in ("chatml", "llama3")}
    dirs["bpe"] = save_tiny_model(root / "bpe", tokenizer=bpe)
    return dirs
