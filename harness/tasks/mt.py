"""`mt`: document translation between two synthetic languages, with document-level agreement.

The source language is verb-final and drops its subjects: a topic sentence introduces a noun,
and the sentences after it have no noun of their own. The target language marks every verb for
the class of its subject (`-n` for class A nouns, `-s` for class B), so a verb in a subjectless
sentence can only be translated right by looking back to the topic noun, `distance` sentences
earlier: the ContraPro idea (Müller et al., 2018) in a closed world. Adjectives precede nouns in
the source and follow them in the target (the reordering rule). Words are drawn without
replacement within a document, so every source word a translator must find is unambiguous.

Metrics: chrF and BLEU (sacrebleu) per document and over the corpus, `doc_acc` (agreement
accuracy on the dependent verbs), `token_acc` (position-wise) and `exact` (whole document).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from lcbench.prompt import Parts, Prompter
from lcbench.tasks.base import Example, LengthError, Task, joined_cost
from lcbench.tasks.metrics import bleu, chrf, corpus_bleu, corpus_chrf
from lcbench.tasks.words import fresh, pool, target_words

QUERY = "translate"
CLASS_SUFFIX = {"A": "n", "B": "s"}
# Each word class is drawn without replacement within a window of this many draws of its class
# (about a 256-token document): a word the translator must find is never ambiguous there.
WINDOWS = {"noun": 80, "adjective": 45, "verb": 90, "other": 240}


@dataclass(frozen=True)
class Lexicon:
    nouns: dict[str, str]  # source noun -> class
    adjectives: frozenset[str]
    verbs: tuple[str, ...]
    others: tuple[str, ...]
    translation: dict[str, str]  # source word -> target word (verbs: the stem)


@functools.cache
def lexicon() -> Lexicon:
    words = pool("source")
    targets = target_words(len(words))
    nouns = {w: "A" for w in words[:50]} | {w: "B" for w in words[50:100]}
    return Lexicon(
        nouns=nouns,
        adjectives=frozenset(words[100:150]),
        verbs=tuple(words[150:250]),
        others=tuple(words[250:]),
        translation=dict(zip(words, targets)),
    )


def translate_sentence(words: Sequence[str], subject_class: str) -> list[str]:
    """Word by word; an adjective moves after its noun; a verb takes its subject's class."""
    lex = lexicon()
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in lex.adjectives and i + 1 < len(words) and words[i + 1] in lex.nouns:
            out += [lex.translation[words[i + 1]], lex.translation[word]]
            i += 2
            continue
        target = lex.translation[word]
        out.append(target + CLASS_SUFFIX[subject_class] if word in lex.verbs else target)
        i += 1
    return out


