#!/usr/bin/env python3
"""Generate the synthetic product-review sentiment data set (3 classes).

Everything here is invented: the shop ("Larkspur Lane"), its products and every review. The
text is assembled from templates and phrase lists with ``random.Random(seed)`` (stdlib only),
so running the script twice gives byte-identical files.

    python examples/make_sentiment.py            # writes examples/sentiment/*.jsonl
    python examples/make_sentiment.py --out DIR  # writes DIR/*.jsonl instead

Files: train.jsonl (1,200), test.jsonl (300), tiny.jsonl (40); fields {"id", "text", "label"},
labels negative | neutral | positive (balanced). Reviews are short (5-15 words) or long
(40-120 words). Positive reviews may mention a small flaw and negative ones a small good point;
neutral reviews are mixed, lukewarm or "haven't used it yet", so no single word decides the label.
Test reviews also use a few products that never appear in train, and every test review is checked
to have word 5-gram Jaccard < 0.5 with every train review (the project's bar is 0.8).
"""
from __future__ import annotations

import argparse
import sys
import json
import re
from pathlib import Path
from random import Random

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _overlap import OverlapGuard  # noqa: E402

SEED = 4
LABELS = ("negative", "neutral", "positive")
N_TRAIN, N_TEST, N_TINY = 1200, 300, 40
SHORT_RANGE, LONG_RANGE = (5, 15), (40, 120)
SHORT_SHARE = 0.4
NEAR_DUP_JACCARD = 0.5  # stricter than the 0.8 the tests enforce

SHOP = "Larkspur Lane"

# (brand, product type, category, flags); flags: "s" = soft goods (fabric), "u" = needs setting up.
# All brands are made up.
PRODUCTS = [
    ("Copperleaf", "electric kettle", "kitchen", "u"), ("Saltmarsh", "chef's knife", "kitchen", ""),
    ("Ember", "cast-iron skillet", "kitchen", ""), ("Tidewater", "blender", "kitchen", "u"),
    ("Oakhollow", "chopping board", "kitchen", ""), ("Pebble", "coffee grinder", "kitchen", "u"),
    ("Frostline", "lunch box", "kitchen", ""), ("Brewmoor", "french press", "kitchen", ""),
    ("Nimbus", "desk lamp", "decor", "u"), ("Driftwood", "wall clock", "decor", "u"),
    ("Halcyon", "scented candle", "decor", ""), ("Lanternfly", "table lamp", "decor", "u"),
    ("Bramble", "wool throw", "textiles", "s"), ("Mossgrove", "linen duvet cover", "textiles", "s"),
    ("Cedarfall", "bath mat", "textiles", "s"), ("Loomwell", "cushion cover", "textiles", "s"),
    ("Hearthside", "knitted blanket", "textiles", "s"),
    ("Quasar", "wireless headset", "electronics", "u"), ("Voltwing", "power bank", "electronics", "u"),
    ("Pinecall", "bluetooth speaker", "electronics", "u"), ("Lumo", "clip-on reading light", "electronics", "u"),
    ("Skylark", "wireless charger", "electronics", "u"), ("Orbitron", "smartwatch", "electronics", "u"),
    ("Ternlight", "fitness tracker", "electronics", "u"), ("Wavecrest", "sunrise alarm clock", "electronics", "u"),
    ("Trailhead", "20L backpack", "outdoor", "s"), ("Galeproof", "rain jacket", "outdoor", "s"),
    ("Summit", "thermos flask", "outdoor", ""), ("Fernway", "camping chair", "outdoor", "u"),
    ("Basalt", "hiking pole", "outdoor", "u"), ("Glowworm", "head torch", "outdoor", "u"),
    ("Harbourknit", "jumper", "apparel", "s"), ("Meadowstep", "cotton shirt", "apparel", "s"),
    ("Northwind", "wool scarf", "apparel", "s"), ("Slatehill", "denim jacket", "apparel", "s"),
    ("Wrenfield", "hoodie", "apparel", "s"), ("Thistledown", "beanie", "apparel", "s"),
    ("Quillstone", "notebook", "stationery", ""), ("Inkwell", "journal", "stationery", ""),
    ("Ledgerly", "sketchbook", "stationery", ""), ("Papercrane", "weekly planner", "stationery", ""),
    ("Rootbound", "plant pot", "garden", ""), ("Greenthumb", "garden kneeler", "garden", ""),
    ("Dewdrop", "watering can", "garden", ""), ("Hivewood", "bird feeder", "garden", "u"),
    ("Puzzlewood", "wooden train set", "toys", "u"), ("Tumbletown", "building block set", "toys", "u"),
    ("Starling", "stunt kite", "toys", "u"), ("Snugglebun", "plush rabbit", "toys", "s"),
]
# These brands only ever appear in test reviews (unseen fillers).
TEST_ONLY_BRANDS = ("Brewmoor", "Lanternfly", "Hearthside", "Wavecrest", "Glowworm", "Thistledown",
                    "Papercrane", "Hivewood")


def A(pos, neg, mid, mild_pos, mild_neg):
    return {"pos": pos, "neg": neg, "mid": mid, "mild_pos": mild_pos, "mild_neg": mild_neg}


