"""`ruler_synth`: RULER's synthetic tasks, generated for the run's own tokenizer at each length.

Hsieh et al., "RULER: What's the Real Context Size of Your Long-Context Language Models?", 2024
(https://arxiv.org/abs/2404.06654); the generators are NVIDIA/RULER's `scripts/data/synthetic/`.

`task` is one of RULER's `synthetic.yaml` tasks and takes its settings from there (`SETTINGS`):
niah_* hide needles `One of the special magic {type} for {key} is: {value}.` in a haystack
(`noise`: one sentence repeated; `needle`: needles with other keys; `essay`: the sentences of the
`.txt` files in `essay_dir`), vt traces chains of `VAR X = ...` through noise, cwe finds the 10
most common words of a numbered list, fwe the three most frequent words of a Zipf-distributed
coded text, and qa_1 / qa_2 answer a SQuAD / HotpotQA question among distractor documents read
from the data folder (`squad.json`, `hotpotqa.json`, as RULER names them; where it lacks them, from
the cache `lcbench data fetch ruler-qa` fills). The templates, answer prefixes and needle sentence
are RULER's, word for word.

As in RULER, the haystack's size (noise sentences, distractor needles, essay words, list words,
documents) is searched by bisection so that the prompt, counted with the run's tokenizer, fits the
requested length less the tokens RULER lets the model generate. An example comes from
`random.Random` seeded by task, seed, length and index: the same at any count, and the same at
every size tried, so that only the haystack grows. Scores: string_match_all (the share of
references found in the output, case-insensitive), string_match_part for qa (1 if any is found),
on the output as RULER post-processes it.

The prompt is the suite's format around RULER's task template: instruct puts the answer prefix on
its own line, chat opens the assistant's turn with it (as RULER's chat templates do). vt's and
cwe's few-shot example goes before the instruction in the user's turn (the `{fewshot}` field), as
RULER inserts vt's. Words and sentence splitting differ from RULER's: see `ruler_words` and
`ruler_haystacks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from lcbench.errors import did_you_mean
from lcbench.prompt import Parts, Prompter
from lcbench.tasks.base import Example, LengthError, Task
from lcbench.tasks.data_files import DataError, cache_root, resolve
from lcbench.tasks.metrics import string_match_all, string_match_part
from lcbench.tasks.ruler import postprocess
from lcbench.tasks.ruler_haystacks import (
    QA_SOURCES,
    Draft,
    Drafter,
    QaSet,
    Settings,
    cwe,
    essay_files,
    essay_words,
    fwe,
    largest_fitting,
    niah,
    qa,
    read_qa,
    vt,
)


@dataclass(frozen=True)
class Template:
    """A RULER task family's prompt, as its `constants.py` gives it: {context} and {query} (vt's
    answer prefix also {num_v}); the tokens it lets the model generate."""

    tokens_to_generate: int
    template: str
    answer_prefix: str


TEMPLATES = {
    "niah": Template(
        128,
        """Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. I will quiz you about the {type_needle_v} afterwards.\n{context}\nWhat are all the special magic {type_needle_v} for {query} mentioned in the provided text?""",  # noqa: E501
        """ The special magic {type_needle_v} for {query} mentioned in the provided text are""",
    ),
    "vt": Template(
        30,
        """Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\nQuestion: Find all variables that are assigned the value {query} in the text above.""",  # noqa: E501
        """ Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are assigned the value {query}, they are: """,  # noqa: E501
    ),
    "cwe": Template(
        120,
        """Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?""",  # noqa: E501
        """ Answer: The top 10 words that appear most often in the list are:""",
    ),
    "fwe": Template(
        50,
        """Read the following coded text and track the frequency of each coded word. Find the three most frequently appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are the three most frequently appeared words in the above coded text?""",  # noqa: E501
        """ Answer: According to the coded text above, the three most frequently appeared words are:""",
    ),
    "qa": Template(
        32,
        """Answer the question based on the given documents. Only give me the answer and do not output any other words.\n\nThe following are given documents.\n\n{context}\n\nAnswer the question based on the given documents. Only give me the answer and do not output any other words.\n\nQuestion: {query}""",  # noqa: E501
        """ Answer:""",
    ),
}


SETTINGS = {
    "niah_single_1": Settings("niah", haystack="noise"),
    "niah_single_2": Settings("niah", haystack="essay"),
    "niah_single_3": Settings("niah", haystack="essay", type_v="uuids"),
    "niah_multikey_1": Settings("niah", haystack="essay", num_k=4),
    "niah_multikey_2": Settings("niah", haystack="needle"),
    "niah_multikey_3": Settings("niah", haystack="needle", type_k="uuids", type_v="uuids"),
    "niah_multivalue": Settings("niah", haystack="essay", num_v=4),
    "niah_multiquery": Settings("niah", haystack="essay", num_q=4),
    "vt": Settings("vt", chains=1, hops=4),
    "cwe": Settings("cwe", freq_cw=30, freq_ucw=3, num_cw=10),
    "fwe": Settings("fwe", alpha=2.0),
    "qa_1": Settings("qa", dataset="squad"),
    "qa_2": Settings("qa", dataset="hotpotqa"),
}


@dataclass
class RulerSynth(Task):
    name: ClassVar[str] = "ruler_synth"
    metrics: ClassVar[tuple[str, ...]] = ("string_match_all", "string_match_part")
    fields: ClassVar[tuple[str, ...]] = ("query", "fewshot")

    task: str = "niah_single_1"  # RULER's task name, as in its synthetic.yaml
    essay_dir: str = ""  # a folder of .txt files: the essay haystack (relative: under data_dir)
    data_dir: str = ""  # qa: where squad.json and hotpotqa.json are (the suite's `data_dir` by default)

    def __post_init__(self) -> None:
        if self.task not in SETTINGS:
            raise ValueError(did_you_mean(self.task, SETTINGS, "RULER synthetic task"))

    @property
    def settings(self) -> Settings:
        return SETTINGS[self.task]

    def label(self) -> str:
        return f"{self.name}/{self.task}"

    def texts(self) -> tuple[str, str]:
        """RULER's template and answer prefix for this task, the needle type filled in; a single
        needle asked reads in the singular, as RULER rewrites it."""
        s = self.settings
        template, prefix = TEMPLATES[s.family].template, TEMPLATES[s.family].answer_prefix
        if s.family != "niah":
            return template, prefix
        kind = s.type_v
        if s.num_q * s.num_v == 1:
            template, prefix, kind = singular(template), singular(prefix), kind[:-1]
        return template.replace("{type_needle_v}", kind), prefix.replace("{type_needle_v}", kind)

    def instruction(self) -> str:
        """RULER's template, with the question after the context as {question}."""
        head, tail = self.texts()[0].split("{context}")
        gap = tail[: len(tail) - len(tail.lstrip("\n"))]
        return "{fewshot}" + head.replace("{", "{{").replace("}", "}}") + "{context}" + gap + "{question}"

    def parts(self, draft: Draft) -> Parts:
        template, prefix = self.texts()
        values = {"query": draft.query, "num_v": str(self.settings.hops + 1)}
        question = template.split("{context}")[1].lstrip("\n").format(**values)
        answer_prefix = prefix.format(**values)
        return Parts(question + answer_prefix, question, answer_prefix, {"query": draft.query, "fewshot": draft.fewshot})

    def data_problems(self, lengths: Sequence[int] = ()) -> list[str]:
        s = self.settings
        if s.haystack == "essay" and s.family == "niah":
            if not self.essay_dir:
                return [
                    f"task {self.task} hides its needles in essays: set the param `essay_dir` to a folder of plain "
                    ".txt files (RULER uses Paul Graham's essays)"
                ]
            folder = resolve(self.data_dir, self.essay_dir)
            if not folder.is_dir():
                return [f"essay_dir `{folder}` is not a folder; give a folder of plain .txt files"]
            if not essay_files(folder) or not essay_words(folder):
                return [f"essay_dir `{folder}` holds no text in .txt files"]
        if s.family == "qa":
            try:
                self.qa_set()
            except DataError as exc:
                return [str(exc)]
        return []

    def qa_set(self) -> QaSet:
        """SQuAD's or HotpotQA's file from the data folder, else from the cache `lcbench data fetch ruler-qa` fills."""
        dataset = self.settings.dataset
        path, cached = resolve(self.data_dir, QA_SOURCES[dataset][2]), cache_root() / "ruler-qa" / QA_SOURCES[dataset][2]
        return read_qa(dataset, cached if not path.is_file() and cached.is_file() else path)

    def example(self, prompter: Prompter, length: int, seed: int, index: int) -> Example:
        problems = self.data_problems()
        if problems:
            raise DataError("; ".join(problems))
        base = f"ruler_synth/{self.task}/{seed}/{length}/{index}"
        drafter = self.drafter(prompter, length, index, base)
        frame = prompter.frame(self.parts(drafter.make(drafter.low)))
        answer_tokens = TEMPLATES[self.settings.family].tokens_to_generate
        budget = length - answer_tokens - frame.tokens
        sizes: dict[int, int] = {}

        def size(n: int) -> int:
            if n not in sizes:
                sizes[n] = len(prompter.encode(drafter.make(n).context))
            return sizes[n]

        n = largest_fitting(size, budget, drafter.low)
        if n is None:
            minimum = length - budget + size(drafter.low)
            raise LengthError(f"length {length} is too short for ruler_synth {self.task}: the minimum is {minimum}")
        draft = drafter.make(n)
        context = draft.context
        first = context.find(draft.references[0]) if draft.references else -1
        return Example(
            id=f"{self.task}-{length}-{seed}-{index}",
            context=context,
            query=self.parts(draft).query,
            references=draft.references,
            requested_length=length,
            actual_length=frame.tokens + size(n),
            answer_tokens=answer_tokens,
            boundaries=offsets(prompter, draft.units, draft.joiner, size(n)),
            metadata={
                "task": self.task,
                "haystack": n,
                "depth": round(first / len(context), 1) if first >= 0 and self.settings.family == "niah" else None,
            },
            frame=frame,
            first_line=False,  # RULER scores the whole output: values may come one per line
        )

    def drafter(self, prompter: Prompter, length: int, index: int, base: str) -> Drafter:
        s = self.settings
        if s.family == "niah":
            essay = essay_words(resolve(self.data_dir, self.essay_dir)) if s.haystack == "essay" else ()
            return niah(s, base, essay)
        if s.family == "vt":
            return vt(s, base, lambda text: len(prompter.encode(text)), *self.texts())
        if s.family == "cwe":
            return cwe(s, base, length, *self.texts())
        if s.family == "fwe":
            return fwe(s, base, length, TEMPLATES["fwe"].tokens_to_generate)
        return qa(self.qa_set(), base, index)

    def score(self, prediction: str, example: Example) -> dict[str, float]:
        said = postprocess(prediction)
        if self.settings.family == "qa":
            return {"string_match_part": string_match_part(said, example.references)}
        return {"string_match_all": string_match_all(said, example.references)}


def singular(text: str) -> str:
    """RULER's rewrite of the niah template where one value is asked for."""
    for plural, one in (("Some", "A"), ("are all", "is"), ("are", "is"), ("answers", "answer")):
        text = text.replace(plural, one)
    return text


def offsets(prompter: Prompter, units: Sequence[str], joiner: str, total: int) -> tuple[int, ...]:
    """Where each unit starts in the context, in tokens (each counted with its joiner: an estimate
    where a subword tokenizer merges across joins), those inside the context's `total`."""
    starts, used = [], 0
    for i, unit in enumerate(units):
        starts.append(used)
        used += len(prompter.encode(unit if i == 0 else joiner + unit))
    return tuple(t for t in starts if t < total)