@dataclass
class Mt(Task):
    name: ClassVar[str] = "mt"
    metrics: ClassVar[tuple[str, ...]] = ("chrf", "bleu", "doc_acc", "token_acc", "exact")
    template: ClassVar[str] = (
        "Translate the following document into the target language, sentence by sentence, "
        "keeping each verb's agreement with its topic noun.\n\n{context}\n\n{question}"
    )

    distances: tuple[int, ...] = (1, 2, 4, 8)  # sentences from the topic noun to a dependent verb

    def __post_init__(self) -> None:
        self.distances = tuple(self.distances)
        if not self.distances or any(d < 1 for d in self.distances):
            raise ValueError(f"distances must be a non-empty list of positive sentence counts, got {list(self.distances)}")

    @classmethod
    def vocabulary(cls) -> list[str]:
        lex = lexicon()
        verbs = {lex.translation[v] + s for v in lex.verbs for s in CLASS_SUFFIX.values()}
        plain = {t for w, t in lex.translation.items() if w not in lex.verbs}
        return [*pool("source"), *sorted(verbs | plain), QUERY]

    def document(self, rng: random.Random, prompter: Prompter, budget: int) -> list[tuple[list[str], str, int]]:
        """Sentences of exactly `budget` tokens: (source words, subject class, distance to the
        topic sentence, 0 for the topic itself). The last sentence is cut to fit: it keeps its
        final verb and drops its leading words, so it stays a subjectless sentence."""
        lex = lexicon()
        recent: dict[str, list[str]] = {kind: [] for kind in WINDOWS}
        classes = {"noun": list(lex.nouns), "adjective": sorted(lex.adjectives), "verb": lex.verbs, "other": lex.others}
        out: list[tuple[list[str], str, int]] = []
        used = 0

        def draw(kind: str) -> str:
            return fresh(rng, classes[kind], recent[kind], WINDOWS[kind])

        def others(low: int, high: int) -> list[str]:
            return [draw("other") for _ in range(rng.randint(low, high))]

        def cost(words: list[str], first: bool | None = None) -> int:
            return joined_cost(prompter, " ".join(words), not out if first is None else first)

        def close_gap(words: list[str], room: int, first: bool) -> list[str]:
            """`words` with an `other` word added, or swapped for one of its own, as close to `room`
            tokens as fits: a subword tokenizer can leave a gap that whole words did not fill."""
            for word in rng.sample(lex.others, len(lex.others)):
                if cost(words, first) >= room:
                    break
                swaps = [[*words[:k], word, *words[k + 1 :]] for k in range(len(words) - 1) if words[k] in lex.others]
                words = max(
                    [words, *(t for t in [[word, *words], *swaps] if cost(t, first) <= room)], key=lambda t: cost(t, first)
                )
            return words

        while True:
            noun = draw("noun")
            phrase = [draw("adjective"), noun] if rng.random() < 0.5 else [noun]
            run = [(others(0, 2) + phrase + others(0, 2) + [draw("verb")], lex.nouns[noun], 0)]
            for distance in range(1, rng.choice(self.distances) + 1):
                run.append((others(2, 5) + [draw("verb")], lex.nouns[noun], distance))
            for words, cls, distance in run:
                if used + cost(words) <= budget:
                    used += cost(words)
                    out.append((words, cls, distance))
                    continue
                if out:  # a shortened subjectless sentence, continuing the last topic, tops it up
                    if distance == 0:
                        filler = others(max(budget - used - 1, 0), max(budget - used - 1, 0))
                        words, cls, distance = filler + [words[-1]], out[-1][1], out[-1][2] + 1
                    while words[:-1] and used + cost(words) > budget:
                        words = words[1:]
                    if used + cost(words) <= budget:
                        used += cost(words)
                        out.append((words, cls, distance))
                    if used < budget:  # never with whole-word tokens: they fill the budget exactly
                        words, cls, distance = out[-1]
                        first, had = len(out) == 1, cost(out[-1][0], len(out) == 1)
                        out[-1] = (close_gap(words, had + budget - used, first), cls, distance)
                return out

    def example(self, prompter: Prompter, length: int, seed: int, index: int) -> Example:
        rng = random.Random(f"mt/{seed}/{length}/{index}")
        frame = prompter.frame(Parts(QUERY, "Translate the document above.", "Translation:"))
        budget = length - frame.tokens
        if budget < 8:
            raise LengthError(f"length {length} is too short for mt: the minimum is {length - budget + 8}")
        sentences = self.document(rng, prompter, budget)
        source = [" ".join(words) for words, _, _ in sentences]
        boundaries, offset = [], 0
        for i, sentence in enumerate(source):
            boundaries.append(offset)
            offset += joined_cost(prompter, sentence, i == 0)
        target = [" ".join(translate_sentence(words, cls)) for words, cls, _ in sentences]
        lex = lexicon()
        # every verb, in order (distance 0: the topic sentence's own); the dependents are the rest
        verbs = [(lex.translation[words[-1]], CLASS_SUFFIX[cls], distance) for words, cls, distance in sentences]
        context = " ".join(source)
        return Example(
            id=f"mt-{length}-{seed}-{index}",
            context=context,
            query=QUERY,
            references=(" ".join(target),),
            requested_length=length,
            actual_length=len(prompter.encode(context)) + length - budget,
            output="transform",
            answer_tokens=8,
            boundaries=tuple(boundaries),
            metadata={"sentences": len(sentences), "verbs": verbs},
            frame=frame,
        )

    def score(self, prediction: str, example: Example) -> dict[str, float]:
        reference = example.references[0]
        predicted, expected = prediction.split(), reference.split()
        return {
            "chrf": chrf(prediction, reference),
            "bleu": bleu(prediction, reference),
            "doc_acc": agreement_accuracy(predicted, example.metadata["verbs"]),
            "token_acc": sum(p == e for p, e in zip(predicted, expected)) / max(len(expected), 1),
            "exact": float(predicted == expected),
        }

    @classmethod
    def corpus_scores(cls, predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
        return {"corpus_bleu": corpus_bleu(predictions, references), "corpus_chrf": corpus_chrf(predictions, references)}


def agreement_accuracy(predicted: Sequence[str], verbs: Sequence[tuple[str, str, int]]) -> float:
    """Share of dependent verbs (distance > 0) translated with the right class. A verb is found by
    its stem wherever the prediction put it: the k-th use of a stem in the source is matched with
    the k-th word of the prediction with that stem (stems recur in documents longer than the
    no-repeat window). A missing verb counts as wrong."""
    dependents = [v for v in verbs if v[2] > 0]
    if not dependents:
        return 1.0
    stems = {stem for stem, _, _ in verbs}
    suffixes: dict[str, list[str]] = {}
    for word in predicted:
        if word[:-1] in stems:
            suffixes.setdefault(word[:-1], []).append(word[-1])
    seen: dict[str, int] = {}
    right = 0
    for stem, suffix, distance in verbs:
        k = seen.get(stem, 0)
        seen[stem] = k + 1
        found = suffixes.get(stem, [])
        right += distance > 0 and k < len(found) and found[k] == suffix
    return right / len(dependents)