# Clauses are lower-case, without a final full stop, and read correctly after "that".
# pos/neg: clear praise/complaint; mid: plain observation; mild_*: a small plus/minus.
GENERIC = {
    "build": A(
        ["it feels really solid", "the build quality is excellent", "it's sturdier than I expected",
         "everything about it feels well made", "the materials feel premium", "it has held up perfectly so far"],
        ["it feels cheap and flimsy", "a part snapped off within a week", "the finish started peeling after a few days",
         "it arrived with a crack down one side", "the build quality is poor", "it already looks worn out after a month"],
        ["the build quality is about average", "it feels neither flimsy nor especially sturdy",
         "it seems reasonably well made, but time will tell", "the materials are what you'd expect at this price"],
        ["it feels sturdy enough", "it seems decently made", "the finish is neat"],
        ["it feels a little lightweight", "there's a small scuff on one side", "one edge is slightly rough"],
    ),
    "build_soft": A(
        ["the stitching is immaculate", "the material feels really high quality", "it's held its shape wash after wash",
         "the quality of the fabric is superb", "it feels built to last for years"],
        ["the stitching came loose within a week", "it started pilling after two wears",
         "there's a hole in the seam already", "the fabric feels thin and cheap", "it lost its shape almost immediately"],
        ["the stitching looks okay", "the fabric is a medium weight", "the quality is about average",
         "it's made the way most of these are"],
        ["the stitching looks neat", "the fabric is pleasant enough", "it's held up fine so far"],
        ["there's a loose thread here and there", "the fabric creases easily", "the material is a bit thin"],
    ),
    "value": A(
        ["it's fantastic value for the money", "it's half the price of similar ones and just as good",
         "the price is more than fair", "you get a lot for what you pay"],
        ["it's massively overpriced for what it is", "at this price I expected far better",
         "it isn't worth even half of what I paid", "cheaper versions do the job better"],
        ["the price is about what I expected", "it's priced similarly to other brands",
         "it was on sale, so the price was reasonable", "it's neither cheap nor expensive"],
        ["the price is reasonable", "it was fairly priced", "it was a bit cheaper than the alternatives"],
        ["it's a bit pricey", "it's slightly overpriced", "it costs a little more than I'd like"],
    ),
    "looks": A(
        ["it looks even better than in the photos", "the colour is gorgeous", "it looks lovely",
         "it looks really stylish", "everyone who sees it asks where I got it"],
        ["the colour is nothing like the photos", "it looks much cheaper in person",
         "the colour looks washed out", "the design is clunky and ugly in person"],
        ["it looks like it does in the photos", "the colour is a shade darker than pictured",
         "the design is plain but inoffensive", "it looks fine, if a little plain"],
        ["it looks nice enough", "the colour is pleasant", "the design is quite neat"],
        ["the colour is slightly off", "it looks a bit plainer than in the photos", "the logo is a little too big"],
    ),
    "size": A(
        ["the size is perfect", "it's nice and compact", "it's just the right size", "it's a really handy size"],
        ["it's far smaller than the listing suggests", "it's way too big and bulky",
         "the dimensions in the listing are wrong", "it's too small to be of any use"],
        ["it's the size stated in the listing", "it's a bit bigger than I pictured",
         "it's a standard size", "it's slightly smaller than I imagined"],
        ["the size works for me", "it's a handy size", "it doesn't take up much room"],
        ["it's a touch smaller than I'd like", "it's a little bulky", "it takes up more room than expected"],
    ),
    "setup": A(
        ["setting it up took two minutes", "the instructions are clear and simple",
         "it was ready to use straight out of the box", "it's really intuitive to use"],
        ["the instructions are useless", "it took me over an hour to get it working",
         "there were no instructions in the box at all", "it's really confusing to use"],
        ["setup was straightforward enough", "the instructions are basic",
         "it took a little while to figure out", "the manual is short and to the point"],
        ["setup was easy enough", "it was simple to get going", "the instructions do the job"],
        ["the instructions could be clearer", "setup was a bit fiddly", "the manual is printed in tiny type"],
    ),
    "delivery": A(
        ["it arrived a day earlier than promised", "delivery was super quick",
         "it was delivered the very next day", "shipping was fast and the tracking was spot on"],
        ["it arrived nine days late", "the courier left it out in the rain",
         "delivery took almost three weeks", "the tracking link never worked and it showed up late"],
        ["it arrived on the expected date", "delivery took about four days",
         "it arrived within the estimated window", "it turned up when the shop said it would"],
        ["delivery was on the quick side", "it came a little early", "the courier was friendly"],
        ["delivery took a day longer than quoted", "the tracking updates were patchy", "it came a bit late"],
    ),
    "packaging": A(
        ["the packaging was neat and fully recyclable", "it was packed really carefully",
         "it came beautifully wrapped", "the box was sturdy and well padded"],
        ["the box was crushed when it arrived", "it came in a flimsy bag with no padding",
         "the packaging was torn open", "there was a ridiculous amount of plastic packaging"],
        ["it came in a plain cardboard box", "the packaging was standard",
         "it was packed in a normal box with some paper", "the packaging was nothing special"],
        ["the packaging was decent", "the box was recyclable", "it was wrapped with some care"],
        ["the box was a bit battered", "there was more plastic than needed", "the box was far too big for it"],
    ),
    "service": A(
        ["customer service answered my question within an hour", "the support team was incredibly helpful",
         "the shop sorted out a small issue straight away", "customer service was friendly and quick"],
        ["customer service never replied to my messages", "support kept sending me copy-paste answers",
         "the shop refused to help when I asked about a replacement", "I was on hold for forty minutes"],
        ["customer service replied after a couple of days", "I had one question and got a standard reply",
         "support answered eventually", "I haven't needed customer service yet"],
        ["customer service was polite", "support answered my question", "the shop replied the same day"],
        ["customer service was slow to reply", "support took a while to get back to me",
         "the shop's reply was a bit vague"],
    ),
}
CATEGORY = {
    "kitchen": A(
        ["it's a joy to use every day", "it makes cooking so much quicker", "it's easy to clean afterwards",
         "it works perfectly even with daily use"],
        ["it's a nightmare to clean", "it stopped working properly after a fortnight",
         "it leaves a weird plastic smell on everything", "it started to warp after a few washes"],
        ["it works the same as my old one did", "cleaning it takes a few minutes, like most kitchen things",
         "it's fine for everyday cooking", "it does what a basic one would do"],
        ["it's easy enough to clean", "it does a decent job in the kitchen", "it's handy for quick meals"],
        ["it's a little awkward to clean", "it's a bit noisy", "it takes up a fair bit of counter space"],
    ),
    "decor": A(
        ["it really brightens up the space", "it fits in perfectly with the rest of my decor",
         "it makes the room feel so much cosier", "it has become the centrepiece of the room"],
        ["it has a strong chemical smell that won't go away", "it wobbles no matter where I put it",
         "it makes the room look cheap", "it looks out of place in every room I tried"],
        ["it blends into the room without standing out", "it does its job in the living room",
         "it fits the room well enough", "it's a fairly ordinary piece of decor"],
        ["it looks nice in the hallway", "it adds a bit of warmth to the room", "it suits the bedroom"],
        ["it's a little less bright than I hoped", "it wobbles slightly", "the glow is a bit harsh"],
    ),
    "textiles": A(
        ["it's soft and lovely to the touch", "it makes the bedroom feel so much cosier",
         "it washes beautifully", "it's wonderfully warm without being heavy"],
        ["it faded badly after the first wash", "it has a strong chemical smell that won't go away",
         "it's rough and scratchy", "it shed fluff all over the sofa"],
        ["it's soft enough, nothing more", "it washes like any other", "it fits the room well enough",
         "it's a medium thickness"],
        ["it's fairly soft", "it came out of the wash fine", "it's warm enough"],
        ["it creases easily", "it faded a little after washing", "it sheds a bit of fluff"],
    ),
    "electronics": A(
        ["the battery easily lasts a whole week", "it connected to my phone instantly",
         "it charges really fast", "it works flawlessly every single day"],
        ["the battery dies within a couple of hours", "it keeps disconnecting every few minutes",
         "it gets worryingly hot while charging", "it stopped charging after ten days"],
        ["the battery lasts about as long as advertised", "connecting it took a couple of tries",
         "it charges in roughly two hours", "the companion app is basic"],
        ["the battery life is decent", "it connects reliably enough", "it charges fairly quickly"],
        ["the battery could last longer", "it occasionally drops the connection", "the app is a bit clunky"],
    ),
    "outdoor": A(
        ["it survived a week of camping without a scratch", "it's light enough to forget I'm carrying it",
         "it coped brilliantly on a long hike", "it handled wind and rain without any trouble"],
        ["it broke on the very first hike", "it's far heavier than advertised",
         "it fell apart on the first camping trip", "it let in water the first time it rained"],
        ["it did fine on a short walk", "it's about as heavy as other ones I've used", "it's okay for day trips",
         "it coped with a light drizzle, but I haven't tested it in heavy rain"],
        ["it's reasonably light", "it did well on a day hike", "it packs down quite small"],
        ["it's a bit heavy for long hikes", "it's slightly awkward to carry", "one strap is a bit short"],
    ),
    "apparel": A(
        ["it fits like it was made for me", "the fabric is lovely and soft",
         "it's so comfortable I wear it all the time", "it washed perfectly without shrinking"],
        ["it shrank two sizes in the first wash", "the fabric is scratchy and itchy",
         "the sizing is completely off", "the colour ran in the wash and ruined a load of whites"],
        ["it fits true to size", "the fabric is a bit thinner than I expected",
         "it's comfortable enough for everyday wear", "it's a standard fit"],
        ["it's comfortable enough", "the fit is decent", "it's warm enough for autumn"],
        ["the sleeves are a bit long", "it's slightly tight on the shoulders", "it creases easily"],
    ),
    "stationery": A(
        ["the paper is thick and ink doesn't bleed through", "it's a pleasure to write in",
         "it lies completely flat when open", "it's made my daily planning much easier"],
        ["the ink bleeds straight through the pages", "the binding fell apart within days",
         "the cover bent the first time I carried it", "the pages tore out almost immediately"],
        ["the paper is average quality", "it's fine for jotting down notes", "it's a pretty standard one",
         "the pages are a normal thickness"],
        ["the paper is decent", "it opens fairly flat", "the cover is nice to hold"],
        ["some ink shows through the page", "the elastic strap is a bit loose", "the corners dent easily"],
    ),
    "garden": A(
        ["it's sturdy enough for daily use in the garden", "it looks great out on the patio",
         "it has survived weeks of wind and rain", "it makes gardening that bit easier"],
        ["it rusted after the first rain", "it cracked in the first frost",
         "the plastic went brittle within weeks", "it fell apart after one season"],
        ["it holds up in the garden so far", "it does the job for a small garden", "it works like any other one",
         "it's been outside for a couple of weeks, too soon to judge durability"],
        ["it has coped with the weather so far", "it's handy in the garden", "it looks fine on the patio"],
        ["it's a bit lightweight for windy days", "the paint has chipped slightly", "it stains easily"],
    ),
    "toys": A(
        ["the kids haven't put it down since it arrived", "it kept my niece busy for hours",
         "it's clearly safe and well finished", "it's educational and genuinely fun"],
        ["a piece broke off in the first hour", "the kids lost interest after five minutes",
         "it has sharp edges that worry me", "pieces were missing from the box"],
        ["the kids play with it now and then", "it's a decent toy for the age range",
         "my nephew seems to like it well enough", "it's a standard toy, similar to others we have"],
        ["the kids like it", "it keeps them busy for a while", "it seems safe enough"],
        ["the kids got bored of it fairly quickly", "a couple of pieces are a bit fiddly",
         "the paint has worn on one corner"],
    ),
}
MINOR = ("looks", "size", "delivery", "packaging", "service")

