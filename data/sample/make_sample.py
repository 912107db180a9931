"""Write a small, made-up data sample in the on-disk layouts of LongBench v1/LongBench-E, LongBench v2, RULER and
InfiniteBench.

Run ``python data/sample/make_sample.py``; it (re)writes, next to this file:

* ``longbench/{dataset}.jsonl`` (16 English LongBench v1 sets, 3 records each) and ``longbench/{dataset}_e.jsonl``
  (13 LongBench-E sets, one record per length bucket: < 4000, 4000-7999 and >= 8000 words);
* ``longbench_v2/data.json``: one JSON array of 6 multiple-choice records;
* ``ruler/{4096,8192}/data/{task}/validation.jsonl``: RULER's prepared files for the ``base`` model template;
* ``infinitebench/{task}.jsonl``: InfiniteBench's 9 English tasks, 2 short records each.

This is NOT the benchmarks' data. Every text is generated here, deterministically (fixed seeds), from the word
lists and sentence templates below. Only the file layouts, the field names, RULER's task templates and answer
prefixes, and the rough shape of each task follow the originals, so that loaders, prompts and metrics can be
exercised offline. LongBench ``length`` is the whitespace word count of input + context + answers[0].
RULER measures ``length`` with the model's tokenizer; here it is approximated as
round(1.3 * whitespace words) + tokens_to_generate (``token_position_answer`` likewise), and every file is
sized to roughly 70-90% of its folder's max_seq_length.
"""

from __future__ import annotations

import json
import math
import random
import re
import string
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent

# ----------------------------------------------------------------------------------------------- word lists
FIRST = ("Alice Bruno Clara Daniel Edith Felix Grace Henry Iris James Karen Leo Mara Nathan Olive Peter Quinn "
         "Rosa Samuel Tessa Victor Wendy Yusuf Zoe").split()
LAST = ("Abbott Barker Carver Dalton Ellis Fisher Garner Hale Ingram Jarvis Keller Lowell Marsh Norwood Oakley "
        "Porter Quigley Rowan Sutton Thorne Vance Whitlock").split()
TOWNS = [a + b for a in "Ash Bell Black Brook Cold Elm Fair Green High Lark Mill Oak Red Stone West Wood".split()
         for b in "bridge by field ford ham haven ley mouth stead ton wick".split()]
REGIONS = ("Amber Coast", "Grey Hills", "Lower Marsh", "Upper Dales", "Willow Plains", "Copper Valley",
           "Eastern Moors", "Salt Shore")
REGION_OF = {town: REGIONS[j % len(REGIONS)] for j, town in enumerate(TOWNS)}  # one region per town, always
RIVERS = [f"{name} River" for name in "Amber Swift Silver Willow Clear Stony Bright Little".split()]
ITEMS = "bicycle camera umbrella ladder drill kettle guitar tent jacket map scarf lantern".split()
SOUPS = "tomato onion carrot pumpkin lentil mushroom".split()
JOBS = ("baker carpenter teacher nurse sailor farmer painter engineer librarian doctor potter tailor miller clerk "
        "pilot gardener printer musician chemist architect").split()
INSTRUMENTS = "violin flute cello piano trumpet harp drum guitar clarinet accordion".split()
MONTHS = "January February March April May June July August September October November December".split()
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
OFFICES = ("Office of Rural Roads", "Bureau of Harbor Safety", "Department of Water Services",
           "Agency for School Buildings", "Office of Public Libraries", "Bureau of Forest Care")
NOUNS = """apple anchor badge bag balloon barrel basket beacon bean bell belt bench bicycle blanket boat bolt bone
book boot bottle bowl bucket bulb button cabin cake camera candle canoe cap card carpet cart castle cave chair
chain chimney cliff clock cloud coat coin collar compass cookie cord corner cottage cup curtain cushion desk
diamond door drawer drum engine envelope farm feather fence field flag flower folder forest fork frame garden
gate glove goat hammer harbor hat helmet hill horn hut island jacket jar kettle key kite knot ladder lake lamp
lantern lemon letter lever lid map market meadow medal mill mirror mitten motor mountain mug nail napkin needle
nest net notebook oar onion orchard oven paddle painting pan parcel path pebble pen pencil pepper piano picture
pillow pipe planet plate pocket pond pot puzzle quilt rabbit radio rail ribbon ring river road rock rocket roof
room rope rug saddle sail sandal school shed shell ship shoe shovel signal sled song spoon stair stamp star
station statue stick stone stool street string sweater table tablet tent ticket tile tower towel toy track
tractor trail train tray tree trumpet tunnel turnip umbrella valley vase violin wagon wall wallet wardrobe window
wheel wire wreath yard zipper apron arrow barn basin beetle blossom bracelet brick broom bubble cabinet canal
carrot cellar chisel cloak clover comb crate crayon crown cupboard dial dock drill easel fan fiddle flute
fountain funnel gadget garage gutter handle harp hedge hook hose jewel journal kayak kitchen ladle lighthouse
locket magnet marble mask mat muffin necklace padlock pail pear pedal pillar pitcher plank poster pump raft rake
robot rudder ruler saucer scooter seed shawl shutter sink skillet slipper socket spade spindle sponge stable
stove sundial swing teapot thimble thread tulip vest village well windmill wing workshop""".split()
ADJS = """ancient bold brave bright brisk broad calm careful cheerful clever cloudy cold cozy crisp crooked
curious damp dark distant dusty eager early empty faint famous fancy fierce flat fresh friendly gentle giant glad
gloomy golden grand green grey hidden hollow honest humble icy jolly keen kind large late lazy little lively
lonely long loud lovely lucky merry mild modern muddy narrow neat noble odd old orange pale patient plain
pleasant polite proud purple quick quiet rapid rare ready red rich rough round rusty sandy scarlet shallow sharp
shiny silent silver simple sleepy slow small smooth snowy soft solid sour spare steady steep sticky stormy
strange strong sturdy sunny sweet swift tall tender thick thin tidy tiny tired tough usual vast velvet warm weary
wet white wide wild windy wise wooden woolly yellow young""".split()
VERBS = """walk paint clean open listen visit climb collect cook count cover deliver discover explain fill finish
follow gather help hunt jump kick land laugh learn lift look mark melt mend need order pack pick plant play point
pour print pull push reach rest return roll sail search sort start stay talk test thank turn wait want warn wash
watch whistle wonder work yell bake borrow brush call check cross dance dream enjoy fold guard hope polish repair
remember rescue share sketch wander weigh whisper attach bounce boil carve chase cheer crawl decorate divide
drift float greet hover invent measure observe prepare protect question record relax settle stitch suggest trace
trust unlock""".split()


# Verbs that read oddly with an object ("looked the bean"); the sentence templates use the others.
INTRANSITIVE = set("walk listen look laugh rest stay wait dance dream wander crawl drift float hover relax settle "
                   "whistle wonder work yell jump land hope joke cheer rain".split())
TRANSITIVE = [v for v in VERBS if v not in INTRANSITIVE]


def plural(noun: str) -> str:
    return noun + "s"


def past(verb: str) -> str:
    return verb + ("d" if verb.endswith("e") else "ed")


