"""How `ruler_synth` drafts each RULER task at a given haystack size: the needles, chains, word
lists and documents of one example, and the haystacks around them (RULER's `noise`, `needle` and
`essay`), after NVIDIA/RULER's `scripts/data/synthetic/` generators. The task searches the size.

An example's random draws that do not depend on the size (keys, values, chains, the few-shot
example, the vocabulary) come first, from their own seeded `random.Random`; the haystack's come
from another, seeded afresh for every size tried, so a larger size grows the same haystack. RULER
splits essays into sentences with nltk's punkt; here a regular expression splits after `.`, `!`
or `?` before a capital, a digit or an opening quote.
"""

from __future__ import annotations

import functools
import itertools
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from lcbench.tasks.base import LengthError
from lcbench.tasks.data_files import DataError
from lcbench.tasks.ruler_words import coded_vocabulary, cwe_words, make_value, variable_names, zipf_counts

# RULER's noise haystack: one sentence, repeated.
NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
# RULER's needle: the haystack of the `needle` type is made of these, with other keys.
NEEDLE = "One of the special magic {type_needle_v} for {key} is: {value}."
# RULER's essay insertion depths: 40 evenly spaced percentages from 0 to 100, rounded.
DEPTHS = tuple(round(100 * i / 39) for i in range(40))
DOCUMENT = "Document {i}:\n{document}"  # RULER's qa DOCUMENT_PROMPT
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|(?<=[.!?][\"')\]])\s+(?=[\"'(\[]?[A-Z0-9])")


@dataclass(frozen=True)
class Settings:
    """One task of RULER's synthetic.yaml (its defaults where the yaml sets nothing)."""

    family: str
    haystack: str = "noise"  # niah: noise, needle or essay
    type_k: str = "words"  # niah: keys and values are numbers, words or uuids
    type_v: str = "numbers"
    num_k: int = 1  # niah: needles with distinct keys, values per key, keys asked
    num_v: int = 1
    num_q: int = 1
    chains: int = 1  # vt
    hops: int = 4
    freq_cw: int = 30  # cwe: repeats of a common and an uncommon word, common words
    freq_ucw: int = 3
    num_cw: int = 10
    alpha: float = 2.0  # fwe: the Zipf exponent
    dataset: str = ""  # qa: squad or hotpotqa


@dataclass(frozen=True)
class Draft:
    """One example's pieces at one haystack size."""

    units: list[str]  # the context, in pieces (sentences, needles, list entries, words, documents)
    joiner: str
    query: str  # RULER's {query}: the key(s) asked, the value traced, the question
    references: tuple[str, ...]
    fewshot: str = ""

    @property
    def context(self) -> str:
        return self.joiner.join(self.units)


class Drafter(NamedTuple):
    low: int  # the smallest haystack size
    make: Callable[[int], Draft]


def niah(s: Settings, base: str, essay: Sequence[str]) -> Drafter:
    """Needles with `num_k` keys of `num_v` values each; `num_q` keys asked (RULER's niah.py)."""
    ask = random.Random(base + "/needles")
    keys: list[str] = []
    values: list[list[str]] = []
    needles = []
    for _ in range(max(s.num_k, s.num_q)):
        key = make_value(s.type_k, ask)
        while key in keys:
            key = make_value(s.type_k, ask)
        keys.append(key)
        values.append([make_value(s.type_v, ask) for _ in range(s.num_v)])
        needles += [NEEDLE.format(type_needle_v=s.type_v, key=key, value=v) for v in values[-1]]
    ask.shuffle(needles)
    asked = ask.sample(range(len(keys)), s.num_q)
    queries = [keys[i] for i in asked]
    query = ", ".join(queries[:-1]) + ", and " + queries[-1] if len(queries) > 1 else queries[0]
    answers = tuple(v for i in asked for v in values[i])

    def distractor(rng: random.Random, used: set[str]) -> str:
        key = make_value(s.type_k, rng)
        while key in used:  # every key appears once: the asked one is never ambiguous
            key = make_value(s.type_k, rng)
        used.add(key)
        return NEEDLE.format(type_needle_v=s.type_v, key=key, value=make_value(s.type_v, rng))

    def make(n: int) -> Draft:
        hay = random.Random(base + "/haystack")
        if s.haystack == "essay":
            sentences = split_sentences(" ".join(repeat_to(essay, n)))
            return Draft(insert_at_depths(hay, sentences, needles), " ", query, answers)
        used = set(keys)
        units = [NOISE] * n if s.haystack == "noise" else [distractor(hay, used) for _ in range(n)]
        return Draft(insert_at_random(hay, units, needles), "\n", query, answers)

    return Drafter(0 if s.haystack == "essay" else len(needles), make)


def largest_fitting(size: Callable[[int], int], budget: int, low: int) -> int | None:
    """The largest n >= low with size(n) <= budget, for a size that grows with n: a guess from the
    growth over a few steps, widened until it brackets the answer, then bisection."""
    if size(low) > budget:
        return None
    step = 32
    per_unit = max(size(low + step) - size(low), 1) / step
    guess = low + max(1, int((budget - size(low)) / per_unit))
    widen = max(1, (guess - low) // 32)
    if size(guess) <= budget:  # search above the guess
        lo, hi = guess, guess + widen
        while size(hi) <= budget:
            lo, hi, widen = hi, hi + widen, widen * 2
    else:  # search below it
        lo, hi = max(low, guess - widen), guess
        while size(lo) > budget:
            hi, widen = lo, widen * 2
            lo = max(low, lo - widen)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if size(mid) <= budget else (lo, mid)
    return lo


def chains_in_noise(rng: random.Random, count: int, chains: Sequence[list[str]]) -> list[str]:
    """`count` noise sentences with each chain's lines put among them in order (RULER's vt)."""
    units = [NOISE] * count
    for chain in chains:
        spots = sorted(rng.sample(range(len(units)), len(chain)))
        for j, (spot, line) in enumerate(zip(spots, chain)):
            units.insert(spot + j, line)
    return units


def variable_chains(rng: random.Random, chains: int, hops: int, letters: int) -> tuple[list[list[str]], list[list[str]]]:
    """(names, lines) of `chains` chains of `hops` assignments after a 5-digit value."""
    names = variable_names(rng, chains * (hops + 1), letters)
    groups = [names[c * (hops + 1) : (c + 1) * (hops + 1)] for c in range(chains)]
    lines = [
        [f"VAR {g[0]} = {rng.randint(10000, 99998)}", *(f"VAR {g[j + 1]} = VAR {g[j]} " for j in range(hops))] for g in groups
    ]
    return groups, lines


def vt(s: Settings, base: str, count: Callable[[str], int], template: str, answer_prefix: str) -> Drafter:
    """Variable tracking in noise, after one worked example of at most 500 tokens as `count`
    counts them (RULER's variable_tracking.py: the example has three-letter names, at most 10 hops)."""
    groups, lines = variable_chains(random.Random(base + "/chains"), s.chains, s.hops, 5)
    value = lines[0][0].rsplit(" ", 1)[1]

    shot_groups, shot_lines = variable_chains(random.Random(base + "/fewshot"), s.chains, min(10, s.hops), 3)
    shot_values = {"query": shot_lines[0][0].rsplit(" ", 1)[1], "num_v": min(10, s.hops) + 1}

    def shot(n: int) -> str:
        context = "\n".join(chains_in_noise(random.Random(base + "/fewshot-noise"), n, shot_lines))
        return template.format(context=context, **shot_values) + answer_prefix.format(**shot_values)

    fits = largest_fitting(lambda n: count(shot(n)), 500, len(shot_lines[0]))
    fewshot = shot(fits or len(shot_lines[0])) + " " + " ".join(shot_groups[0]) + "\n\n"

    def make(n: int) -> Draft:
        units = chains_in_noise(random.Random(base + "/haystack"), n, lines)
        return Draft(units, "\n", value, tuple(groups[0]), fewshot)

    return Drafter(len(lines[0]), make)


def numbered(words: Sequence[str]) -> list[str]:
    return [f"{i + 1}. {word}" for i, word in enumerate(words)]


def word_list(rng: random.Random, count: int, common: int, uncommon: int, num_common: int) -> tuple[list[str], list[str]]:
    """(the shuffled list, its common words): `count` words, the first `num_common` repeated
    `common` times, the others `uncommon` times (RULER's cwe get_example)."""
    words = cwe_words(rng, count)
    entries = words[:num_common] * common + words[num_common:] * uncommon
    rng.shuffle(entries)
    return entries, words[:num_common]


def cwe(s: Settings, base: str, length: int, template: str, answer_prefix: str) -> Drafter:
    """Common words after one worked example; below 4096 tokens RULER repeats less (6 and 1 times,
    a 20-word example) than its settings say (a 40-word example)."""
    short = length < 4096
    shot_words, shot_common, shot_uncommon = (20, 3, 1) if short else (40, 10, 3)
    common, uncommon = (6, 1) if short else (s.freq_cw, s.freq_ucw)
    shot_list, shot_answer = word_list(random.Random(base + "/fewshot"), shot_words, shot_common, shot_uncommon, s.num_cw)
    shot_context = " ".join(numbered(shot_list))
    fewshot = template.format(context=shot_context, query="") + answer_prefix
    fewshot += " " + " ".join(numbered(shot_answer)) + "\n"

    def make(n: int) -> Draft:
        entries, answer = word_list(random.Random(base + "/words"), n, common, uncommon, s.num_cw)
        return Draft(numbered(entries), " ", "", tuple(answer), fewshot)

    return Drafter(s.num_cw, make)


def fwe(s: Settings, base: str, length: int, answer_tokens: int) -> Drafter:
    """Coded words drawn by Zipf's law over a vocabulary of (length - answer_tokens) // 50 words,
    the first of them dots; the answer is ranks 2 to 4 (RULER's freq_words_extraction.py)."""
    size = (length - answer_tokens) // 50
    if size < 5:
        raise LengthError(f"length {length} is too short for ruler_synth fwe: the minimum is {5 * 50 + answer_tokens}")
    vocabulary = coded_vocabulary(random.Random(base + "/vocabulary"), size)
    answers = tuple(vocabulary[1:4])

    def make(n: int) -> Draft:
        words = [w for w, count in zip(vocabulary, zipf_counts(n, size, s.alpha)) for _ in range(count)]
        random.Random(base + "/haystack").shuffle(words)
        return Draft(words, " ", "", answers)

    low = 1
    while not distinct_top(zipf_counts(low, 5, s.alpha)):  # the three asked outnumber the next
        low += 1
    return Drafter(low, make)


def distinct_top(counts: list[int]) -> bool:
    return counts[3] > counts[4] and counts[1] > counts[2] > counts[3]


def qa(data: QaSet, base: str, index: int) -> Drafter:
    """The `index`-th question (as RULER takes them in order) among distractor documents."""
    question = data.questions[index % len(data.questions)]
    excluded = {*question.gold, *question.more}
    others = [i for i in range(len(data.documents)) if i not in excluded]

    def make(n: int) -> Draft:
        documents = qa_documents(random.Random(base + "/documents"), data, question, n, others)
        units = [DOCUMENT.format(i=i + 1, document=d) for i, d in enumerate(documents)]
        return Draft(units, "\n\n", question.query, question.outputs)

    return Drafter(len(question.gold), make)


def insert_at_random(rng: random.Random, units: list[str], needles: Sequence[str]) -> list[str]:
    """`needles` put among `units` at distinct random places, none after the last unit (RULER's
    noise and needle haystacks)."""
    out = list(units)
    spots = sorted(rng.sample(range(len(units)), len(needles)), reverse=True)
    for spot, needle in zip(spots, needles):
        out.insert(spot, needle)
    return out


def insert_at_depths(rng: random.Random, sentences: list[str], needles: Sequence[str]) -> list[str]:
    """`needles` put between sentences at depths drawn from RULER's 40 (the essay haystack)."""
    cuts = sorted(len(sentences) * depth // 100 for depth in rng.sample(DEPTHS, len(needles)))
    out: list[str] = []
    start = 0
    for cut, needle in zip(cuts, needles):
        out += [*sentences[start:cut], needle]
        start = cut
    return out + sentences[start:]


def split_sentences(text: str) -> list[str]:
    return [s for s in SENTENCE_END.split(text.strip()) if s]


def essay_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.txt"))


def essay_words(folder: Path) -> tuple[str, ...]:
    """The words of every `.txt` file in `folder`, in file-name order."""
    files = essay_files(folder)
    return _essay_words(tuple((f.resolve(), f.stat().st_mtime_ns) for f in files))


@functools.lru_cache(maxsize=2)
def _essay_words(files: tuple[tuple[Path, int], ...]) -> tuple[str, ...]:
    return tuple(" ".join(path.read_text(encoding="utf-8", errors="replace") for path, _ in files).split())


def repeat_to(words: Sequence[str], count: int) -> list[str]:
    """The first `count` words, the text repeated as often as needed (RULER's essay haystack)."""
    return list(itertools.islice(itertools.cycle(words), count)) if words else []


@dataclass(frozen=True)
class Question:
    query: str
    outputs: tuple[str, ...]
    gold: tuple[int, ...]  # the documents that answer it
    more: tuple[int, ...] = ()  # SQuAD: the other paragraphs of its article, the first distractors


@dataclass(frozen=True)
class QaSet:
    questions: tuple[Question, ...]
    documents: tuple[str, ...]


# What each QA data set is, where RULER gets it, and the file name its scripts give it.
QA_SOURCES = {
    "squad": ("SQuAD v2.0's dev set", "https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v2.0.json", "squad.json"),
    "hotpotqa": (
        "HotpotQA's dev set (distractor setting)",
        "http://curtis.ml.cmu.edu/datasets/hotpot/hotpot_dev_distractor_v1.json",
        "hotpotqa.json",
    ),
}


def read_qa(dataset: str, path: Path) -> QaSet:
    if not path.is_file():
        what, url, name = QA_SOURCES[dataset]
        raise DataError(
            f"data file `{path}` does not exist: this task reads {what} as `{name}` in the data folder "
            f"(the suite's `data_dir` or --data-dir), the file RULER's download_qa_dataset.sh saves from {url}; "
            "`lcbench data fetch ruler-qa` downloads both qa files into the cache, which the task reads"
        )
    stat = path.stat()
    return _read_qa(dataset, path.resolve(), stat.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _read_qa(dataset: str, path: Path, mtime_ns: int) -> QaSet:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        found = squad(data) if dataset == "squad" else hotpotqa(data)
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    except (KeyError, TypeError, IndexError) as exc:
        shape = "{data: [{paragraphs: [{context, qas}]}]}" if dataset == "squad" else "[{question, answer, context}]"
        raise DataError(f"{path}: does not read as {QA_SOURCES[dataset][0]}, laid out as {shape} ({exc!r})") from None
    if not found.questions:
        raise DataError(f"{path}: holds no answerable question")
    return found


def squad(data: dict[str, Any]) -> QaSet:
    """SQuAD's answerable questions; a paragraph is a document (RULER's read_squad)."""
    documents = sorted({p["context"] for article in data["data"] for p in article["paragraphs"]})
    number = {text: i for i, text in enumerate(documents)}
    questions = []
    for article in data["data"]:
        paragraphs = [number[p["context"]] for p in article["paragraphs"]]
        for p in article["paragraphs"]:
            own = number[p["context"]]
            more = tuple(i for i in paragraphs if i != own)
            questions += [
                Question(q["question"], tuple(a["text"] for a in q["answers"]), (own,), more)
                for q in p["qas"]
                if not q.get("is_impossible", False)
            ]
    return QaSet(tuple(questions), tuple(documents))


def hotpotqa(data: list[dict[str, Any]]) -> QaSet:
    """HotpotQA's questions with their ten paragraphs each, `title\\nsentences` (RULER's read_hotpotqa)."""

    def text(title: str, sentences: list[str]) -> str:
        return f"{title}\n{''.join(sentences)}"

    documents = sorted({text(t, s) for item in data for t, s in item["context"]})
    number = {doc: i for i, doc in enumerate(documents)}
    questions = [
        Question(item["question"], (item["answer"],), tuple(number[text(t, s)] for t, s in item["context"])) for item in data
    ]
    return QaSet(tuple(questions), tuple(documents))


def qa_documents(rng: random.Random, data: QaSet, question: Question, count: int, others: Sequence[int]) -> list[str]:
    """`count` documents for `question`: its own, then its article's other paragraphs, then any
    other (`others`), shuffled; past the whole set, the set repeated (RULER's qa)."""
    if count >= len(data.documents):
        repeats = -(-count // len(data.documents))
        chosen = [data.documents[i] for i in (list(range(len(data.documents))) * repeats)[:count]]
    else:
        extra = count - len(question.gold)
        if extra > len(question.more):
            picked = [*question.gold, *question.more, *rng.sample(others, extra - len(question.more))]
        else:
            picked = [*question.gold, *rng.sample(question.more, extra)]
        chosen = [data.documents[i] for i in picked]
    rng.shuffle(chosen)
    return chosen
