"""`lcbench data fetch NAME`: a public data set downloaded once into the cache, laid out as its task reads it.

The cache is `$LCBENCH_DATA`, else ~/.cache/lcbench/data (`--cache` names another), one folder per set:
`longbench/` the English `{dataset}.jsonl` and `{dataset}_e.jsonl` files THUDM/LongBench's data.zip
holds under `data/`; `longbench_v2/` THUDM/LongBench-v2's data.json; `infinitebench/`
xinrongzhang2022/InfiniteBench's English `{task}.jsonl` files; `ruler-qa/` SQuAD v2's and HotpotQA's
dev sets, which RULER's `download_qa_dataset.sh` fetches, as squad.json and hotpotqa.json. The tasks
read their set's folder when they are given no data_dir.

Files of the Hugging Face hub come through `huggingface_hub`, RULER's two from their own sites; a set
comes whole or not at all (its files land in a staging folder first), and one whose files are all in
place is not fetched again. Offline (HF_HUB_OFFLINE, which lcbench sets for its own runs) nothing is
tried: the error says where to run the command, or which files to download by hand and where to put them.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lcbench.errors import UserError, did_you_mean
from lcbench.tasks.data_files import cache_root

HUB = "https://huggingface.co/datasets/{repo}/resolve/main/{file}"


@dataclass(frozen=True)
class Source:
    """Where one set's files come from and what its cache folder holds once fetched."""

    title: str
    files: tuple[str, ...]  # the files its task reads, in the cache folder
    repo: str = ""  # the Hugging Face data set they come from
    archive: str = ""  # a zip in `repo` whose `data/*.jsonl` members are the files
    urls: tuple[str, ...] = ()  # outside the hub: one URL per file

    def by_hand(self, folder: Path) -> str:
        """The download, said for a person to do it."""
        if self.archive:
            url = HUB.format(repo=self.repo, file=self.archive)
            return f"download {url} (Hugging Face data set {self.repo}) and unpack its data/*.jsonl into {folder}"
        if self.urls:
            pairs = " and ".join(f"{url} as {file}" for url, file in zip(self.urls, self.files))
            return f"download {pairs} into {folder}"
        if len(self.files) == 1:
            return f"download {HUB.format(repo=self.repo, file=self.files[0])} into {folder}"
        return f"download {', '.join(self.files)} from {HUB.format(repo=self.repo, file='')} into {folder}"

    def download(self, staging: Path) -> None:
        """Every file into `staging`, as the cache folder will hold it."""
        if self.archive:
            unpack(hub_file(self.repo, self.archive, staging / ".download"), staging)
        elif self.urls:
            for url, file in zip(self.urls, self.files):
                url_file(url, staging / file)
        else:
            for file in self.files:
                shutil.move(hub_file(self.repo, file, staging / ".download"), staging / file)


@functools.cache
def sources() -> dict[str, Source]:
    """Each set `lcbench data fetch` knows, by the name it takes."""
    from lcbench.tasks.infinitebench import TASKS
    from lcbench.tasks.longbench import data_sets as longbench_sets
    from lcbench.tasks.ruler_haystacks import QA_SOURCES

    english = [f"{name}.jsonl" for name in longbench_sets()]
    english += [f"{name}_e.jsonl" for name, spec in longbench_sets().items() if spec["e"]]
    return {
        "longbench": Source("LongBench", tuple(english), "THUDM/LongBench", archive="data.zip"),
        "longbench_v2": Source("LongBench v2", ("data.json",), "THUDM/LongBench-v2"),
        "infinitebench": Source("InfiniteBench", tuple(f"{task}.jsonl" for task in TASKS), "xinrongzhang2022/InfiniteBench"),
        "ruler-qa": Source(
            "RULER's qa sets (SQuAD v2, HotpotQA)",
            tuple(file for _, _, file in QA_SOURCES.values()),
            urls=tuple(url for _, url, _ in QA_SOURCES.values()),
        ),
    }


def offline() -> str:
    """The flag that puts Hugging Face offline here (lcbench sets both for its runs), or ""."""
    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return next((flag for flag in flags if os.environ.get(flag, "").upper() in {"1", "ON", "YES", "TRUE"}), "")


def hub_file(repo: str, file: str, folder: Path) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo, file, repo_type="dataset", local_dir=folder))


def url_file(url: str, path: Path) -> Path:
    with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as out:
        shutil.copyfileobj(response, out)
    return path


def unpack(archive: Path, folder: Path) -> None:
    """The `.jsonl` members of LongBench's data.zip (under `data/`) into `folder`, by their own names."""
    with zipfile.ZipFile(archive) as zipped:
        for member in zipped.infolist():
            name = Path(member.filename).name
            if name.endswith(".jsonl") and not member.is_dir():
                with zipped.open(member) as source, open(folder / name, "wb") as out:
                    shutil.copyfileobj(source, out)


def fetch(name: str, cache: Path | None = None, say: Callable[[str], None] = print) -> Path:
    """Data set `name` into `cache/name` (the default cache when None), unless all its files are there already."""
    known = sources()
    if name not in known:
        raise UserError(did_you_mean(name, known, "data set"))
    spec, folder = known[name], (cache.expanduser() if cache is not None else cache_root()) / name
    if all((folder / file).is_file() for file in spec.files):
        say(f"{name}: already in {folder}")
        return folder
    fix = f"run `lcbench data fetch {name}` where the network can be reached, or {spec.by_hand(folder)}"
    if flag := offline():
        raise UserError(f"cannot fetch {spec.title}: offline mode is on here ({flag}=1); unset {flag} and {fix}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=folder.parent) as staging:
            spec.download(Path(staging))
            lacking = [file for file in spec.files if not (Path(staging) / file).is_file()]
            if lacking:
                raise UserError(f"{spec.title}'s download lacks {', '.join(lacking)}; {fix}")
            folder.mkdir(exist_ok=True)
            for file in spec.files:
                os.replace(Path(staging) / file, folder / file)
    except (OSError, zipfile.BadZipFile) as exc:
        cause = (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(".")
        raise UserError(f"cannot fetch {spec.title}: {cause}; {fix}") from None
    say(f"{name}: {len(spec.files)} files in {folder}; its tasks read them where no data_dir is given (or --data-dir {folder})")
    return folder