def gerund(verb: str) -> str:
    return (verb[:-1] if verb.endswith("e") and not verb.endswith("ee") else verb) + "ing"


def third(verb: str) -> str:
    return verb + ("es" if verb.endswith(("s", "sh", "ch", "x")) else "s")


# Distinct plain-English words for RULER's common-words task (about a thousand).
WORD_POOL = sorted({w for n in NOUNS for w in (n, plural(n))} | set(ADJS)
                   | {w for v in VERBS for w in (v, past(v), gerund(v), third(v))})

# ------------------------------------------------------------------------------------------ sentence makers
GENRES: dict[str, list[str]] = {
    "story": [
        "{F} walked along the {adj} road until the lights of {T} appeared.",
        "The {noun} in the kitchen looked {adj}, and {F} did not dare to touch it.",
        "Nobody in {T} remembered when the {adj} {noun} had last been {verbed}.",
        "{F} sat by the window and {verbed} the {noun} while the rain went on.",
        "In the morning {F} and {F2} {verbed} the {nouns} behind the {adj} {noun2}.",
        "\"We should {verb} the {noun} before it gets dark,\" said {F2}.",
        "The {adj} smell of the {noun} reminded {F} of the summers in {T}.",
    ],
    "academic": [
        "In this section we describe how the {adj} {noun} model is trained on {n} thousand examples.",
        "Previous work has {verbed} {nouns} with {adj} features, but rarely at this scale.",
        "Table {n} reports the results of the {adj} baseline and of our {noun} encoder.",
        "We observe that {verbing} the {nouns} improves accuracy by {n} percent.",
        "The {noun} layer is followed by a {adj} {noun2} layer with {n} hidden units.",
        "Our analysis suggests that {adj} {nouns} are harder to {verb} than {adj2} ones.",
    ],
    "manual": [
        "To {verb} the {noun}, first make sure the {adj} {noun2} is switched off.",
        "Section {n} of this agreement applies to every {noun} owned by the tenant.",
        "The {adj} {noun} must be checked at least once every {n} days.",
        "If the {noun} light turns {adj}, {verb} the {noun2} and wait {n} seconds.",
        "Customers in {T} can return a {adj} {noun} within {n} days of purchase.",
        "Keep the {noun} away from the {noun2} and store it in a {adj} place.",
    ],
    "wiki": [
        "{T} is a small town in the {region} region, known for its {adj} {nouns}.",
        "The town's {noun} was built in {year} and {verbed} again in {year2}.",
        "{P} (born {year}) is a {job} who grew up near {T}.",
        "The {adj} {noun} of {T} is visited by about {n} thousand people a year.",
        "Local records show that the {noun} market of {T} opened in {year}.",
        "{P} is best known for a {adj} study of {nouns} published in {year}.",
    ],
    "report": [
        "In fiscal year {year}, the {office} spent ${n} million on {noun} programs in {T}.",
        "Officials told us that {adj} {noun} inspections were {verbed} late in {n} of the cases we reviewed.",
        "The {office} has not yet {verbed} a plan to {verb} the {nouns} at its {region} sites.",
        "We reviewed {n} files and interviewed staff at {T} and {T2}.",
        "According to agency data, the number of {adj} {nouns} grew by {n} percent since {year}.",
    ],
    "news": [
        "Residents of {T} woke up on {day} to find the {noun} {verbed} by the storm, officials said.",
        "\"It was a {adj} morning,\" {P}, a local {job}, told reporters.",
        "The mayor of {T} said the {noun} would reopen within {n} days.",
        "Police said {n} people were helped out of the {adj} {noun2} near {T2}.",
        "The council plans to spend ${n} million to {verb} the {nouns} next year.",
    ],
    "meeting": [
        "I think we should {verb} the {noun} before the next release.",
        "The {adj} version of the {noun} costs about {n} dollars per unit.",
        "Users told us they want a {adj} {noun}, not a {adj2} one.",
        "Let's come back to the {noun} after we look at the {noun2}.",
        "I can {verb} the numbers for the {noun} by {day}.",
        "Okay. Yeah, that makes sense.",
    ],
    "essay": [
        "Most people who {verb} a {noun} for the first time expect it to be {adj}.",
        "It took me years to notice that the {adj} {nouns} were the ones worth keeping.",
        "If you want to {verb} {nouns} well, start with a {adj} {noun2} and be patient.",
        "The surprising thing about {nouns} is how {adj} they become once you {verb} them.",
        "A {job} in {T} once told me that every {noun} has a {adj} side.",
        "That is why the best {nouns} tend to come from {adj} places.",
        "You can usually tell a {adj} {noun} from a {adj2} one by how it is {verbed}.",
    ],
}


def slots(rng: random.Random, **fixed: str) -> dict[str, str]:
    """Fresh random values for every placeholder the templates use; `fixed` overrides some."""
    (noun, noun2), (adj, adj2), (t1, t2), (f1, f2, f3) = (rng.sample(NOUNS, 2), rng.sample(ADJS, 2),
                                                          rng.sample(TOWNS, 2), rng.sample(FIRST, 3))
    values = {
        "F": f1, "F2": f2, "P": f"{f3} {rng.choice(LAST)}", "T": t1, "T2": t2, "noun": noun, "noun2": noun2,
        "adj": adj, "adj2": adj2, "verb": rng.choice(TRANSITIVE), "job": rng.choice(JOBS), "n": str(rng.randint(2, 95)),
        "year": str(rng.randint(1850, 2015)), "month": rng.choice(MONTHS), "day": rng.choice(DAYS),
        "office": rng.choice(OFFICES), "instrument": rng.choice(INSTRUMENTS), "item": rng.choice(ITEMS),
        "soup": rng.choice(SOUPS),
    }
    values.update(fixed)
    values.update(nouns=plural(values["noun"]), verbed=past(values["verb"]), verbing=gerund(values["verb"]),
                  year2=str(int(values["year"]) + rng.randint(5, 60)), region=REGION_OF[values["T"]])
    return values


def an(text: str) -> str:
    """Fix the article before a vowel: 'a orange' -> 'an orange' (but 'a usual')."""
    return re.sub(r"\b([Aa]) (?=[aeio]|u(?!s))", r"\1n ", text)


def sentence(rng: random.Random, genre: str, **fixed: str) -> str:
    text = an(rng.choice(GENRES[genre]).format(**slots(rng, **fixed)))
    return text[0].upper() + text[1:]


def paragraph(rng: random.Random, genre: str, k: int = 5, **fixed: str) -> str:
    return " ".join(sentence(rng, genre, **fixed) for _ in range(k))


def nwords(text: str) -> int:
    return len(text.split())


def fill(rng: random.Random, keys: list[str], budget: int, make: Callable[[], str]) -> list[str]:
    """Filler items from `make` until `keys` + filler reach `budget` words; keys land at random places, in order."""
    items: list[str] = []
    total = sum(map(nwords, keys))
    while total < budget:
        items.append(make())
        total += nwords(items[-1])
    for offset, pos in enumerate(sorted(rng.randint(0, len(items)) for _ in keys)):
        items.insert(pos + offset, keys[offset])
    return items


