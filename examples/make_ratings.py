#!/usr/bin/env python3
"""Generate the synthetic product-review rating data set (regression: predict the stars, 1-5, as a number).

Every brand, product and review is invented. A review's wording carries its rating in graded
strength: aspect clauses range over five levels ("awful" < "disappointing" < "okay" < "good" <
"superb", each level with intensifiers, negations and hedges: "not bad at all", "far from good",
"absolutely superb"), and the stars follow from them: the mean level m of a review's aspect clauses
gives 5 stars for m >= 1.5, 4 for m >= 1/3, 3 for |m| < 1/3, 2 for m > -1.5 and 1 below, so mixed
reviews ("the sound is superb, but the battery life is awful") land in between. An optional overall
verdict and closing line always agree with the stars. No text names a star count or a number of
stars. Stdlib only, ``random.Random(seed)``; running the script twice gives byte-identical files.

    python examples/make_ratings.py            # writes examples/ratings/*.jsonl
    python examples/make_ratings.py --out DIR  # writes DIR/*.jsonl instead

Files: train.jsonl (1,200) and test.jsonl (300), fields {"id", "text", "stars", "product"}: `stars` an
integer 1-5 (the one regression target, balanced: 240 / 60 per star), `product` the product category
(kitchen | electronics | home | outdoor | apparel | toys). Every 4th phrase of every phrase list is held
out (train never uses it, each choice in a test review takes a held-out phrase with probability 1/2),
a few brands appear only in test, no two reviews of a split are near duplicates, and every test
review has word 5-gram Jaccard < 0.5 with every train review and passes tuneforge's own leakage
measures (examples/_overlap.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from random import Random

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _neardup import NearDupIndex, words  # noqa: E402
from _overlap import OverlapGuard  # noqa: E402

SEED = 5150
STARS = (1, 2, 3, 4, 5)
N_TRAIN, N_TEST = 1200, 300
WORD_RANGE = (6, 80)

# category -> (brands, items, aspects); an aspect is (noun phrase, plural?). The last brand is test-only.
CATEGORIES = {
    "kitchen": (["Copperleaf", "Saltmarsh", "Brewmoor", "Oakhollow", "Tidewell"],
                ["blender", "toaster", "frying pan", "coffee grinder", "stand mixer", "knife set"],
                [("the performance", False), ("cleaning it", False), ("the finish", False), ("the results", True)]),
    "electronics": (["Quasar", "Voltwing", "Pinecall", "Orbitron", "Lumenark"],
                    ["pair of headphones", "bluetooth speaker", "power bank", "smartwatch", "webcam", "e-reader"],
                    [("the battery life", False), ("the sound quality", False), ("the app", False),
                     ("the connection", False)]),
    "home": (["Bramble", "Mossgrove", "Lanternfly", "Hearthside", "Duskwood"],
             ["table lamp", "duvet", "rug", "set of curtains", "cushion", "storage box"],
             [("the colour", False), ("the material", False), ("the size", False), ("the comfort", False)]),
    "outdoor": (["Trailhead", "Galeproof", "Fernway", "Basalt", "Cragmoor"],
                ["backpack", "tent", "camping chair", "thermos flask", "head torch", "sleeping bag"],
                [("the waterproofing", False), ("the weight", False), ("the zips", True), ("the durability", False)]),
    "apparel": (["Harbourknit", "Meadowstep", "Northwind", "Slatehill", "Wrenfield"],
                ["jumper", "pair of jeans", "pair of trainers", "scarf", "raincoat", "hoodie"],
                [("the fit", False), ("the fabric", False), ("the stitching", False), ("the sizing", False)]),
    "toys": (["Puzzlewood", "Tumbletown", "Starling", "Snugglebun", "Marbleway"],
             ["board game", "jigsaw puzzle", "stunt kite", "building set", "plush toy", "marble run"],
             [("the quality of the pieces", False), ("the instructions", True), ("the fun factor", False),
              ("the durability", False)]),
}
GENERIC_ASPECTS = [("the build quality", False), ("the value for money", False), ("delivery", False),
                   ("the packaging", False), ("the design", False), ("customer service", False)]

# What follows "is"/"are", per level from -2 (awful) to +2 (superb).
PRED = {
    2: ["excellent", "superb", "outstanding", "brilliant", "absolutely superb", "truly excellent", "first-class",
        "as good as it gets", "flawless", "exceptional", "top-notch", "fantastic"],
    1: ["good", "nice", "pretty good", "quite good", "solid", "decent", "not bad at all", "better than expected",
        "pleasant", "fairly good", "really decent", "more than adequate"],
    0: ["okay", "average", "acceptable", "fine", "nothing special", "neither good nor bad", "just okay", "ordinary",
        "about what you'd expect", "so-so", "passable", "middle of the road"],
    -1: ["disappointing", "poor", "mediocre", "not great", "a bit weak", "not very good", "below average",
         "rather poor", "worse than expected", "not up to much", "underwhelming", "far from good"],
    -2: ["awful", "terrible", "dreadful", "appalling", "absolutely awful", "truly terrible", "a disaster", "useless",
         "abysmal", "shockingly bad", "atrocious", "pathetic"],
}
# One-aspect sentence frames: {A}/{a} aspect (capitalised or not), {be} is/are, {p} predicate, {it} it/they.
FRAMES = ["{A} {be} {p}.", "I'd say {a} {be} {p}.", "{A} {be} honestly {p}.", "As for {a}, {it} {be} {p}.",
          "In my experience {a} {be} {p}.", "{A}? {P}.", "I found {a} {p}.", "For me, {a} {be} {p}."]
# Two aspects in one sentence: same direction joined by "and", opposite directions by a contrast.
SAME = ["{A1} {be1} {p1}, and {a2} {be2} {p2}.", "{A1} {be1} {p1}; {a2} {be2} {p2} too.",
        "Both {a1} and {a2} are {p1}.", "{A1} {be1} {p1} and {a2} {be2} {p2} as well."]
CONTRAST = ["{A1} {be1} {p1}, but {a2} {be2} {p2}.", "Although {a1} {be1} {p1}, {a2} {be2} {p2}.",
            "{A1} {be1} {p1}. On the other hand, {a2} {be2} {p2}.", "{A1} {be1} {p1}, whereas {a2} {be2} {p2}.",
            "{A1} {be1} {p1}, yet {a2} {be2} {p2}.", "While {a1} {be1} {p1}, {a2} {be2} {p2}."]
# Aspect levels per star: the mean level decides the stars (see star_of), so they agree by construction.
COMPOSITIONS = {
    5: [(2,), (2, 2), (2, 1), (2, 2, 1), (1, 2)],
    4: [(1,), (1, 1), (2, -1), (1, 0), (2, 0), (1, 1, 0), (0, 1)],
    3: [(0,), (0, 0), (2, -2), (1, -1), (1, -1, 0), (-1, 1), (-2, 2)],
    2: [(-1,), (-1, -1), (-2, 1), (-1, 0), (-2, 0), (-1, -1, 0), (0, -1)],
    1: [(-2,), (-2, -2), (-2, -1), (-2, -2, -1), (-1, -2)],
}
VERDICTS = {
    5: ["Absolutely superb.", "An outstanding {item}.", "Easily the best {item} I've owned.", "Flawless from day one.",
        "I love it.", "Superb in every way.", "Couldn't be happier with it.", "Excellent, simply excellent.",
        "A fantastic buy.", "Nothing short of brilliant.", "It's perfect.", "Honestly outstanding."],
    4: ["A good {item}.", "Pretty good overall.", "Very nice, with a few small niggles.", "Solid and reliable.",
        "Good, not perfect.", "I'm happy with it.", "Really quite good.", "Almost excellent.", "Well worth the money.",
        "A nice little {item}.", "Good value overall.", "Better than most I've tried."],
    3: ["It's okay.", "An average {item}.", "Not bad, not brilliant.", "It does the job, nothing more.",
        "Mixed feelings about this one.", "Fine, I suppose.", "Neither great nor terrible.", "It's alright.",
        "Middle of the road.", "A so-so {item}.", "Some good, some bad.", "Decent enough, but forgettable."],
    2: ["Disappointing.", "Not great, to be honest.", "A bit of a letdown.", "Below average.", "I expected much more.",
        "Not a {item} I'd choose again.", "Underwhelming overall.", "Poor, with one or two redeeming features.",
        "Not good enough.", "Rather disappointing.", "Mostly bad, sadly.", "It falls short."],
    1: ["Awful.", "An absolutely terrible {item}.", "A complete waste of money.", "The worst {item} I've ever bought.",
        "Dreadful from start to finish.", "Truly awful.", "Do not buy this.", "Utter junk.", "It's a disaster.",
        "Appalling quality.", "Terrible in every way.", "Shockingly bad."],
}
CLOSINGS = {
    5: ["Would buy again in a heartbeat.", "Highly recommended.", "Buy it, you won't regret it.",
        "I've already ordered another one.", "Recommending it to everyone I know.", "Worth every penny."],
    4: ["I'd recommend it.", "Happy with the purchase.", "Would probably buy again.", "A safe choice.",
        "I'd buy it again.", "Recommended, with small reservations."],
    3: ["Might keep it, might not.", "It'll do for now.", "Can't decide whether to recommend it.",
        "Fine if it's on sale.", "I'm on the fence.", "Your mileage may vary."],
    2: ["Probably won't buy from this brand again.", "I expected more.", "I'd look elsewhere.",
        "Not worth the full price.", "I'm thinking of returning it.", "Can't really recommend it."],
    1: ["Returning it.", "Avoid.", "Save your money.", "Sent it straight back.", "Never again.",
        "Stay well clear."],
}
OPENERS = ["Bought the {brand} {item} last month.", "I've been using this {item} for a few weeks.",
           "Got this as a gift for my partner.", "Ordered it on a whim.", "This is my first {item} from {brand}.",
           "Replaced my old {item} with this one.", "Picked it up in the sale.", "We've used it daily since it arrived.",
           "I bought the {brand} {item} after reading a few reviews.", "Here are my thoughts after a month.",
           "It arrived on Tuesday.", "My second purchase from {brand}.", "Bought it for my teenage son.",
           "I needed a new {item} quickly.", "Used it over a long weekend.", "Ordered it to replace a broken one."]

DETAILS = ["I mostly use it at weekends.", "It came in a brown cardboard box.", "My partner uses it more than I do.",
           "I compared it with two other brands before ordering.", "It's the grey version.",
           "We keep it in the spare room.", "I've had it for about six weeks now.", "It was delivered to a parcel locker.",
           "The {item} is a bit smaller than my old one.", "I took it on holiday once.", "I paid with a gift card.",
           "The kids use it too."]


def star_of(levels: tuple[int, ...]) -> int:
    m = sum(levels) / len(levels)
    return 5 if m >= 1.5 else 4 if m >= 1 / 3 else 3 if m > -1 / 3 else 2 if m > -1.5 else 1


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


class Writer:
    """Builds one review at a time."""

    def __init__(self, rng: Random, held_out: bool) -> None:
        self.rng, self.held_out = rng, held_out

    def part(self, items: list) -> list:
        train = [x for i, x in enumerate(items) if i % 4 != 3]
        if self.held_out and self.rng.random() < 0.5:
            return [x for i, x in enumerate(items) if i % 4 == 3] or train
        return train

    def c(self, items: list):
        return self.rng.choice(self.part(items))

    def aspects(self, category: str, n: int) -> list[tuple[str, bool]]:
        own = CATEGORIES[category][2]
        pool = own + GENERIC_ASPECTS if self.rng.random() < 0.5 else own + own + GENERIC_ASPECTS
        picked: list[tuple[str, bool]] = []
        while len(picked) < n:
            a = self.rng.choice(pool)
            if a not in picked:
                picked.append(a)
        return picked

    def clause_vars(self, aspect: tuple[str, bool], level: int, k: str = "", avoid: str = "") -> dict[str, str]:
        noun, plural = aspect
        p = self.rng.choice([x for x in self.part(PRED[level]) if x != avoid])
        return {f"a{k}": noun, f"A{k}": cap(noun), f"be{k}": "are" if plural else "is", f"p{k}": p, f"P{k}": cap(p),
                f"it{k}": "they" if plural else "it"}

    def aspect_sentences(self, category: str, levels: tuple[int, ...]) -> list[str]:
        r = self.rng
        levels = list(levels)
        r.shuffle(levels)
        aspects = self.aspects(category, len(levels))
        out, i = [], 0
        while i < len(levels):
            if i + 1 < len(levels) and r.random() < 0.6:
                a, b = levels[i], levels[i + 1]
                same = (a > 0) == (b > 0) and (a < 0) == (b < 0)
                v = self.clause_vars(aspects[i], a, "1")
                v.update(self.clause_vars(aspects[i + 1], b, "2", avoid=v["p1"]))  # never "... superb, and ... superb"
                frames = SAME if same else CONTRAST
                if a != b:
                    frames = [f for f in frames if not f.startswith("Both")]  # one predicate for both: one level
                out.append(self.c(frames).format(**v))
                i += 2
            else:
                out.append(self.c(FRAMES).format(**self.clause_vars(aspects[i], levels[i])))
                i += 1
        return out

    def review(self, stars: int) -> tuple[str, str]:
        r = self.rng
        category = r.choice(sorted(CATEGORIES))
        brands, items, _ = CATEGORIES[category]
        brand = r.choice(brands if self.held_out else brands[:-1])
        item = r.choice(items)
        levels = r.choice(COMPOSITIONS[stars])  # not held out: the clause order is shuffled anyway
        assert star_of(levels) == stars, (levels, stars)
        parts = self.aspect_sentences(category, levels)
        if r.random() < 0.7:
            verdict = self.c(VERDICTS[stars]).format(item=item)
            if r.random() < 0.6:
                parts.insert(0, verdict)
            else:
                lower = verdict[1:2].islower() and "overall" not in verdict
                parts.append("Overall: " + verdict[:1].lower() + verdict[1:] if lower else verdict)
        if r.random() < 0.3:  # a detail that says nothing about the rating
            parts.insert(r.randrange(len(parts) + 1), self.c(DETAILS).format(item=item))
        if r.random() < 0.4:
            parts.insert(0, self.c(OPENERS).format(brand=brand, item=item))
        if r.random() < 0.4:
            parts.append(self.c(CLOSINGS[stars]))
        text = " ".join(parts)
        if r.random() < 0.06:
            text = text.lower()
        return text, category


def generate(rng: Random, n: int, prefix: str, held_out: bool, taken: set[str],
             against: NearDupIndex | None) -> list[dict]:
    """n reviews balanced over STARS, each new to `taken`, none close to `against` or to each other."""
    w = Writer(rng, held_out)
    stars = [STARS[i % len(STARS)] for i in range(n)]
    rng.shuffle(stars)
    within = OverlapGuard()
    out = []
    for i, s in enumerate(stars, start=1):
        tries = 0
        while True:
            tries += 1
            text, category = w.review(s)
            key = " ".join(words(text))
            n_words = len(text.split())
            if not WORD_RANGE[0] <= n_words <= WORD_RANGE[1] or key in taken \
                    or (against is not None and against.too_close(text)) or (tries < 500 and within.too_close(text)):
                continue
            break
        within.add(text)
        taken.add(key)  # case/punctuation variants count as duplicates
        out.append({"id": f"{prefix}-{i:04d}", "text": text, "stars": s, "product": category})
    return out


def build() -> dict[str, list[dict]]:
    taken: set[str] = set()
    train = generate(Random(SEED), N_TRAIN, "rating-train", False, taken, None)
    index = NearDupIndex()
    for rec in train:
        index.add(rec["text"])
    test = generate(Random(SEED + 1), N_TEST, "rating-test", True, taken, index)
    return {"train.jsonl": train, "test.jsonl": test}


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "ratings",
                    help="directory to write train/test.jsonl into (default: examples/ratings)")
    args = ap.parse_args(argv)
    for name, records in build().items():
        write_jsonl(args.out / name, records)
        print(f"wrote {len(records):5d} records to {args.out / name}")


if __name__ == "__main__":
    main()