# Harder clauses: negated opposites and expectation reversals, so that words such as "cheap",
# "flimsy", "solid" or "worth" occur on both sides and the label depends on the whole sentence.
TRICKY = {
    "build": (["I expected it to feel cheap, but it's really solid", "nothing about it feels flimsy",
               "it doesn't feel cheap at all", "I haven't had a single problem with it"],
              ["it looked sturdy in the photos, but in reality it's flimsy", "it doesn't feel solid at all",
               "nothing about it feels well made", "I was hoping for something built to last, but no"]),
    "build_soft": (["I worried the fabric would be thin, but it's lovely and thick",
                    "it hasn't pilled or lost its shape at all"],
                   ["I expected decent quality, but the fabric is thin and cheap",
                    "it isn't anywhere near as well made as it looks"]),
    "value": (["I thought it would be overpriced, but it's worth every cent", "it's not expensive for what you get",
               "I'd happily have paid more for it"],
              ["it isn't worth the money", "the reviews promised great value, but it's a rip-off",
               "I'd have been annoyed even if it were half the price"]),
    "looks": (["I wasn't sure about the colour, but it's lovely in person", "it doesn't look cheap at all"],
              ["the photos make it look great, but in person it looks cheap",
               "it doesn't look anything like the lovely pictures"]),
    "size": (["I worried it would be too small, but it's spot on", "it's not bulky at all"],
             ["it's not the size I was promised", "I expected something compact, but it's enormous"]),
    "setup": (["I was dreading the setup, but it took a few minutes", "it isn't complicated at all"],
              ["the box says easy setup, but it was anything but", "nothing about the setup is intuitive"]),
    "delivery": (["I thought it would take ages, but it came the next morning"],
                 ["the shop promised next-day delivery, but it took over a week"]),
    "packaging": (["it wasn't over-packaged, just a neat box"],
                  ["it was packed so badly I'm surprised it survived"]),
    "service": (["I expected a slow reply, but support got back to me within the hour"],
                ["the shop says it has great support, but nobody ever got back to me"]),
    "kitchen": (["I was sceptical, but it's the best thing in my kitchen now", "it isn't a pain to clean at all"],
                ["it looked great in the shop photos, but it's useless in the kitchen",
                 "it isn't safe to use, the handle gets far too hot"]),
    "decor": (["I wasn't sure it would suit the room, but it looks perfect"],
              ["I expected it to brighten up the room, but it just looks cheap"]),
    "textiles": (["I thought it might be scratchy, but it's really soft"],
                 ["it looked soft and cosy online, but it's rough and scratchy"]),
    "electronics": (["the battery isn't a problem at all, it goes for days",
                     "I had no trouble connecting it, it just worked"],
                    ["the battery doesn't last anywhere near as long as advertised",
                     "it's supposed to connect instantly, but it never does"]),
    "outdoor": (["I was worried it wouldn't survive the trip, but it was perfect"],
                ["it's sold as tough and waterproof, but it didn't survive one trip"]),
    "apparel": (["I feared it would shrink, but it came out of the wash perfect", "it's not itchy at all"],
                ["it looked comfortable, but it's not comfortable at all", "it doesn't fit the way the chart says"]),
    "stationery": (["I expected the ink to bleed, but it doesn't show through at all"],
                   ["it's sold as premium paper, but the ink bleeds through everything"]),
    "garden": (["I thought it might rust, but it still looks new"],
               ["it's supposed to be weatherproof, but it rusted in a week"]),
    "toys": (["I wasn't sure the kids would like it, but they adore it"],
             ["it's meant to be fun, but the kids wouldn't touch it twice"]),
}
for _name, (_pos, _neg) in TRICKY.items():
    _table = CATEGORY[_name] if _name in CATEGORY else GENERIC[_name]
    _table["pos"] = _table["pos"] + _pos
    _table["neg"] = _table["neg"] + _neg