# One fact = (sentence placed in the text, question about it, gold answers).
FACTS = [
    ("{F} kept the {adj} {noun} in a box under the {noun2}.", "Where did {F} keep the {adj} {noun}?",
     ["in a box under the {noun2}", "under the {noun2}"]),
    ("The {noun} fair in {T} is held every year in {month}.", "In which month is the {noun} fair in {T} held?",
     ["{month}", "in {month}"]),
    ("{F} learned to play the {instrument} from {P}, a {job} from {T}.", "Who taught {F} to play the {instrument}?",
     ["{P}"]),
    ("The old road from {T} to {T2} is {n} miles long.", "How long is the old road from {T} to {T2}?",
     ["{n} miles", "{n} miles long"]),
    ("{F} named the {adj} boat Little {F2}.", "What did {F} name the {adj} boat?", ["Little {F2}"]),
    ("The {noun} shop on Mill Street was opened by {P} in {year}.", "Who opened the {noun} shop on Mill Street?",
     ["{P}"]),
]


def fact(rng: random.Random, kind: int | None = None) -> tuple[str, str, list[str]]:
    text, question, answers = FACTS[rng.randrange(len(FACTS)) if kind is None else kind % len(FACTS)]
    values = slots(rng)
    return an(text.format(**values)), an(question.format(**values)), [an(a.format(**values)) for a in answers]


# ------------------------------------------------------------------------------------------- code makers
CODE_CLASS = string.Template('''class $Cls:
    """A $adj $noun kept in stock."""

    def __init__(self, name: str, count: int = 0, price: float = $price) -> None:
        self.name = name
        self.count = count
        self.price = price
''')
CODE_METHODS = [
    "    def total(self) -> float:\n        return self.count * self.price\n",
    "    def restock(self, amount: int) -> None:\n        if amount < 0:\n"
    "            raise ValueError(\"amount must not be negative\")\n        self.count += amount\n",
    "    def sell(self, amount: int) -> float:\n        amount = min(amount, self.count)\n"
    "        self.count -= amount\n        return amount * self.price\n",
    "    def describe(self) -> str:\n        return f\"{self.name}: {self.count} at {self.price:.2f}\"\n",
    "    def is_empty(self) -> bool:\n        return self.count == 0\n",
]
CODE_LOADER = string.Template('''def load_$nouns(path: str) -> list[$Cls]:
    with open(path, encoding="utf-8") as handle:
        rows = json.load(handle)
    return [$Cls(**row) for row in rows]
''')


def code_block(rng: random.Random, noun: str) -> str:
    """A small Python class for `noun` plus a loader function."""
    values = {"Cls": noun.capitalize(), "noun": noun, "nouns": plural(noun), "adj": rng.choice(ADJS),
              "price": f"{rng.randint(1, 99)}.{rng.randint(1, 99):02d}"}
    methods = [m for m in CODE_METHODS if rng.random() < 0.7] or CODE_METHODS[:1]
    return "\n".join([an(CODE_CLASS.substitute(values)), *methods]) + "\n\n" + CODE_LOADER.substitute(values)


def code_blocks(rng: random.Random, budget: int) -> list[str]:
    nouns, blocks, total = rng.sample(NOUNS, len(NOUNS)), list[str](), 0
    while total < budget:
        blocks.append(code_block(rng, nouns[len(blocks) % len(nouns)]))
        total += nwords(blocks[-1])
    return blocks


def is_code_line(line: str) -> bool:
    """A line LongBench's code_sim_score would keep (non-empty, no comment or backtick)."""
    return bool(line.strip()) and not any(mark in line for mark in ("#", "`", "//", '"""'))


# ----------------------------------------------------------------------------- LongBench v1 generators
# Each takes (rng, target total words, record number) and returns (input, context, answers).
Example = tuple[str, str, list[str]]


def single_doc(genre: str, title: str, first_fact: int) -> Callable[[random.Random, int, int], Example]:
    def make(rng: random.Random, target: int, i: int) -> Example:
        text, question, answers = fact(rng, first_fact + i)
        key = paragraph(rng, genre, 2) + " " + text + " " + paragraph(rng, genre, 2)
        paras = fill(rng, [key], target - nwords(question) - nwords(answers[0]) - 5,
                     lambda: paragraph(rng, genre, rng.randint(3, 7)))
        return question, title.format(**slots(rng)).upper() + "\n\n" + "\n\n".join(paras), answers
    return make


def qasper(rng: random.Random, target: int, i: int) -> Example:
    corpus = f"{rng.choice(TOWNS)} {rng.choice(NOUNS).capitalize()} Corpus"
    kinds = [  # extractive, yes/no, unanswerable
        (f"We evaluate on the {corpus}, a collection of {rng.randint(2, 90)} thousand short texts.",
         "What dataset do they evaluate on?", [f"the {corpus}", corpus]),
        (an(f"We compare our model against a {rng.choice(ADJS)} baseline that ignores word order."),
         "Do they compare against a baseline?", ["Yes", "yes"]),
        (paragraph(rng, "academic", 1), "Which hardware do they use for training?", ["Unanswerable", "unanswerable"]),
    ]
    text, question, answers = kinds[i % 3]
    sections = ["Abstract", "Introduction", "Related Work", "Method", "Experiments", "Results", "Conclusion"]
    paras = fill(rng, [paragraph(rng, "academic", 2) + " " + text], target - nwords(question) - 20,
                 lambda: paragraph(rng, "academic", rng.randint(3, 6)))
    step = math.ceil(len(paras) / len(sections))
    body = "\n\n".join(f"{name}\n" + "\n".join(paras[j * step:(j + 1) * step]) for j, name in enumerate(sections))
    title = f"A {rng.choice(ADJS).capitalize()} {rng.choice(NOUNS).capitalize()} Model for Reading Long Texts"
    return question, title + "\n\n" + body, answers


def passages(rng: random.Random, keys: list[tuple[str, str]], budget: int, avoid: list[str]) -> str:
    """'Passage i:' blocks (title line, then text) in the style of LongBench's multi-document QA sets.

    Filler passages never mention the names in `avoid`, so the key passages stay the only evidence."""
    def make() -> str:
        while True:
            v = slots(rng)
            text = rng.choice([v["T"], v["P"]]) + "\n" + paragraph(rng, "wiki", rng.randint(3, 6), T=v["T"], P=v["P"])
            if not any(name in text for name in avoid):
                return text
    docs = fill(rng, [f"{t}\n{x}" for t, x in keys], budget, make)
    return "\n".join(f"Passage {j + 1}:\n{d}" for j, d in enumerate(docs))


def hotpotqa(rng: random.Random, target: int, i: int) -> Example:
    v = slots(rng)
    keys = [(v["P"], an(f"{v['P']} (born {v['year']}) is a {v['job']} from {v['T']}. ") + paragraph(rng, "wiki", 2)),
            (v["T"], f"{v['T']} is a town in the {v['region']} region. " + paragraph(rng, "wiki", 2, T=v["T"]))]
    question = f"In which region is the hometown of {v['P']}?"
    return question, passages(rng, keys, target - 20, [v["P"]]), [v["region"], f"the {v['region']} region"]


