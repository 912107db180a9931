"""Words for `ruler_synth`: the needles' keys and values, vt's variable names, cwe's list words and
fwe's coded vocabulary with its Zipf counts.

RULER draws its words with the `wonderwords` package: keys and values as `adjective-noun`, cwe's
words from its noun, adjective and verb lists, then from a file of English words where those run
out. lcbench adds no dependency for this: the words are drawn with a seeded `random.Random` from
the English lists built in below, and where cwe needs more distinct words than they hold (long
lengths), from lcbench's three-syllable pseudo-words (`lcbench.tasks.words.universe(3)`), as
RULER falls back to its second list.
"""

from __future__ import annotations

import functools
import math
import random
import string
import uuid

from lcbench.tasks.words import universe

ADJECTIVES = """
able abundant acidic active adorable afraid agile alert alive amber ample ancient angry anxious aquatic arctic
ashamed awake awful bad bald bare basic bashful bitter bland blank bleak blind blue bold bouncy brave breezy brief
bright brisk broad broken brown bumpy busy calm careful caring casual cautious cheap cheerful chilly chubby civil
classic clean clever cloudy clumsy coastal cold colossal comfy common complex cool cosmic costly cozy crazy creamy
crisp crooked crowded cruel cuddly curious curly curved cute damp dapper daring dark dazzling dear decent deep
defiant delicate dense dental dim dirty dizzy double drab dreary dry dull dusty eager early earnest easy elastic
elated elderly electric elegant empty endless energetic enormous equal evil exact excited exotic faint fair faithful
fancy fast fearless feeble festive fierce filthy fine firm flat flaky fluffy foggy fond foolish formal fragile frail
frank free fresh friendly frosty frozen funny fuzzy gentle giant gifted giddy glad gleaming glossy golden good
gorgeous graceful grand gray greasy great green grim grumpy guilty handsome happy hard harsh hasty healthy heavy
helpful hidden high hollow honest hot huge humble hungry icy idle ill immense innocent jagged jolly joyful juicy
keen kind known large late lazy lean light little lively lonely long loose loud lovely loyal lucky lush mad magic
major massive mature meek mellow merry messy mighty mild minor misty modern modest moist muddy murky narrow nasty
native neat nervous new nice nimble noble noisy normal nutty obedient odd old open orange ornate oval pale parched
past patient peaceful perfect petite pink plain pleasant plucky plump polite poor precious pretty prickly proud
puny purple quaint quick quiet quirky rapid rare raw ready real red regal rich rigid ripe rough round royal rude
rural rustic sad safe salty sandy scary secret serene shaggy shallow sharp shiny short shy silent silky silly simple
skinny sleepy slim slow small smart smooth snowy soft solid sore sour spare spicy spiky splendid spotty square
stale steady steep sticky stiff stormy strange strict strong stuffy sturdy subtle sunny super sweet swift tall tame
tart tasty tender tense thick thin thirsty tidy tight tiny tired tough tranquil tricky true ugly unique upbeat
urban useful vacant vague vain valid vast velvet vivid warm wary weak weary wet whole wicked wide wild windy wise
witty wooden woolly worried young zany zealous
""".split()

NOUNS = """
acorn actor airport album alley anchor angle ankle answer ant apple apron arch arena army arrow artist attic
avenue baby bacon badge bag bakery balcony ball balloon banana band bank barn barrel basket bath beach beam bean
bear beard bed bee beetle bell belt bench berry bicycle bird biscuit blanket blossom boat body bone book boot
bottle boulder bowl box bracelet brain branch bread brick bridge broom brother bubble bucket buffalo bulb bundle
bus bush butter button cabin cable cactus cake camel camera camp canal candle canoe canvas canyon cap captain car
card carpet carrot cart castle cat cattle cave ceiling cellar chain chair chalk channel cheese cherry chess chest
chicken chimney circle city clam class cliff clock cloud clover coach coal coast coat cobweb coin collar comet
compass cook cookie copper coral corn corner cottage cotton couch country cousin cow crab cradle crane crater crayon
cream creek crow crown crystal cup curtain cushion dairy daisy dance deer desert desk diamond dinner dirt dock
doctor dog doll dolphin donkey door dragon drawer dream dress drum duck dune eagle ear earth egg elbow elephant
elevator engine envelope eye fabric face factory falcon farm father feather fence fern ferry field finger fire
fish flag flame flower flute fog forest fork fountain fox frog fruit furnace gadget garage garden gate gem ghost
giraffe glacier glass glove goat gold goose grape grass guitar gull hall hammer hammock hand harbor harp hat hawk
heart hedge helmet hen hill hive hobby honey hook horn horse hospital hotel house hunter hut iceberg igloo insect
island ivory jacket jaguar jam jar jelly jewel journal judge jungle kangaroo kettle key kitchen kite kitten knee
knife knot koala label ladder lake lamb lamp lantern laptop leaf lemon leopard letter library lighthouse lily lion
lizard lobster lock locket lotus magnet mailbox mango map maple marble market mask meadow medal melon mermaid meteor
mill mirror mitten monkey moon moose mop moss moth mountain mouse mug muffin museum mushroom nail napkin necklace
needle nest net night noodle notebook nurse oak oar ocean octopus office olive onion orange orchard organ ostrich
otter owl oyster paddle page pail painter palace panda pants paper parade parrot peach peanut pear pebble pelican
pencil penguin pepper piano pickle picture pie pig pigeon pillow pilot pine pipe pirate pizza planet plant plate
plum pocket poem pond pony pool potato pottery puddle pumpkin puppet puppy purse puzzle quail queen quilt rabbit
raccoon radio raft rain rainbow raven recipe reef ribbon rice river road robin robot rock rocket roof room rope rose
ruby saddle sail salad salmon sand sandal saucer scarf school scissors sea seal seed shadow shark sheep shelf shell
ship shirt shoe shovel shrimp singer sink skate skirt sky sled slipper snail snake snow soap sock sofa soldier soup
spider spoon squirrel stable stage star station statue steam stone stool storm stove straw stream street string
student submarine sugar suitcase sun swan sweater swing sword table tail teacher teapot tent thimble thread throne
thunder ticket tiger toast toe tomato tooth torch tower town toy tractor train tree truck trumpet tulip tunnel
turkey turtle umbrella valley vase vest village violin volcano wagon walnut walrus wand wardrobe wasp watch
waterfall wave whale wheel whistle willow window wing wizard wolf worm yacht yard zebra zipper
""".split()