# ---------------------------------------------------------------- sentence frames
POS_FIRST = ["{C}.", "Honestly, {c}.", "I love that {c}.", "First of all, {c}."]
POS_FRAMES = ["{C}.", "I was pleasantly surprised that {c}.", "What I like most is that {c}.",
              "{C}, which is exactly what I wanted.", "Really happy that {c}.", "{C} - brilliant.",
              "On top of that, {c}.", "Even better, {c}.", "Also, {c}.", "And {c}, which is a bonus."]
NEG_FIRST = ["{C}.", "Unfortunately, {c}.", "The problem is that {c}.", "Right away I noticed that {c}."]
NEG_FRAMES = ["{C}.", "What really bothers me is that {c}.", "{C}, which is frankly unacceptable.",
              "Sadly, {c}.", "To make things worse, {c}.", "I can't believe that {c}.", "On top of that, {c}.",
              "Worse still, {c}.", "Also, {c}.", "And {c}, which is just annoying."]
SHARED_FRAMES = ["{C}.", "Also, {c}.", "I noticed that {c}.", "I found that {c}.", "Oh, and {c}.",
                 "Then there's the fact that {c}.", "As for the rest, {c}.", "Worth mentioning that {c}.",
                 "In practice, {c}.", "Another thing: {c}."]