def twowikimqa(rng: random.Random, target: int, i: int) -> Example:
    (a, b), (y1, y2) = rng.sample(ADJS, 2), sorted(rng.sample(range(1930, 2015), 2))
    films = [f"The {a.capitalize()} {rng.choice(NOUNS).capitalize()}", f"The {b.capitalize()} {rng.choice(NOUNS).capitalize()}"]
    keys = [(f, f"{f} is a {y} drama film directed by {slots(rng)['P']}. " + paragraph(rng, "wiki", 2))
            for f, y in zip(films, (y1, y2))]
    order = rng.sample(films, 2)
    return f"Which film came out first, {order[0]} or {order[1]}?", passages(rng, keys, target - 20, films), [films[0]]


def musique(rng: random.Random, target: int, i: int) -> Example:
    v = slots(rng)
    company, river = "{} and {}".format(*rng.sample(LAST, 2)), rng.choice(RIVERS)
    keys = [(v["P"], an(f"{v['P']} worked for many years as a {v['job']} at {company}. ") + paragraph(rng, "wiki", 1)),
            (company, f"{company} is a firm based in {v['T']}. " + paragraph(rng, "wiki", 1)),
            (v["T"], f"{v['T']} lies on the banks of the {river}. " + paragraph(rng, "wiki", 1, T=v["T"]))]
    question = f"On which river is the town where the employer of {v['P']} is based?"
    return question, passages(rng, keys, target - 20, [v["P"], v["T"], company]), [river, f"the {river}"]


def summary_task(genre: str, header: str, opener: str) -> Callable[[random.Random, int, int], Example]:
    """gov_report / multi_news: a long text and a reference summary built from its key sentences."""
    def make(rng: random.Random, target: int, i: int) -> Example:
        v = slots(rng)
        keys = [sentence(rng, genre, T=v["T"], office=v["office"], noun=v["noun"]) for _ in range(rng.randint(5, 8))]
        summary = opener.format(**v) + " " + " ".join(keys)
        items = fill(rng, keys, target - nwords(summary),
                     lambda: paragraph(rng, genre, rng.randint(3, 6), T=v["T"], office=v["office"]))
        if genre == "news":  # a few articles, each a run of paragraphs
            step = math.ceil(len(items) / rng.randint(2, 4))
            body = "\n".join(f"Passage {j // step + 1}:\n" + " ".join(items[j:j + step])
                             for j in range(0, len(items), step))
        else:
            body = "\n\n".join(items)
        return "", header.format(**v) + body, [summary]
    return make


def qmsum(rng: random.Random, target: int, i: int) -> Example:
    people, v = rng.sample(FIRST, 4), slots(rng)
    a, b, c = people[:3]
    topic, adj, price, day = v["noun"], v["adj"], v["n"], v["day"]
    keys = [f"{a}: I think we should make the {topic} {adj}.",
            f"{b}: That would cost about {price} dollars per unit.",
            f"{c}: Then let's decide on the {topic} by {day}."]
    answer = (f"{a} suggested making the {topic} {adj}. {b} noted that it would cost about {price} dollars per "
              f"unit, and the group agreed to decide on the {topic} by {day}.")
    query = f"Summarize the discussion about the {topic}."
    lines = fill(rng, keys, target - nwords(query) - nwords(answer),
                 lambda: f"{rng.choice(people)}: " + paragraph(rng, "meeting", rng.randint(1, 3)))
    return query, "\n".join(lines), [answer]


TREC_CLASSES = ["Animal", "City", "Color", "Country", "Date", "Food", "Individual", "Location", "Other location",
                "Number", "Number of something"]
TREC_QUESTIONS = {
    "Animal": "What kind of animal lives in the {adj} {noun} near {T} ?",
    "City": "Which city is the largest in the {region} region ?",
    "Color": "What color is the {noun} on the flag of {T} ?",
    "Country": "Which country makes the most {nouns} ?",
    "Date": "When was the {noun} of {T} built ?",
    "Food": "What dish is made from {adj} {nouns} ?",
    "Individual": "Who {verbed} the first {adj} {noun} ?",
    "Location": "Where can you find a {adj} {noun} ?",
    "Other location": "What lake lies to the south of {T} ?",
    "Number": "What is the house number of the {noun} museum in {T} ?",
    "Number of something": "How many {nouns} are there in {T} ?",
}


def trec(rng: random.Random, target: int, i: int) -> Example:
    def example(label: str) -> tuple[str, str]:
        return an(TREC_QUESTIONS[label].format(**slots(rng))), label
    question, label = example(("Number of something", "Other location", "Individual")[i % 3])
    lines: list[str] = []
    total = nwords(question) + 2
    while total < target:
        q, lab = example(rng.choice(TREC_CLASSES))
        lines.append(f"Question: {q}\nType: {lab}")
        total += nwords(lines[-1])
    return f"Question: {question}\nType:", "\n".join(lines), [label]


def triviaqa(rng: random.Random, target: int, i: int) -> Example:
    def example() -> tuple[str, str, list[str]]:
        text, question, answers = fact(rng)
        return paragraph(rng, "wiki", 2) + " " + text + " " + paragraph(rng, "wiki", 1), question, answers
    passage, question, answers = example()
    query = f"Passage: {passage}\nQuestion: {question}\nAnswer:"
    shots: list[str] = []
    total = nwords(query) + nwords(answers[0])
    while total < target:
        p, q, a = example()
        shots.append(f"Passage: {p}\nQuestion: {q}\nAnswer: {a[0]}")
        total += nwords(shots[-1])
    return query, "\n\n".join(shots), answers


DIALOGUES = [
    ("{A}: Are you coming to the {noun} market on {day}?\n{B}: Yes! Should I bring my {item}?\n"
     "{A}: Please do. See you there.",
     "{B} is coming to the {noun} market on {day} and will bring the {item}."),
    ("{A}: Can I borrow your {item} tomorrow?\n{B}: Sure, but I need it back by {day}.\n{A}: No problem, thanks!",
     "{A} will borrow {B}'s {item} and return it by {day}."),
    ("{A}: Have you seen my {item}?\n{B}: I think you left it in the kitchen.\n{A}: Oh right, thank you!",
     "{A} left the {item} in the kitchen."),
    ("{A}: I'm stuck in traffic near {T}.\n{B}: How late will you be?\n{A}: About {n} minutes, sorry.\n"
     "{B}: Ok, I'll order the {soup} soup for us.",
     "{A} is stuck near {T} and will be about {n} minutes late. {B} will order the {soup} soup."),
]


def samsum(rng: random.Random, target: int, i: int) -> Example:
    def example() -> tuple[str, str]:
        a, b = rng.sample(FIRST, 2)
        dialogue, summary = rng.choice(DIALOGUES)
        v = slots(rng, A=a, B=b)
        return dialogue.format(**v), summary.format(**v)
    dialogue, summary = example()
    shots: list[str] = []
    total = nwords(dialogue) + nwords(summary) + 2
    while total < target:
        d, s = example()
        shots.append(f"Dialogue: {d}\nSummary: {s}")
        total += nwords(shots[-1])
    return f"Dialogue: {dialogue}\nSummary:", "\n\n".join(shots), [summary]