VERBS = """
accept admire advise agree allow amuse answer appear arrange arrive ask attach bake balance bathe beg behave bless
boil borrow bounce breathe build bump burn bury buzz calculate call carry carve change chase cheer chew clap clean
climb collect comb compare complain count crawl cross cry dance decide deliver describe dig divide drag dream drift
drop dust earn enjoy enter escape examine explain explore fasten fetch fill find fix float fold follow gather glow
grab greet grin grow guard guess hammer handle hang harvest heal hike hop hug hum hunt hurry imagine invent invite
jog juggle jump kick kneel knit knock land laugh launch learn lift listen march measure melt mend mix nod obey offer
open order pack paddle paint park pause peel pinch plant play polish pour pray preach prefer print promise pull
punch push race rescue rest return roll rush sail scatter scrub search sew shake share shiver sing sketch skip
slide smile sneeze sniff sort spark spill spin splash sprout squeeze stack stamp stir stitch stretch stroll swim
swing tap teach tickle tie tiptoe travel trust tumble twirl unlock vanish wander wash wave weave whisper whistle
wink wobble wonder wrap yawn yell zoom
""".split()


@functools.cache
def plain_words() -> tuple[str, ...]:
    """The nouns, adjectives and verbs, sorted and distinct: cwe's words."""
    return tuple(sorted({*NOUNS, *ADJECTIVES, *VERBS}))


def cwe_words(rng: random.Random, count: int) -> list[str]:
    """`count` distinct words in random order: English while the lists hold enough, else
    pseudo-words. A longer draw extends a shorter one made from the same `rng` state."""
    english = plain_words()
    if count <= len(english):
        return rng.sample(english, len(english))[:count]
    return rng.sample(universe(3), count)


def make_value(kind: str, rng: random.Random) -> str:
    """A key or value of RULER's `kind`: `numbers` (7 digits), `words` (adjective-noun), `uuids` (v4)."""
    if kind == "numbers":
        return str(rng.randint(10**6, 10**7 - 1))
    if kind == "words":
        return f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}"
    if kind == "uuids":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    raise ValueError(f"unknown needle type {kind!r}; RULER's are numbers, words and uuids")


def variable_names(rng: random.Random, count: int, letters: int) -> list[str]:
    """`count` distinct upper-case names of `letters` letters (vt's variables)."""
    names: list[str] = []
    while len(names) < count:
        name = "".join(rng.choices(string.ascii_uppercase, k=letters))
        if name not in names:
            names.append(name)
    return names


def coded_vocabulary(rng: random.Random, size: int, letters: int = 6) -> list[str]:
    """fwe's vocabulary: `size` distinct random lower-case words in random order, the first made
    the dots `...` (RULER treats the top-ranked word as noise)."""
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choices(string.ascii_lowercase, k=letters)))
    vocabulary = sorted(words)
    rng.shuffle(vocabulary)
    vocabulary[0] = "..."
    return vocabulary


def zeta(s: float) -> float:
    """Riemann's zeta for s > 1 (the Zipf normaliser): a partial sum and its Euler-Maclaurin tail."""
    if s <= 1:
        raise ValueError(f"alpha must be above 1 for a Zipf distribution, got {s}")
    n = 64
    head = math.fsum(k**-s for k in range(1, n))
    return head + n ** (1 - s) / (s - 1) + n**-s / 2 + s * n ** (-s - 1) / 12


def zipf_counts(words: int, size: int, alpha: float) -> list[int]:
    """How often each rank of a `size`-word vocabulary appears among about `words` words (RULER's
    `int(words * k^-alpha / zeta(alpha))`)."""
    norm = zeta(alpha)
    return [int(words * k**-alpha / norm) for k in range(1, size + 1)]