PLAIN_FRAMES = ["{C}.", "Also, {c}.", "Another thing: {c}."]  # for clauses that carry their own contrast
MID_FRAMES = ["{C}.", "As far as I can tell, {c}.", "{C}, for what it's worth.", "I'd say {c}.",
              "In terms of the basics, {c}.", "So far {c}.", "{C}, as you'd expect."]
MINOR_CON_FRAMES = ["The only small downside is that {c}.", "If I had to nitpick, {c}.",
                    "One minor thing: {c}, but it's not a big deal.", "{C}, but honestly that hardly matters.",
                    "Slight niggle: {c}. Didn't spoil it for me though.", "Okay, {c}, but who cares."]
MINOR_PRO_FRAMES = ["To be fair, {c}.", "I'll give it this: {c}.", "{C}, but that's about the only good thing.",
                    "Sure, {c}, but that doesn't make up for the rest.", "Credit where it's due: {c}. Still no.",
                    "Yes, {c}, but so what."]
MIXED_FRAMES = ["{C1}, but {c2}.", "On the plus side, {c1}; on the minus side, {c2}.",
                "{C1}. On the other hand, {c2}.", "While {c1}, {c2}.", "{C1}, although {c2}.",
                "Good: {c1}. Not so good: {c2}.", "{C1}. Then again, {c2}."]

POS_VERDICTS = ["Would definitely buy again.", "Highly recommend it.", "Five stars from me.",
                "Best purchase I've made this year.", "Already thinking of getting a second one.",
                "Worth every penny.", "Couldn't be happier with it.", "I'd recommend it to anyone.",
                "No regrets at all.", "Really glad I went for this one.", "Absolutely delighted overall.",
                "It has exceeded my expectations.", "A lovely little purchase, thank you {shop}.",
                "Will be ordering more from {shop}.", "Ten out of ten, honestly.", "So pleased I chose it.",
                "Easily the best {kind} I've had.", "Great job, {shop}."]
NEG_VERDICTS = ["I'm returning it.", "Would not recommend.", "Save your money.", "One star, and that's generous.",
                "Very disappointed overall.", "I want a refund.", "Avoid.", "Never ordering this again.",
                "What a waste of money.", "I regret buying it.", "It's going straight back.",
                "Not worth the price at all.", "Really let down by {shop} this time.",
                "Steer clear of this one.", "I expected so much better.", "Two stars would be too many.",
                "Easily the worst {kind} I've had.", "Back to my old {kind}, sadly."]
NEU_VERDICTS = ["It does the job, nothing special.", "Overall it's fine.", "Three stars: okay, but not amazing.",
                "It's okay for the price.", "Neither great nor terrible.", "Not bad, not great.",
                "It meets expectations, no more, no less.", "Perfectly adequate.",
                "Can't really fault it, can't really rave about it either.", "Average, really.",
                "It's alright and does what it says.", "Middle of the road overall.",
                "Some good points, some bad ones, so it evens out.", "A solid three out of five.",
                "I might keep it, I might not.", "It's serviceable.", "A very ordinary {kind}, all in all.",
                "Fine, but I wouldn't go out of my way for it."]
NEU_EARLY_VERDICTS = ["I'll update this review once I've used it more.", "Too early to say if it's worth it.",
                      "Hard to say yet whether I'd buy it again.", "Will report back after a few weeks.",
                      "No real opinion so far.", "Reserving judgement for now."]
NOT_USED = ["I haven't had a chance to use it much yet", "I've only tried it once so far",
            "it's mostly sat on the shelf so far", "I've barely taken it out of the box",
            "I only unpacked it yesterday", "I haven't tested it properly yet"]

OPENERS_ANY = ["I bought the {full} {when}.", "Ordered the {full} {purpose}.",
               "We picked up the {full} during the {season} sale.",
               "Bought this {kind} {purpose} after reading a few reviews.",
               "This is my second order from {shop}; this time it was the {full}.",
               "I'd been looking for a new {kind} for a while and settled on this one from {brand}.",
               "Got the {full} {purpose}.", "Quick background: I needed a new {kind} {purpose}.",
               "Picked the {full} over two similar ones because of the price.",
               "My old {kind} finally gave up, so I ordered the {full} {when}."]
OPENERS_USED = ["I've had this {kind} for {dur} now.", "After {dur} of using the {full}, here's my take.",
                "My review after {dur} with the {full}."]
CONTEXT = ["For context, I'm fairly picky about this kind of thing.", "I usually shop around a lot before buying.",
           "I went back and forth between colours for ages.", "I've owned plenty of similar ones over the years.",
           "I compared a few options before choosing this one.", "I don't usually write reviews, but here goes.",
           "It was one of the few in stock at the time.", "A friend had recommended the brand.",
           "I had read mixed things about the brand, so I went in with an open mind.",
           "Here's how it has gone so far, in no particular order."]