def passage_count(rng: random.Random, target: int, i: int) -> Example:
    size = max(4, target // 600)
    unique: list[str] = []
    paras: list[str] = []
    total = 0
    while total < target or len(paras) == len(unique):  # at least one duplicate
        if not unique or rng.random() < 0.6:
            unique.append(paragraph(rng, "wiki", size))
            paras.append(unique[-1])
        else:
            paras.append(rng.choice(unique))
        total += nwords(paras[-1])
    rng.shuffle(paras)
    return "", "\n\n".join(f"Paragraph {j + 1}: {p}" for j, p in enumerate(paras)), [str(len(unique))]


def passage_retrieval_en(rng: random.Random, target: int, i: int) -> Example:
    count = min(30, max(5, target // 140))
    people = rng.sample([f"{first} {last}" for first in FIRST for last in LAST], count)
    paras, lead = [], []
    for person in people:
        v = slots(rng, P=person)
        lead.append(an(f"a {v['job']} born in {v['T']} in {v['year']}, known for {v['verbing']} {v['adj']} "
                       f"{v['nouns']}"))
        paras.append(f"{person} is {lead[-1]}.")
        while nwords(paras[-1]) < (target - 40) // count:
            paras[-1] += " " + sentence(rng, "wiki", P=person, T=v["T"], year=v["year"], job=v["job"])
    pick = rng.randrange(count)
    abstract = f"The passage describes {lead[pick]}."
    context = "\n\n".join(f"Paragraph {j + 1}: {p}" for j, p in enumerate(paras))
    return abstract, context, [f"Paragraph {pick + 1}"]


def lcc(rng: random.Random, target: int, i: int) -> Example:
    head = f'"""Stock keeping for the {rng.choice(TOWNS)} {rng.choice(NOUNS)} workshop."""\nimport json\n\n\n'
    lines = (head + "\n\n".join(code_blocks(rng, target))).split("\n")
    last_block = max(j for j, line in enumerate(lines) if line.startswith("class "))
    cut = rng.choice([j for j in range(last_block + 1, len(lines)) if is_code_line(lines[j])])
    return "", "\n".join(lines[:cut]) + "\n", [lines[cut]]


def repobench_p(rng: random.Random, target: int, i: int) -> Example:
    pkg = rng.choice(NOUNS) + "_shop"
    blocks = code_blocks(rng, max(50, target - 120))
    names = [b.split()[1].rstrip(":") for b in blocks]  # "class Lantern:" -> "Lantern"
    context = "\n".join(f"# Path: src/{pkg}/{n.lower()}.py\nimport json\n\n\n{b}" for n, b in zip(names, blocks))
    first, second = rng.sample(names, 2) if len(names) > 1 else (names[0], names[0])
    current = (f"# Path: src/{pkg}/inventory.py\nimport json\n\nfrom {pkg}.{first.lower()} import {first}, "
               f"load_{plural(first.lower())}\nfrom {pkg}.{second.lower()} import {second}\n\n\n"
               f"def stock_names(path: str) -> list[str]:\n    items = load_{plural(first.lower())}(path)\n"
               f"    return [item.name for item in items]\n\n\n"
               f"def add_{second.lower()}(name: str, count: int) -> {second}:\n")
    return current, context, [f"    item = {second}(name, count=count)"]


LONGBENCH: dict[str, Callable[[random.Random, int, int], Example]] = {
    "narrativeqa": single_doc("story", "The {adj} {noun}", 0),
    "qasper": qasper,
    "multifieldqa_en": single_doc("manual", "{adj} {noun} guide", 3),
    "hotpotqa": hotpotqa,
    "2wikimqa": twowikimqa,
    "musique": musique,
    "gov_report": summary_task("report", "Report on the {noun} programs of the {office}\n\n",
                               "This report reviews the {noun} programs of the {office} in {T}."),
    "qmsum": qmsum,
    "multi_news": summary_task("news", "", "– A storm hit {T} this week, and the town is still counting the cost."),
    "trec": trec,
    "triviaqa": triviaqa,
    "samsum": samsum,
    "passage_count": passage_count,
    "passage_retrieval_en": passage_retrieval_en,
    "lcc": lcc,
    "repobench-p": repobench_p,
}
LONGBENCH_E = ["qasper", "multifieldqa_en", "hotpotqa", "2wikimqa", "gov_report", "multi_news", "trec", "triviaqa",
               "samsum", "passage_count", "passage_retrieval_en", "lcc", "repobench-p"]


def longbench_record(name: str, rng: random.Random, target: int, i: int) -> dict[str, object]:
    inp, context, answers = LONGBENCH[name](rng, target, i)
    return {"input": inp, "context": context, "answers": answers,
            "length": nwords(inp) + nwords(context) + nwords(answers[0]), "dataset": name, "language": "en",
            "all_classes": TREC_CLASSES if name == "trec" else None, "_id": f"{rng.getrandbits(192):048x}"}


# ------------------------------------------------------------------------------------------ LongBench v2
Question = tuple[str, str, list[str], str]  # question, correct choice, wrong choices, context


def v2_story(rng: random.Random, words: int, hard: bool) -> Question:
    towns, v = rng.sample(TOWNS, 4), slots(rng)
    keys = [f"After years of travelling, {v['F']} opened a small {v['noun']} shop in {towns[0]}."]
    keys += [f"{v['F']} once spent a long winter in {t}." for t in towns[1:]] if hard else []
    paras = fill(rng, keys, words, lambda: paragraph(rng, "story", rng.randint(3, 6), F=v["F"]))
    return f"In which town did {v['F']} open the {v['noun']} shop?", towns[0], towns[1:], "\n\n".join(paras)


def v2_table(rng: random.Random, words: int, hard: bool) -> Question:
    towns = rng.sample(TOWNS, max(8, words // 12))
    pops = rng.sample(range(1000, 90000), len(towns))
    rows = [f"| {t} | {REGION_OF[t]} | {p} | {rng.randint(1200, 1900)} |" for t, p in zip(towns, pops)]
    choices = sorted(rng.sample(range(len(towns)), 4), key=lambda j: -pops[j])
    table = "| Town | Region | Population | Founded |\n|---|---|---|---|\n" + "\n".join(rows)
    return ("Which of these towns has the largest population?", towns[choices[0]],
            [towns[j] for j in choices[1:]], table)


def v2_reports(rng: random.Random, words: int, hard: bool) -> Question:
    offices, noun, year = list(OFFICES[:4]), rng.choice(NOUNS), str(rng.randint(2000, 2020))
    amounts = rng.sample(range(10, 99), 4)
    docs: list[str] = []
    for office, amount in zip(offices, amounts):
        key = f"In fiscal year {year}, the {office} spent ${amount} million on {noun} programs."
        body = fill(rng, [key], words // 4, partial(paragraph, rng, "report", 4, office=office))
        docs.append(f"Report {len(docs) + 1}: {office}\n" + "\n".join(body))
    best = max(range(4), key=lambda j: amounts[j])
    return (f"Which office spent the most on {noun} programs in fiscal year {year}?", offices[best],
            [o for j, o in enumerate(offices) if j != best], "\n\n".join(docs))


def v2_manyshot(rng: random.Random, words: int, hard: bool) -> Question:
    good, bad = ADJS[:60], ADJS[60:]  # an arbitrary split the examples teach
    def review() -> tuple[str, str]:
        label = rng.choice(["approved", "rejected"])
        adj = rng.choice(good if label == "approved" else bad)
        return f"The {rng.choice(NOUNS)} from {rng.choice(TOWNS)} was {adj}.", label
    shots = fill(rng, [], words, lambda: "Review: {}\nLabel: {}".format(*review()))
    text, label = review()
    question = f"Following the labelled examples, which label should this review get? Review: {text}"
    wrong = [other for other in ("approved", "rejected", "pending", "unknown") if other != label]
    return question, label, wrong, "\n\n".join(shots)


def v2_agent(rng: random.Random, words: int, hard: bool) -> Question:
    actions: list[str] = []
    steps: list[str] = []
    while sum(map(nwords, steps)) < words:
        noun, place = rng.sample(NOUNS, 2)
        actions.append(f"{past(rng.choice(TRANSITIVE))} the {noun} in the {place}")
        steps.append(f"Step {len(steps) + 1}: The agent {actions[-1]}. Observation: the {noun} looks "
                     f"{rng.choice(ADJS)}.")
    j = rng.randrange(len(steps) - 1)
    wrong = rng.sample([a for a in actions if a != actions[j + 1]], 3)
    return (f"What did the agent do right after step {j + 1}?", f"It {actions[j + 1]}.",
            [f"It {a}." for a in wrong], "\n".join(steps))


def v2_code(rng: random.Random, words: int, hard: bool) -> Question:
    blocks = code_blocks(rng, words)
    names = [b.split()[1].rstrip(":") for b in blocks]  # "class Lantern:" -> "Lantern"
    j = rng.randrange(len(blocks))
    blocks[j] = blocks[j].replace("        self.price = price\n",
                                  "        self.price = price\n\n    def discount(self) -> float:\n"
                                  "        return self.price * 0.9\n", 1)
    wrong = rng.sample([n for n in names if n != names[j]], 3)
    return ("Which class defines a discount method?", names[j], wrong,
            "import json\n\n\n" + "\n\n".join(blocks))


LONGBENCH_V2 = [  # (maker, domain, sub_domain, difficulty, length label, context words)
    (v2_story, "Single-Document QA", "Literary", "easy", "short", 400),
    (v2_table, "Long Structured Data Understanding", "Table QA", "hard", "short", 900),
    (v2_reports, "Multi-Document QA", "Governmental", "easy", "medium", 1400),
    (v2_manyshot, "Long In-context Learning", "Many-shot learning", "hard", "medium", 1900),
    (v2_agent, "Long-dialogue History Understanding", "Agent history QA", "easy", "long", 2500),
    (v2_code, "Code Repository Understanding", "Code repo QA", "hard", "long", 3000),
]


def longbench_v2() -> list[dict[str, str]]:
    records = []
    for k, (maker, domain, sub, difficulty, length, words) in enumerate(LONGBENCH_V2):
        rng = random.Random(f"v2:{k}")
        question, right, wrong, context = maker(rng, words, difficulty == "hard")
        choices = [right, *wrong]
        rng.shuffle(choices)
        records.append({"_id": f"{rng.getrandbits(96):024x}", "domain": domain, "sub_domain": sub,
                        "difficulty": difficulty, "length": length, "question": question,
                        **{f"choice_{c}": x for c, x in zip("ABCD", choices)},
                        "answer": "ABCD"[choices.index(right)], "context": context})
    return records


# -------------------------------------------------------------------------------------------------- RULER
# scripts/data/synthetic/constants.py (TASKS) and template.py ("base"), verbatim.
RULER_TASKS = {
    "niah": (128, "Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize "
             "it. I will quiz you about the {type_needle_v} afterwards.\n{context}\nWhat are all the special magic "
             "{type_needle_v} for {query} mentioned in the provided text?",
             " The special magic {type_needle_v} for {query} mentioned in the provided text are"),
    "variable_tracking": (30, "Memorize and track the chain(s) of variable assignment hidden in the following "
                          "text.\n\n{context}\nQuestion: Find all variables that are assigned the value {query} in "
                          "the text above.",
                          " Answer: According to the chain(s) of variable assignment in the text above, {num_v} "
                          "variables are assigned the value {query}, they are: "),
    "common_words_extraction": (120, "Below is a numbered list of words. In these words, some appear more often "
                                "than others. Memorize the ones that appear most often.\n{context}\nQuestion: What "
                                "are the 10 most common words in the above list?",
                                " Answer: The top 10 words that appear most often in the list are:"),
    "freq_words_extraction": (50, "Read the following coded text and track the frequency of each coded word. Find "
                              "the three most frequently appeared coded words. {context}\nQuestion: Do not provide "
                              "any explanation. Please ignore the dots '....'. What are the three most frequently "
                              "appeared words in the above coded text?",
                              " Answer: According to the coded text above, the three most frequently appeared words "
                              "are:"),
    "qa": (32, "Answer the question based on the given documents. Only give me the answer and do not output any "
           "other words.\n\nThe following are given documents.\n\n{context}\n\nAnswer the question based on the "
           "given documents. Only give me the answer and do not output any other words.\n\nQuestion: {query}",
           " Answer:"),
}
BASE_TEMPLATE = "{task_template}"
NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
NEEDLE = "One of the special magic {type_needle_v} for {key} is: {value}."
DEPTHS = [round(100 * j / 39) for j in range(40)]  # np.round(np.linspace(0, 100, 40))
ESSAY_WORDS = paragraph(random.Random("essay"), "essay", 900).split()
Build = Callable[[int], tuple[str, list[str]]]


def full_template(task: str) -> str:
    """prepare.py: model template around the task template, then the answer prefix."""
    _, template, prefix = RULER_TASKS[task]
    return BASE_TEMPLATE.format(task_template=template) + prefix


def approx_tokens(text: str) -> int:
    return round(1.3 * nwords(text))


def fit(build: Build, limit: int, cap: int) -> tuple[str, list[str]]:
    """The longest build(n), 10 <= n <= cap, whose approximate token count stays within `limit` (binary search)."""
    lo, hi = 10, cap
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if approx_tokens(build(mid)[0]) <= limit else (lo, mid - 1)
    return build(lo)


def niah(seed: str, haystack: str, k: int, v: int, q: int) -> Build:
    def build(n: int) -> tuple[str, list[str]]:
        rng = random.Random(seed)
        keys = rng.sample([f"{a}-{b}" for a in ADJS for b in NOUNS], k)
        values = [[str(rng.randint(10**6, 10**7 - 1)) for _ in range(v)] for _ in keys]
        needles = [NEEDLE.format(type_needle_v="numbers", key=key, value=val)
                   for key, vals in zip(keys, values) for val in vals]
        rng.shuffle(needles)
        if haystack == "noise":
            sentences = [NOISE] * n
            for pos, needle in zip(sorted(rng.sample(range(n), len(needles)), reverse=True), needles):
                sentences.insert(pos, needle)
            context = "\n".join(sentences)
        else:  # essay: needles go between sentences at random depths
            sents = re.split(r"(?<=[.!?])\s+", " ".join(ESSAY_WORDS[:n]).strip())
            cuts = [0] + sorted(int(len(sents) * d / 100) for d in rng.sample(DEPTHS, len(needles))) + [len(sents)]
            parts: list[str] = []
            for j in range(1, len(cuts)):
                parts.append(" ".join(sents[cuts[j - 1]:cuts[j]]))
                if j - 1 < len(needles):
                    parts.append(needles[j - 1])
            context = " ".join(parts)
        picked = rng.sample(range(k), q)
        queries = [keys[j] for j in picked]
        query = ", ".join(queries[:-1]) + ", and " + queries[-1] if len(queries) > 1 else queries[0]
        template, type_needle_v = full_template("niah"), "numbers"
        if q * v == 1:  # niah.py's single-needle wording
            template = (template.replace("Some", "A").replace("are all", "is").replace("are", "is")
                        .replace("answers", "answer"))
            type_needle_v = type_needle_v[:-1]
        text = template.format(type_needle_v=type_needle_v, context=context, query=query)
        return text, [a for j in picked for a in values[j]]
    return build


def vt_chain(seed: str, icl: bool) -> Build:
    def build(n: int) -> tuple[str, list[str]]:
        rng = random.Random(seed)
        names: list[str] = []
        while len(names) < 5:
            name = "".join(rng.choices(string.ascii_uppercase, k=3 if icl else 5))
            names += [] if name in names else [name]
        value = "12345" if icl else str(rng.randint(10000, 99998))
        chain = [f"VAR {names[0]} = {value}"] + [f"VAR {names[j + 1]} = VAR {names[j]} " for j in range(4)]
        sentences = [NOISE] * n
        for j, pos in enumerate(sorted(rng.sample(range(n), len(chain)))):
            sentences.insert(pos + j, chain[j])
        context = "\n".join(sentences).replace(". \n", ".\n")
        return full_template("variable_tracking").format(context=context, query=value, num_v=5), names
    return build


def vt(seed: str) -> Build:
    """variable_tracking.py: a 1-shot example (fit to 500 tokens, its names and value re-randomized) goes first."""
    text, names = fit(vt_chain(seed + ":icl", True), 500, 500)
    example, rng = text + " " + " ".join(names) + "\n", random.Random(seed + ":randomize")
    for name in example.strip().split()[-5:]:
        example = example.replace(name, "".join(rng.choices(string.ascii_uppercase, k=len(name))))
    example = example.replace("12345", str(rng.randint(10000, 99998)))
    main = vt_chain(seed, False)

    def build(n: int) -> tuple[str, list[str]]:
        text, answer = main(n)
        cut = text.index(RULER_TASKS["variable_tracking"][1][:20])
        return text[:cut] + example + "\n" + text[cut:], answer
    return build


def cwe(seed: str) -> Build:
    def build(n: int) -> tuple[str, list[str]]:
        rng = random.Random(seed)
        def example(num: int, common_repeats: int, uncommon_repeats: int) -> tuple[str, list[str]]:
            words = rng.sample(WORD_POOL, num)
            listed = words[:10] * common_repeats + words[10:] * uncommon_repeats
            rng.shuffle(listed)
            return " ".join(f"{j + 1}. {w}" for j, w in enumerate(listed)), words[:10]
        template = full_template("common_words_extraction")
        shot_context, shot_answer = example(40, 10, 3)  # max_seq_length >= 4096: a 40-word example
        shot = template.format(num_cw=10, context=shot_context, query="") + " " + " ".join(
            f"{j + 1}. {w}" for j, w in enumerate(shot_answer))
        context, answer = example(n, 30, 3)
        return shot + "\n" + template.format(num_cw=10, context=context, query=""), answer
    return build


def fwe(seed: str, vocab_size: int) -> Build:
    def build(n: int) -> tuple[str, list[str]]:
        rng = random.Random(seed)
        vocab: set[str] = set()
        while len(vocab) < vocab_size:
            vocab.add("".join(rng.choices(string.ascii_lowercase, k=6)))
        ranked = sorted(vocab)
        rng.shuffle(ranked)
        ranked[0] = "..."  # the top-ranked word is noise
        zeta = math.pi ** 2 / 6  # zeta(alpha=2)
        words = [w for rank, w in enumerate(ranked, 1) for _ in range(int(n * rank ** -2.0 / zeta))]
        rng.shuffle(words)
        return full_template("freq_words_extraction").format(context=" ".join(words), query=""), ranked[1:4]
    return build


def qa(seed: str) -> Build:
    def build(n: int) -> tuple[str, list[str]]:
        rng = random.Random(seed)
        text, question, answers = fact(rng)
        docs = [paragraph(rng, "wiki", 2) + " " + text + " " + paragraph(rng, "wiki", 2)]
        docs += [paragraph(rng, "wiki", rng.randint(3, 6)) for _ in range(n - 1)]
        rng.shuffle(docs)
        context = "\n\n".join(f"Document {j + 1}:\n{d}" for j, d in enumerate(docs))
        return full_template("qa").format(context=context, query=question), answers
    return build


RULER: dict[str, tuple[str, Callable[[str, int], Build], int]] = {
    # task name -> (base task, builder from (seed, max_seq_length), search cap)
    "niah_single_1": ("niah", lambda s, L: niah(s, "noise", 1, 1, 1), 2000),
    "niah_multikey_1": ("niah", lambda s, L: niah(s, "essay", 4, 1, 1), len(ESSAY_WORDS)),
    "niah_multivalue": ("niah", lambda s, L: niah(s, "essay", 1, 4, 1), len(ESSAY_WORDS)),
    "vt": ("variable_tracking", lambda s, L: vt(s), 2000),
    "cwe": ("common_words_extraction", lambda s, L: cwe(s), len(WORD_POOL)),
    "fwe": ("freq_words_extraction", lambda s, L: fwe(s, (L - 50) // 50), 20000),
    "qa_1": ("qa", lambda s, L: qa(s), 400),
}


def ruler_record(task: str, index: int, max_len: int) -> dict[str, object]:
    base, make, cap = RULER[task]
    tokens_to_generate, _, prefix = RULER_TASKS[base]
    limit = int(max_len * (0.72, 0.8, 0.88)[index % 3]) - tokens_to_generate
    text, outputs = fit(make(f"ruler:{task}:{max_len}:{index}", max_len), limit, cap)
    length = approx_tokens(text) + tokens_to_generate
    assert length <= max_len, (task, max_len, length)
    cut = text.rfind(prefix[:10])  # the prepare scripts' rule: last match of the prefix's first 10 characters
    record: dict[str, object] = {"index": index, "input": text[:cut], "outputs": outputs, "length": length,
                                 "length_w_model_temp": length, "answer_prefix": text[cut:]}
    if base == "niah":  # niah.py overwrites `index` with the answer's character offset in `input`
        offset = text[:cut].find(outputs[0])
        record["index"] = offset
        record["token_position_answer"] = approx_tokens(text[:cut][:offset])
    return record


# ----------------------------------------------------------------------------------------------- InfiniteBench
# xinrongzhang2022/InfiniteBench's English files, one `{task}.jsonl` each: id, context, input, answer (a list) and
# options (four for the multiple-choice tasks, else empty). The noise line, the needle sentences, the JSON of
# Retrieve.KV and Math.Find's input follow its data/construct_synthetic_dataset.py; the rest is made up, and short.
IB_NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n"
Record = dict[str, object]


def ib_needle(needle: str, question: str, digits: int) -> Callable[[random.Random, int], Record]:
    """Retrieve.PassKey / Retrieve.Number: a needle among repeats of the noise line."""
    def make(rng: random.Random, i: int) -> Record:
        key = "".join(str(rng.randint(0, 9)) for _ in range(digits))
        n = rng.randint(12, 24)
        j = rng.randint(0, n)
        return {"context": IB_NOISE * j + needle.format(key=key) + IB_NOISE * (n - j), "input": question,
                "answer": [key], "options": []}
    return make


def ib_kv(rng: random.Random, i: int) -> Record:
    pairs = [(str(uuid.UUID(int=rng.getrandbits(128), version=4)), str(uuid.UUID(int=rng.getrandbits(128), version=4)))
             for _ in range(8)]
    key, value = rng.choice(pairs)
    text = "JSON data:\n{" + ", ".join(f'"{k}": "{v}"' for k, v in pairs) + "}"
    return {"context": text, "input": f'\nKey: "{key}"\nThe value associated with the specified key is: ',
            "answer": [value], "options": []}


def ib_book(rng: random.Random, key: str, words: int = 250) -> str:
    return "\n\n".join(fill(rng, [key], words, lambda: paragraph(rng, "story", rng.randint(3, 5))))


def ib_sum(rng: random.Random, i: int) -> Record:
    v = slots(rng)
    keys = [sentence(rng, "story", F=v["F"], T=v["T"]) for _ in range(3)]
    book = "\n\n".join(fill(rng, keys, 250, lambda: paragraph(rng, "story", rng.randint(3, 5))))
    return {"context": book, "input": "", "answer": [" ".join(keys)], "options": []}


def ib_qa(rng: random.Random, i: int) -> Record:
    text, question, answers = fact(rng)
    return {"context": ib_book(rng, text), "input": question, "answer": answers, "options": []}


def ib_choice(rng: random.Random, i: int) -> Record:
    kind = rng.randrange(len(FACTS))
    text, question, answers = fact(rng, kind)
    wrong: list[str] = []
    while len(wrong) < 3:
        other = fact(rng, kind)[2][0]
        wrong += [] if other in wrong or other == answers[0] else [other]
    options = [answers[0], *wrong]
    rng.shuffle(options)
    return {"context": ib_book(rng, text), "input": question, "answer": [answers[0]], "options": options}


def ib_dialogue(rng: random.Random, i: int) -> Record:
    people = [name.upper() for name in rng.sample(FIRST, 4)]
    lines = [f"{rng.choice(people)}: {paragraph(rng, 'meeting', rng.randint(1, 2))}" for _ in range(16)]
    j = rng.randrange(len(lines))
    name, said = lines[j].split(": ", 1)
    lines[j] = f"$$MASK$$: {said}"
    return {"context": "\n\n".join(lines), "input": "", "answer": [name], "options": []}


def ib_math(rng: random.Random, i: int) -> Record:
    numbers = [rng.randint(0, 99) for _ in range(60)]
    kind = ("largest number", "median number", "smallest number")[i % 3]
    ordered = sorted(numbers)
    answer = {"largest number": ordered[-1], "smallest number": ordered[0], "median number": (ordered[29] + ordered[30]) / 2}
    return {"context": str(numbers), "input": f"You should answer with only one number, no other words. The {kind} of the "
            "list is: ", "answer": [answer[kind]], "options": []}


def ib_code(rng: random.Random, i: int) -> Record:
    blocks = code_blocks(rng, 400)
    loaders = [f"load_{plural(b.split()[1].rstrip(':').lower())}" for b in blocks]  # "class Lantern:" -> load_lanterns
    j = rng.randrange(len(blocks))
    blocks[j] = blocks[j].replace("rows = json.load(handle)", "rows = json.loads(handle)")  # a file is not a string
    options = [loaders[j], *rng.sample([n for n in loaders if n != loaders[j]], 3)]
    rng.shuffle(options)
    return {"context": "import json\n\n\n" + "\n\n".join(blocks), "input": "", "answer": [loaders[j]], "options": options}


INFINITEBENCH: dict[str, Callable[[random.Random, int], Record]] = {
    "passkey": ib_needle("The pass key is {key}. Remember it. {key} is the pass key.\n", "What is the pass key?", 5),
    "number_string": ib_needle("The sequence of digits is {key}. Remember it. {key} is the sequence of digits.\n",
                               "What is the sequence of digits?", 10),
    "kv_retrieval": ib_kv,
    "longbook_sum_eng": ib_sum,
    "longbook_qa_eng": ib_qa,
    "longbook_choice_eng": ib_choice,
    "longdialogue_qa_eng": ib_dialogue,
    "math_find": ib_math,
    "code_debug": ib_code,
}


# --------------------------------------------------------------------------------------------------- main
def write_jsonl(path: Path, records: list[dict[str, object]], ensure_ascii: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=ensure_ascii) + "\n")


def main() -> None:
    for name in LONGBENCH:
        records = [longbench_record(name, random.Random(f"lb:{name}:{i}"), target, i)
                   for i, target in enumerate((300, 600, 1000))]
        write_jsonl(HERE / "longbench" / f"{name}.jsonl", records, ensure_ascii=False)
    for name in LONGBENCH_E:  # one record per LongBench-E bucket: 0-4k, 4-8k, 8k+ words
        records = [longbench_record(name, random.Random(f"lb_e:{name}:{i}"), target, i)
                   for i, target in enumerate((600, 4300, 8300))]
        write_jsonl(HERE / "longbench" / f"{name}_e.jsonl", records, ensure_ascii=False)
    (HERE / "longbench_v2").mkdir(exist_ok=True)
    with (HERE / "longbench_v2" / "data.json").open("w", encoding="utf-8") as out:
        json.dump(longbench_v2(), out, ensure_ascii=False, indent=2)
    for max_len in (4096, 8192):
        for task in RULER:
            records = [ruler_record(task, i, max_len) for i in range(3)]
            write_jsonl(HERE / "ruler" / str(max_len) / "data" / task / "validation.jsonl", records, ensure_ascii=True)
    for task, make in INFINITEBENCH.items():
        records = [{"id": i, **make(random.Random(f"ib:{task}:{i}"), i)} for i in range(2)]
        write_jsonl(HERE / "infinitebench" / f"{task}.jsonl", records, ensure_ascii=False)


if __name__ == "__main__":
    main()