WHEN = ["last month", "a few weeks ago", "in the January sale", "two months ago", "at the start of the year",
        "last week", "back in the autumn", "a while ago"]
DURATIONS = ["about a month", "three weeks", "two months", "half a year", "a couple of weeks", "six weeks",
             "nearly a year", "ten days"]
PURPOSES = ["to replace an old one", "as a gift for my partner", "for our new flat", "for my home office",
            "for my parents", "as a treat for myself", "for my brother's birthday", "for everyday use",
            "for my sister's housewarming", "for the caravan", "for a friend who just moved", "for my dad"]
SEASONS = ["spring", "summer", "winter", "midseason", "weekend"]

SHORT_POS_EXCLAIM = ["Brilliant!", "Love it.", "So pleased.", "Really happy with this.", "Great buy.", "Wow.",
                     "Lovely.", "Fantastic!", "Impressed."]
SHORT_NEG_EXCLAIM = ["Terrible.", "Very disappointed.", "Awful.", "Not happy.", "Ugh.", "Don't bother.",
                     "Shocking.", "Rubbish."]
SHORT_POS_TAIL = ["Recommended.", "Would buy again.", "Five stars.", "Very happy.", "Worth it.",
                  "No complaints at all.", "Great stuff.", "Thrilled."]
SHORT_NEG_TAIL = ["Returned it.", "Avoid.", "Waste of money.", "One star.", "Not impressed.", "Never again.",
                  "Sending it back.", "Poor."]
SHORT_NEU_TAIL = ["It's fine.", "Nothing special.", "Okay.", "Average.", "Does the job.", "Fair enough.",
                  "Three stars.", "Meh, it's alright.", "Decent enough.", "So-so."]
SHORT_POS_FIXED = ["Best {kind} I've ever owned.", "My new favourite {kind}, honestly.",
                   "Exactly what I wanted, and it arrived quickly.", "Not bad at all, actually really impressed.",
                   "Can't fault it in any way.", "Really impressed with the {full}.",
                   "Bought a second one for my sister.", "Does everything I hoped and more.",
                   "Surprisingly good for the price!", "Perfect gift, went down a treat.",
                   "The {full} is a little gem.", "Far better than the {kind} I had before.",
                   "Use it every day and still love it.", "Couldn't ask for a better {kind}."]
SHORT_NEG_FIXED = ["Worst {kind} I've ever bought.", "Broke after two uses. Avoid.", "Not worth the money, sadly.",
                   "Doesn't work as described.", "Looked nothing like the pictures and broke quickly.",
                   "Sent the {full} straight back.", "Would give zero stars if I could.",
                   "I really wanted to like it, but no.", "Don't waste your money on the {full}.",
                   "Fell apart within a week.", "Far worse than the {kind} I had before.",
                   "Cheaply made and overpriced. Disappointed."]
SHORT_NEU_FIXED = ["Does the job, nothing special.", "Arrived on time; haven't used it much yet.",
                   "It's okay. Not amazing, not awful.", "Exactly as described, nothing more.",
                   "Fine for the price, I suppose.", "Haven't tried it properly yet, looks as pictured.",
                   "It's a {kind}. It works.", "Average {kind}, does what it says.",
                   "Some good points, some bad.", "Still deciding whether I like the {full}.",
                   "It's a gift, so can't comment on use yet.", "Okay overall, a few small niggles.",
                   "Much like any other {kind}, really.", "Neither better nor worse than my old {kind}."]

PROTECTED = {"not", "no", "never", "nor", "but", "though", "although", "only", "little", "slightly"}


# ---------------------------------------------------------------- helpers
def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    w = words(text)
    if len(w) < n:
        return {tuple(w)}
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


class NearDupIndex:
    """Inverted index over word 5-grams: the highest Jaccard of a text with any indexed text."""

    def __init__(self) -> None:
        self.guard = OverlapGuard()
        self.sets: list[set[tuple[str, ...]]] = []
        self.index: dict[tuple[str, ...], list[int]] = {}

    def add(self, text: str) -> None:
        self.guard.add(text)
        s = shingles(text)
        i = len(self.sets)
        self.sets.append(s)
        for g in s:
            self.index.setdefault(g, []).append(i)

    def too_close(self, text: str) -> bool:
        """Near by our 5-gram bar, or by tuneforge's own leakage check (see _overlap.py)."""
        return self.max_jaccard(text) >= NEAR_DUP_JACCARD or self.guard.too_close(text)

    def max_jaccard(self, text: str) -> float:
        s = shingles(text)
        counts: dict[int, int] = {}
        for g in s:
            for i in self.index.get(g, ()):
                counts[i] = counts.get(i, 0) + 1
        return max((inter / (len(s) + len(self.sets[i]) - inter) for i, inter in counts.items()), default=0.0)


class Writer:
    """Builds one review at a time from the phrase lists."""

    def __init__(self, rng: Random, products: list[tuple[str, str, str, str]], held_out: bool):
        self.rng = rng
        self.products = products
        self.held_out = held_out  # may this writer use the phrasings reserved for test?

    def part(self, options: list[str]) -> list[str]:
        """Every 4th phrasing of a list (of 4 or more) is reserved for test, so test reviews use wording
        that train never shows; train writers only see the rest."""
        if self.held_out or len(options) < 4:
            return list(options)
        return [x for i, x in enumerate(options) if i % 4 != 3]

    def c(self, options: list[str]) -> str:
        return self.rng.choice(self.part(options))

    def fill(self, template: str, prod) -> str:
        brand, kind = prod[0], prod[1]
        r = self.rng
        return template.format(full=f"{brand} {kind}", brand=brand, kind=kind, shop=SHOP, when=self.c(WHEN),
                               dur=self.c(DURATIONS), purpose=self.c(PURPOSES), season=self.c(SEASONS))

    @staticmethod
    def major(prod) -> tuple[str, ...]:
        """Aspects the overall verdict is really about, for this product."""
        return ("build", "value", "category") + (("setup",) if "u" in prod[3] else ())

    @staticmethod
    def minor(prod) -> tuple[str, ...]:
        return tuple(a for a in MINOR if not (a == "size" and prod[2] == "apparel"))

    def clause(self, prod, aspect: str, kind: str, simple: bool = False) -> str:
        if aspect == "category":
            table = CATEGORY[prod[2]]
        elif aspect == "build" and "s" in prod[3]:
            table = GENERIC["build_soft"]
        else:
            table = GENERIC[aspect]
        options = table[kind]
        if simple:  # no built-in contrast, so it can be joined with "but"
            options = [o for o in options if " but " not in o and not o.startswith("I")]
        return self.c(options)

    def framed(self, frames: list[str], c: str) -> str:
        if " but " in c or c.startswith("I"):  # "I expected X, but Y": no extra framing
            frames = [f for f in frames if f in PLAIN_FRAMES] or ["{C}."]
        elif "," in c:  # avoid "x, y, for what it's worth." pile-ups
            frames = [f for f in frames if not f.startswith("{C},")] or frames
        return self.c(frames).format(C=cap(c), c=c)

    def pick(self, pool, k: int) -> list[str]:
        pool = list(pool)
        self.rng.shuffle(pool)
        return pool[:k]

    # -------- long reviews
    def opener(self, prod, fresh: bool = False) -> str:
        pool = OPENERS_ANY if fresh else OPENERS_ANY + OPENERS_USED
        text = self.fill(self.c(pool), prod)
        if not fresh and self.rng.random() < 0.3:  # some reviewers set the scene at length
            text += " " + self.c(CONTEXT)
        return text

    def one_sided(self, prod, kind: str, first: list[str], frames: list[str]) -> list[str]:
        r = self.rng
        asp = self.pick(self.major(prod), r.randint(2, 3)) + self.pick(self.minor(prod), r.randint(0, 1))
        r.shuffle(asp)
        frames = self.part(frames)
        r.shuffle(frames)
        parts = [self.framed([self.c(first)], self.clause(prod, asp[0], kind))]
        for a, frame in zip(asp[1:], frames):
            if r.random() < 0.5:  # label-neutral wording: the clause alone carries the sentiment
                frame = self.c(SHARED_FRAMES)
            parts.append(self.framed([frame], self.clause(prod, a, kind)))
        return parts, asp

    def long_review(self, label: str, prod) -> str:
        r = self.rng
        if label in ("positive", "negative"):
            parts = [self.opener(prod)] if r.random() < 0.85 else []
            pos = label == "positive"
            body, used = self.one_sided(prod, "pos" if pos else "neg", POS_FIRST if pos else NEG_FIRST,
                                        POS_FRAMES if pos else NEG_FRAMES)
            parts += body
            if r.random() < 0.45:  # a small flaw / small good point that does not change the verdict
                a = r.choice([x for x in self.major(prod) + self.minor(prod) if x not in used])
                c = self.clause(prod, a, "mild_neg" if pos else "mild_pos")
                parts.append(self.framed(MINOR_CON_FRAMES if pos else MINOR_PRO_FRAMES, c))
            if r.random() < 0.7 or len(parts) < 3:
                parts.append(self.fill(self.c(POS_VERDICTS if pos else NEG_VERDICTS), prod))
            return " ".join(parts)
        mode = r.random()
        if mode < 0.5:  # genuinely mixed: a plus and a minus of similar weight
            parts = [self.opener(prod)] if r.random() < 0.85 else []
            if r.random() < 0.6:
                a1, a2 = self.pick(self.major(prod) + self.minor(prod), 2)
                plus, minus = self.clause(prod, a1, "mild_pos"), self.clause(prod, a2, "mild_neg")
            else:
                a1, a2 = self.pick(self.minor(prod), 2)
                plus, minus = self.clause(prod, a1, "pos", True), self.clause(prod, a2, "neg", True)
            if r.random() < 0.5:
                plus, minus = minus, plus
            parts.append(self.c(MIXED_FRAMES).format(C1=cap(plus), c1=plus, c2=minus))
            if r.random() < 0.6:
                rest = [a for a in self.major(prod) + self.minor(prod) if a not in (a1, a2)]
                parts.append(self.framed(MID_FRAMES, self.clause(prod, r.choice(rest), "mid")))
            parts.append(self.fill(self.c(NEU_VERDICTS), prod))
        elif mode < 0.75:  # lukewarm: only middling observations
            parts = [self.opener(prod)] if r.random() < 0.85 else []
            for a in self.pick(self.major(prod) + self.minor(prod), r.randint(2, 4)):
                parts.append(self.framed(MID_FRAMES + SHARED_FRAMES, self.clause(prod, a, "mid")))
            parts.append(self.fill(self.c(NEU_VERDICTS), prod))
        else:  # arrived, not really used yet
            parts = [self.opener(prod, fresh=True)]
            parts.append(self.framed(["{C}.", "{C}, as promised.", "{C}, no problems there."],
                                     self.clause(prod, "delivery", "mid")))
            parts.append(cap(self.c(NOT_USED)) + self.c([".", ", so I can't say much about it.",
                                                               ", so this is just a first impression."]))
            for a in self.pick(("looks", "packaging", "build") + (("size",) if prod[2] != "apparel" else ()),
                               r.randint(1, 2)):
                parts.append(self.framed(MID_FRAMES, self.clause(prod, a, "mid")))
            parts.append(self.c(NEU_EARLY_VERDICTS))
        return " ".join(parts)

    # -------- short reviews
    def short_review(self, label: str, prod) -> str:
        r = self.rng
        mode = r.random()
        aspects = self.major(prod) + self.minor(prod)
        if label in ("positive", "negative"):
            pos = label == "positive"
            if mode < 0.35:
                return self.fill(self.c(SHORT_POS_FIXED if pos else SHORT_NEG_FIXED), prod)
            c = self.clause(prod, r.choice(aspects), "pos" if pos else "neg")
            if mode < 0.65:
                return f"{self.c(SHORT_POS_EXCLAIM if pos else SHORT_NEG_EXCLAIM)} {cap(c)}."
            return f"{cap(c)}. {self.c(SHORT_POS_TAIL if pos else SHORT_NEG_TAIL)}"
        if mode < 0.35:
            return self.fill(self.c(SHORT_NEU_FIXED), prod)
        if mode < 0.7:
            c = self.clause(prod, r.choice(aspects), "mid")
            return f"{cap(c)}. {self.c(SHORT_NEU_TAIL)}"
        a1, a2 = self.pick(aspects, 2)
        plus, minus = self.clause(prod, a1, "mild_pos"), self.clause(prod, a2, "mild_neg")
        if r.random() < 0.5:
            plus, minus = minus, plus
        return f"{cap(plus)}, but {minus}."

    def typo(self, text: str) -> str:
        """One human-looking slip (never inside negations or hedges)."""
        r = self.rng
        toks = text.split(" ")
        kind = r.random()
        if kind < 0.25 and "it's" in toks:
            toks[r.choice([i for i, t in enumerate(toks) if t == "it's"])] = "its"
            return " ".join(toks)
        if kind < 0.35:
            return text[:1].lower() + text[1:]
        cands = [i for i, t in enumerate(toks) if t.isalpha() and len(t) >= 5 and t.lower() not in PROTECTED]
        if not cands:
            return text
        i = r.choice(cands)
        w = toks[i]
        j = r.randrange(1, len(w) - 2)
        if kind < 0.7:
            w = w[:j] + w[j + 1] + w[j] + w[j + 2:]   # swap two letters
        elif kind < 0.85:
            w = w[:j] + w[j + 1:]                      # drop a letter
        else:
            w = w[:j] + w[j] + w[j:]                   # double a letter
        toks[i] = w
        return " ".join(toks)

    def review(self, label: str, short: bool) -> str:
        lo, hi = SHORT_RANGE if short else LONG_RANGE
        while True:
            prod = self.rng.choice(self.products)
            text = self.short_review(label, prod) if short else self.long_review(label, prod)
            if lo <= len(text.split()) <= hi:
                break
        if self.rng.random() < 0.07:
            text = self.typo(text)
        return text


def generate(rng: Random, products, n: int, prefix: str, taken: set[str], held_out: bool,
             against: NearDupIndex | None = None, short_share: float = SHORT_SHARE) -> list[dict]:
    """n records, balanced over LABELS, every text new to `taken` and not near any text in `against`."""
    w = Writer(rng, products, held_out)
    labels = [LABELS[i % 3] for i in range(n)]
    rng.shuffle(labels)
    out = []
    within = OverlapGuard()  # no near duplicates inside a split either: a carved validation split stays clean
    for i, label in enumerate(labels, start=1):
        short = rng.random() < short_share
        tries = 0
        while True:
            tries += 1
            text = w.review(label, short)
            if " ".join(words(text)) in taken:
                continue
            if against is not None and against.too_close(text):
                continue
            if tries < 500 and within.too_close(text):
                continue
            break
        within.add(text)
        taken.add(" ".join(words(text)))  # case/punctuation variants count as duplicates
        out.append({"id": f"{prefix}-{i:04d}", "text": text, "label": label})
    return out


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def build() -> dict[str, list[dict]]:
    train_products = [p for p in PRODUCTS if p[0] not in TEST_ONLY_BRANDS]
    taken: set[str] = set()
    train = generate(Random(SEED), train_products, N_TRAIN, "sent-train", taken, held_out=False)
    index = NearDupIndex()
    for rec in train:
        index.add(rec["text"])
    test = generate(Random(SEED + 1), PRODUCTS, N_TEST, "sent-test", taken, held_out=True, against=index)
    tiny = generate(Random(SEED + 2), PRODUCTS, N_TINY, "sent-tiny", taken, held_out=True, short_share=0.5)
    return {"train.jsonl": train, "test.jsonl": test, "tiny.jsonl": tiny}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "sentiment",
                    help="directory to write train/test/tiny.jsonl into (default: examples/sentiment)")
    args = ap.parse_args(argv)
    for name, records in build().items():
        write_jsonl(args.out / name, records)
        print(f"wrote {len(records):5d} records to {args.out / name}")


if __name__ == "__main__":
    main()
