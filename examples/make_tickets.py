#!/usr/bin/env python3
"""Generate the synthetic "Brightkettle" support-ticket extraction data set (spans, BIO tags and JSON).

Brightkettle is the invented kettle maker of examples/support-bot. Its customers write support tickets
and forward order e-mails; a model should pull out ORDER_ID ("BK-48213"), PRODUCT (the shop's product
names, multi-word ones too: "BK-500 Cirrus", "Copper Rim travel mug"), DATE ("12 March 2026",
"2026-03-12", "March 12"; relative words such as "yesterday" or "last week" are NOT entities) and AMOUNT
("€129.00", "$45", "129 euros"), and tell the ticket's ISSUE type: damaged (arrived broken or stopped
working), late_delivery, refund, wrong_item, billing or other. Every customer, order and ticket is made
up. Customers sign with a first name; a few leave an e-mail address (example.com/.org/.net) or a phone
number from the ranges reserved for fiction (+44 20 7946 0xxx, +1 202 555 01xx) — never entities, but
exactly what the PII scan should find. Stdlib only, ``random.Random(seed)``; running the script twice
gives byte-identical files.

    python examples/make_tickets.py            # writes examples/tickets/*
    python examples/make_tickets.py --out DIR  # writes DIR/* instead

Files (the same tickets, same ids, in three formats):
  train.jsonl / test.jsonl            800 / 200 {"id", "text", "spans", "issue"}; spans are
                                      [{"start", "end", "label"}] character offsets, text[start:end] is
                                      exactly the entity, in order, never overlapping
  train_bio.jsonl / test_bio.jsonl    {"id", "tokens", "tags"}: tokens by TOKEN below (words, with
                                      "-", "." and "/" kept inside a word: "BK-48213", "129.00",
                                      "12/03/2026"; every other symbol a token of its own), BIO tags
                                      (B-ORDER_ID, I-PRODUCT, O, ...); every span starts and ends on a
                                      token boundary, so BIO and spans carry the same entities
  train_json.jsonl / test_json.jsonl  {"id", "instruction", "input", "output"}: `instruction` is one fixed
                                      request (INSTRUCTION), `input` the ticket text, `output` the JSON
                                      object string {"order_id", "product", "date", "amount", "issue"}
  schema.json                         the JSON Schema (draft 2020-12) every `output` satisfies

JSON values are copied from the text exactly as written (so they equal the span strings, casing
included). A field is null when the ticket has no entity of that type, a string when it has one
distinct value, and a list of >= 2 distinct strings in order of first appearance when it has several
(a value mentioned twice counts once). Within a ticket one product is always written the same way.
`issue` is always one of ISSUES. About 8% of tickets are typed in a hurry (all lower case, half of them
with lower-case entities too: "bk-48213", "cirrus"), 6% carry one typo outside the entities. Tickets
have at most MAX_WORDS words: INSTRUCTION + ticket + output stay under 300 SmolLM2 tokens in its chat
template (max 290 with support-bot's system prompt; 95% under 256), so data.max_length 320 truncates none.

Train and test are balanced over ISSUES. Every 4th phrase of every phrase list (subjects, greetings,
openers, issue sentences, requests, ...) is held out: train never uses it, and each choice in a test
ticket takes a held-out phrase with probability 1/2. Two products (BK-900 Zenith, Milk Frother Duo)
and a few first names appear only in test. No two tickets of a split are near duplicates, and every
test ticket has word 5-gram Jaccard < 0.5 with every train ticket and passes tuneforge's own leakage
measures (examples/_overlap.py).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path
from random import Random

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _neardup import NearDupIndex, words  # noqa: E402
from _overlap import OverlapGuard  # noqa: E402

SEED = 1919
N_TRAIN, N_TEST = 800, 200
ISSUES = ("damaged", "late_delivery", "refund", "wrong_item", "billing", "other")
LABELS = ("ORDER_ID", "PRODUCT", "DATE", "AMOUNT")
FIELD = {"ORDER_ID": "order_id", "PRODUCT": "product", "DATE": "date", "AMOUNT": "amount"}
# template slots that become entities; the "2" slots hold a second, different value of the type
SLOT_LABEL = {"ORDER": "ORDER_ID", "ORDER2": "ORDER_ID", "PRODUCT": "PRODUCT", "PRODUCT2": "PRODUCT",
              "DATE": "DATE", "DATE2": "DATE", "AMOUNT": "AMOUNT", "AMOUNT2": "AMOUNT"}
TOKEN = re.compile(r"\w+(?:[-./]\w+)*|[^\w\s]")
SLOT = re.compile(r"\{(\w+)\}")
INSTRUCTION = ("Extract order_id, product, date, amount and issue (" + ", ".join(ISSUES[:-1]) + " or other) from "
               "this support ticket as JSON. Copy values as written; null if missing, a list if several.")
MAX_WORDS = 70  # ticket + INSTRUCTION + output stay under ~300 SmolLM2 tokens in the chat template
ORDER_ID_PATTERN = "^[Bb][Kk]-[0-9]{5}$"

# (surface forms, kind, price in EUR); kind: "k" kettle, "e" other electric device, "a" accessory.
# A ticket picks one surface form per product and uses it for every mention.
PRODUCTS = [
    (("BK-300 Aurora", "Aurora kettle", "Aurora", "BK-300"), "k", 89.0),
    (("BK-500 Cirrus", "Cirrus kettle", "Cirrus", "BK-500"), "k", 129.0),
    (("BK-700 Solstice", "Solstice kettle", "Solstice", "BK-700"), "k", 179.0),
    (("FL-9 filter", "FL-9 limescale filter", "FL-9 filter pack"), "a", 12.9),
    (("descaling kit", "Brightkettle descaling kit"), "a", 9.5),
    (("SteamSync Hub",), "e", 49.0),
    (("Copper Rim travel mug", "travel mug"), "a", 24.9),
    (("Tea Infuser Basket", "tea infuser"), "a", 14.5),
    (("Cosy Kettle Jacket", "kettle jacket"), "a", 19.9),
    (("Spare Power Base", "spare power base"), "e", 34.0),
    (("Cirrus glass lid", "replacement lid"), "a", 16.5),
    (("Aurora Starter Set",), "k", 109.0),
]
TEST_ONLY_PRODUCTS = [(("BK-900 Zenith", "Zenith kettle"), "k", 229.0), (("Milk Frother Duo", "milk frother"), "e", 59.0)]
TEST_ONLY_PRODUCT_SHARE = 0.12

NAMES = ["Maria", "Tom", "Aisha", "Lukas", "Chen", "Sofia", "Daniel", "Priya", "Jonas", "Emma", "Mateo", "Hannah",
         "Oliver", "Fatima", "Noah", "Ines", "Kofi", "Elena", "Sam", "Yuki", "Marta", "Ben", "Leila", "Pavel"]
TEST_ONLY_NAMES = ["Ravi", "Greta", "Omar", "Sunniva"]
MAIL_DOMAINS = ["example.com", "example.org", "example.net"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
RELATIVE = ["yesterday", "last week", "two days ago", "on Monday", "this morning", "over a week ago", "last Friday",
            "a few days ago", "the day before yesterday", "earlier this month", "last weekend", "recently"]

# --------------------------------------------------------------------------------------- phrase lists
# "k|" / "e|" in front of a template: only for a main product of that kind ("e" admits kettles too).
SUBJECTS = {
    "damaged": ["Damaged kettle", "Order {ORDER} arrived broken", "{PRODUCT} damaged in transit", "Broken item",
                "Cracked {PRODUCT}", "Faulty product in order {ORDER}", "My {PRODUCT} arrived damaged",
                "Item broken on arrival"],
    "late_delivery": ["Where is my order?", "Order {ORDER} not delivered", "Late delivery", "Still waiting for {ORDER}",
                      "Delivery delay", "Parcel not arrived", "{PRODUCT} never arrived", "Order {ORDER} - tracking stuck"],
    "refund": ["Refund request", "Refund for order {ORDER}", "Return and refund", "Money back for the {PRODUCT}",
               "Requesting a refund", "Refund status {ORDER}", "Returning the {PRODUCT}", "Where is my refund?"],
    "wrong_item": ["Wrong item received", "Wrong product in order {ORDER}", "Received the wrong product",
                   "Incorrect item", "Mix-up with my order", "Not what I ordered", "Order {ORDER}: wrong item",
                   "Wrong {PRODUCT}?"],
    "billing": ["Double charge", "Billing problem with {ORDER}", "Charged twice", "Wrong amount charged",
                "Invoice request for {ORDER}", "Discount code not applied", "Payment issue",
                "Overcharged on order {ORDER}"],
    "other": ["Question about my order", "Change of delivery address", "Quick question", "Gift wrapping for {ORDER}",
              "Question about the {PRODUCT}", "Product question", "Feedback", "Order {ORDER} - small request"],
}
GREETINGS = ["Hi,", "Hello,", "Dear Brightkettle team,", "Hi there,", "Good morning,", "Hello Brightkettle,",
             "Dear support,", "Hey,", "Good afternoon,", "To whom it may concern,", "Hi team,", "Dear customer service,"]
OPENERS = [
    "I'm writing about my order {ORDER}.", "This is about order {ORDER}.", "My order number is {ORDER}.",
    "Order number: {ORDER}.", "I ordered the {PRODUCT} on {DATE}.", "On {DATE} I bought the {PRODUCT} from your web shop.",
    "I placed order {ORDER} for the {PRODUCT} on {DATE}.", "I bought the {PRODUCT} from you last month.",
    "I paid {AMOUNT} for the {PRODUCT} a couple of weeks ago.", "Regarding order {ORDER}, placed on {DATE}.",
    "A while ago I ordered the {PRODUCT} (order {ORDER}).", "I need some help with something I bought from you.",
    "I'm contacting you about order {ORDER} from {DATE}.", "Back on {DATE} I ordered the {PRODUCT} for {AMOUNT}.",
    "My {PRODUCT} came from your shop, order {ORDER}.", "I have a problem with a recent order.",
    "I got the {PRODUCT} as part of order {ORDER}.", "I'm a long-time customer and ordered the {PRODUCT} on {DATE}.",
    "I ordered from your website on {DATE}, order {ORDER}.", "This concerns the {PRODUCT} I ordered {REL}.",
    "I bought the {PRODUCT} {REL}, order number {ORDER}.", "Writing about my purchase of the {PRODUCT} ({AMOUNT}).",
    "My name is {NAME} and I ordered the {PRODUCT} on {DATE}.", "Hope you can help with order {ORDER}.",
]
ISSUE_LINES = {
    "damaged": [
        "The {PRODUCT} arrived with a big crack in it.", "When I opened the box, the {PRODUCT} was dented.",
        "e|It stopped working after three days.", "The box was crushed and the {PRODUCT} inside is broken.",
        "e|The {PRODUCT} won't switch on at all.", "k|The lid snapped off the first time I opened it.",
        "There's a deep scratch all along the side.", "It arrived in pieces.",
        "e|The {PRODUCT} keeps switching itself off after a few seconds.", "k|The handle came loose on the second day.",
        "e|There was a burning smell the first time I used the {PRODUCT}, and now it is dead.",
        "The {PRODUCT} was broken when it came out of the packaging.", "k|Something rattles inside it and it leaks water.",
        "The courier clearly dropped the parcel, the {PRODUCT} is damaged.", "e|The display on the {PRODUCT} stays black.",
        "It came with a chipped corner and a bent seal.",
    ],
    "late_delivery": [
        "It still hasn't arrived.", "The tracking page hasn't changed since {DATE2}.",
        "It was supposed to arrive by {DATE2}, but nothing has turned up.",
        "Your email said delivery on {DATE2}, and I'm still waiting.",
        "The tracking code TRK{CODE} shows no movement for a week.",
        "I was told it would take a few business days, and it has been almost three weeks.",
        "The courier says the parcel is lost.", "Nothing has been delivered yet, although I paid for express shipping.",
        "The parcel has been 'in transit' since {DATE2}.",
        "I needed the {PRODUCT} for a party on {DATE2} and it's still not here.",
        "It's been ten days and the {PRODUCT} has not shown up.", "Delivery was promised for {DATE2}; it never came.",
        "The tracking says delivered, but there's nothing at my door.", "I can't find any trace of the parcel.",
        "My neighbours haven't received anything either.", "It's now two weeks late.",
        "Order {ORDER2} came fine, but this one didn't.",
    ],
    "refund": [
        "I'd like to return the {PRODUCT} and get my money back.", "I changed my mind and want a refund.",
        "I sent the {PRODUCT} back on {DATE2} but haven't seen the refund yet.",
        "You confirmed a refund of {AMOUNT2}, but it never reached my account.",
        "The {PRODUCT} isn't for me, so I'm returning it within the return window.", "Please refund the {AMOUNT} I paid.",
        "I returned it two weeks ago and I'm still waiting for my money.", "I'd like a full refund for order {ORDER}.",
        "My return was received on {DATE2}, so the refund should have arrived.",
        "It's not what I expected, and I want to send it back for a refund.",
        "I only got {AMOUNT2} back instead of the full {AMOUNT}.", "Could you process the refund for my return?",
        "I returned the {PRODUCT}; how long does the refund take?", "I want my money back.",
        "The return label worked fine, but no refund so far.",
        "The {PRODUCT} was a gift nobody needs, so I'd like a refund.",
    ],
    "wrong_item": [
        "I ordered the {PRODUCT} but received the {PRODUCT2}.", "Instead of the {PRODUCT}, the box contained the {PRODUCT2}.",
        "You sent me the {PRODUCT2}, which I never ordered.",
        "The parcel had the {PRODUCT2} in it, not the {PRODUCT} I paid for.",
        "k|I got the wrong colour: I chose copper and received white.", "The item in the box is not the one I ordered.",
        "I received two of the {PRODUCT2} and none of the {PRODUCT}.",
        "The {PRODUCT} in my order was swapped for something else.",
        "Someone packed the {PRODUCT2} instead of my {PRODUCT}.",
        "What arrived is the {PRODUCT2}; my order was for the {PRODUCT}.",
        "There's a different model in the box than on my invoice.", "The wrong item was delivered.",
        "I ordered the {PRODUCT} and got the {PRODUCT2} instead.",
        "The label says {PRODUCT}, but the box has the {PRODUCT2} inside.",
        "The order confirmation lists the {PRODUCT}, yet I received the {PRODUCT2}.", "This is not my order at all.",
    ],
    "billing": [
        "I was charged {AMOUNT} twice for the same order.", "My card was billed {AMOUNT2} instead of {AMOUNT}.",
        "My bank statement shows two payments of {AMOUNT}.",
        "The student code didn't work, so I paid {AMOUNT2} instead of {AMOUNT}.",
        "I need an invoice with my company name for order {ORDER}.",
        "The price at checkout was {AMOUNT}, but {AMOUNT2} was taken from my account.",
        "You charged me for shipping although my order qualified for free delivery.",
        "I was charged for an order I cancelled.",
        "There's an extra charge of {AMOUNT2} on my card that I don't recognise.",
        "I paid {AMOUNT} but the invoice says {AMOUNT2}.", "My payment went through twice.",
        "The discount wasn't applied to my order.", "I was billed for two of the {PRODUCT} but only ordered one.",
        "Could you send me a corrected invoice?", "I was charged {AMOUNT2} on {DATE2} with no explanation.",
        "The payment of {AMOUNT} failed, but the money left my account anyway.",
        "I was also charged for order {ORDER2}, which I never placed.",
    ],
    "other": [
        "Can I change the delivery address for order {ORDER}?", "e|Does the {PRODUCT} work with the SteamSync app?",
        "Could you add gift wrapping to my order?", "Is the {PRODUCT} available in black?",
        "I just wanted to say the {PRODUCT} is brilliant.", "Can I pick up my order instead of having it delivered?",
        "k|Do you sell a spare lid for the {PRODUCT}?", "Is it possible to add a note for the courier?",
        "Will the {PRODUCT} be back in stock soon?", "Can I update the phone number on my account?",
        "e|How do I pair the {PRODUCT} with my phone?", "Do you deliver to Norway?",
        "Can I get a paper manual for the {PRODUCT}?", "k|Which filter fits the {PRODUCT}?",
        "Can I combine orders {ORDER} and {ORDER2} into one delivery?", "I'd like to leave a review but can't find the form.",
    ],
}
EXTRAS = [
    "I also have order {ORDER2} open with you.", "It was a present for my mother.", "The total was {AMOUNT}.",
    "I've attached a photo.", "I've been a customer for years and never had a problem before.",
    "This is my second message about this.", "My ticket number from last time is #{TICKET}.", "I paid {AMOUNT} for it.",
    "I bought it together with the {PRODUCT2}.", "The parcel came {REL}.", "I'm usually at home after 17:00.",
    "The box says 1.7 litres on the side.", "I used it maybe 3 times.", "I ordered 2 of them.",
    "The order confirmation came on {DATE}.", "I paid by card.", "The delivery driver left it with a neighbour.",
    "I still have the original packaging.", "I'd rather not wait another week.", "I also bought the {PRODUCT2} for {AMOUNT2}.",
    "My earlier order {ORDER2} was fine, by the way.",
]
REQUESTS = {
    "damaged": ["Please send me a replacement.", "Could you replace it?", "What should I do with the broken one?",
                "I'd like a new one sent out as soon as possible.", "Can you arrange a repair or a replacement?",
                "Please tell me how to get a working one.", "Do I need to send it back first?",
                "I'd appreciate a replacement, it was meant to be a gift."],
    "late_delivery": ["Can you tell me where it is?", "Please check with the courier.", "When will it arrive?",
                      "Could you look into this?", "Please let me know what's going on.",
                      "Can you send it again if it's lost?", "I'd like an update, please.",
                      "Could you give me a new delivery date?"],
    "refund": ["Please confirm when the money will be back on my card.", "How long does the refund usually take?",
               "Please send me a return label.", "Can you process this quickly?", "Let me know once it's done.",
               "I'd like the money back on the original card.", "What are the next steps for the refund?",
               "Please refund me as soon as possible."],
    "wrong_item": ["Can you send the right one?", "How do I swap it for the correct item?",
                   "Please send what I actually ordered.", "Should I send the wrong one back?", "I'd like an exchange.",
                   "Please fix this mix-up.", "Can a courier collect the wrong item?", "Please ship the correct product."],
    "billing": ["Please refund the extra charge.", "Can you correct this?", "Please look at my payment.",
                "I'd like the duplicate payment reversed.", "Could you check what went wrong?",
                "Please send a corrected invoice.", "Can you sort this out with your payment provider?",
                "Please fix the billing."],
    "other": ["Thanks in advance for the info.", "Let me know if that's possible.", "Any advice is welcome.",
              "Just let me know.", "Could you get back to me?", "I'd be grateful for a quick answer.", "No rush.",
              "Please advise."],
}
POSTSCRIPTS = ["PS: my order number is {ORDER}.", "P.S. The order was {ORDER}.", "Order ref: {ORDER}",
               "PS: it's order {ORDER}, placed {REL}.", "By the way, the order number is {ORDER}.",
               "PS: I ordered it on {DATE}.", "Order {ORDER}, in case you need it.", "PS: the order is {ORDER}."]
CLOSINGS = ["Thanks for your help.", "Thank you!", "Looking forward to your reply.", "Thanks in advance.",
            "Appreciate it.", "Hope to hear from you soon.", "Many thanks.", "Thanks, and have a nice day."]
SIGNOFFS = ["Best,", "Regards,", "Kind regards,", "Cheers,", "Thanks,", "Best wishes,", "Many thanks,", "Sincerely,"]
BLOCK_HEADERS = ["----- Forwarded order confirmation -----", "Your Brightkettle order confirmation:",
                 "--- Original order e-mail ---", "Forwarded message from Brightkettle:"]
BLOCK_LINES = [("Order: {ORDER}", "Order number: {ORDER}", "Order no. {ORDER}", "Your order {ORDER}"),
               ("Order date: {DATE}", "Ordered on: {DATE}", "Date: {DATE}", "Placed: {DATE}"),
               ("Item: {PRODUCT}", "Product: {PRODUCT}", "Article: {PRODUCT}", "1 x {PRODUCT}"),
               ("Total: {AMOUNT}", "Amount paid: {AMOUNT}", "Order total: {AMOUNT}", "Paid: {AMOUNT}")]
TYPO_SAFE = re.compile(r"(?<![\w@.])[a-z]{5,}\b")  # whole lower-case words, not after "@" or "."


# --------------------------------------------------------------------------------------- entity values
def ordinal(d: int) -> str:
    return f"{d}{'th' if 10 <= d % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(d % 10, 'th')}"


DATE_FORMATS = [
    lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}", lambda d: d.isoformat(),
    lambda d: f"{MONTHS[d.month - 1]} {d.day}", lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    lambda d: f"{d.day} {MONTHS[d.month - 1]}", lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}",
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}", lambda d: f"{MONTHS[d.month - 1][:3]} {d.day}",
    lambda d: f"{d.day} {MONTHS[d.month - 1][:3]} {d.year}", lambda d: f"{ordinal(d.day)} {MONTHS[d.month - 1]}",
    lambda d: f"{MONTHS[d.month - 1]} {ordinal(d.day)}",
]


def money(v: float) -> str:
    return f"{v:.0f}" if v == int(v) else f"{v:.2f}"


# currency -> formats of a value (one format per ticket, so both amounts of a ticket look alike)
AMOUNT_FORMATS = {
    "EUR": [lambda v: f"€{v:.2f}", lambda v: f"€{money(v)}", lambda v: f"{money(v)} euros", lambda v: f"{v:.2f} EUR",
            lambda v: f"EUR {v:.2f}", lambda v: f"{v:.2f} €"],
    "USD": [lambda v: f"${v:.2f}", lambda v: f"${money(v)}", lambda v: f"{money(v)} dollars", lambda v: f"USD {v:.2f}"],
    "GBP": [lambda v: f"£{v:.2f}", lambda v: f"£{money(v)}", lambda v: f"{money(v)} pounds", lambda v: f"GBP {v:.2f}"],
}


# --------------------------------------------------------------------------------------- writer
class Writer:
    """Builds one ticket at a time as (text, spans)."""

    def __init__(self, rng: Random, held_out: bool) -> None:
        self.rng, self.held_out = rng, held_out
        self.products = PRODUCTS
        self.names = NAMES + (TEST_ONLY_NAMES if held_out else [])

    def part(self, items: list) -> list:
        """Train: every 4th item is off limits. Test: half the time only those held-out items."""
        train = [x for i, x in enumerate(items) if i % 4 != 3]
        if self.held_out and self.rng.random() < 0.5:
            return [x for i, x in enumerate(items) if i % 4 == 3] or train
        return train

    def pick(self, items: list, kind: str, avoid: set[str] = frozenset()) -> str:
        """A template from `items` that fits the product kind, uses no slot in `avoid`."""
        for pool in (self.part(items), [x for i, x in enumerate(items) if i % 4 != 3]):
            ok = [t for t in pool if fits(t, kind) and not set(SLOT.findall(t)) & avoid]
            if ok:
                return strip_kind(self.rng.choice(ok))
        raise AssertionError(f"no template fits kind {kind!r} avoiding {avoid}")

    def values(self) -> dict[str, str]:
        r = self.rng
        pool = list(self.products)
        if self.held_out and r.random() < TEST_ONLY_PRODUCT_SHARE:
            main = r.choice(TEST_ONLY_PRODUCTS)
        else:
            main = r.choice(pool)
        second = r.choice([p for p in pool if p is not main])
        currency = r.choices(("EUR", "USD", "GBP"), weights=(70, 15, 15))[0]
        fmt = r.choice(AMOUNT_FORMATS[currency])
        price = main[2] * r.choice((1, 1, 1, 2, 3)) + r.choice((0, 0, 0, 4.95))
        other = r.choice((price * 2, price + 4.95, round(price * 0.8, 2), 4.95, second[2], price - 10))
        if fmt(other) == fmt(price) or other <= 0:
            other = price + 20
        day = dt.date(2025, 9, 1) + dt.timedelta(days=r.randrange(240))
        later = day + dt.timedelta(days=r.randint(3, 21))
        dfmt = r.choice(DATE_FORMATS)
        dfmt2 = dfmt if r.random() < 0.7 else r.choice(DATE_FORMATS)
        order, order2 = r.sample(range(10000, 100000), 2)
        return {"ORDER": f"BK-{order}", "ORDER2": f"BK-{order2}",
                "PRODUCT": r.choice(main[0]), "PRODUCT2": r.choice(second[0]), "KIND": main[1],
                "DATE": dfmt(day), "DATE2": dfmt2(later), "AMOUNT": fmt(price), "AMOUNT2": fmt(other),
                "NAME": r.choice(self.names), "REL": r.choice(RELATIVE), "CODE": f"{r.randint(1000, 9999)}AZ",
                "TICKET": str(r.randint(1000, 9999))}

    def sentences(self, issue: str, v: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
        """(head, body, tail) templates of one ticket."""
        r, kind = self.rng, v["KIND"]
        head: list[str] = []
        if r.random() < 0.35:
            head.append("Subject: " + self.pick(SUBJECTS[issue], kind) + "\n\n")
        if r.random() < 0.8:
            head.append(self.pick(GREETINGS, kind) + r.choice(("\n", " ", "\n\n")))
        lines = [self.pick(ISSUE_LINES[issue], kind)]
        if r.random() < 0.45:
            lines.append(self.pick(ISSUE_LINES[issue], kind, avoid=set(SLOT.findall(lines[0])) & {"CODE"}))
            if lines[1] == lines[0]:
                lines.pop()
        used = {s for t in lines for s in SLOT.findall(t)}
        body = list(lines)
        opener = None if r.random() < 0.15 else self.pick(OPENERS, kind)
        if opener and r.random() < 0.25:
            body.insert(1, opener)  # context after the complaint
        elif opener:
            body.insert(0, opener)
        if r.random() < 0.4:
            # a second value of a type only where the issue sentences don't give that slot a meaning
            extra = self.pick(EXTRAS, kind, avoid={s for s in ("PRODUCT2", "AMOUNT2", "ORDER2") if s in used}
                              | ({"PRODUCT2"} if issue == "wrong_item" else set()))
            body.insert(r.randrange(len(body) + 1), extra)
        if r.random() < 0.85:
            body.append(self.pick(REQUESTS[issue], kind))
        tail: list[str] = []
        if r.random() < 0.15:
            body.append(self.pick(POSTSCRIPTS, kind))
        if r.random() < 0.5:
            tail.append(self.pick(CLOSINGS, kind))
        if r.random() < 0.75:
            tail.append(self.signoff(v))
        if r.random() < 0.12:
            tail.append(self.block())
        return head, body, tail

    def signoff(self, v: dict[str, str]) -> str:
        r = self.rng
        sign = r.choice((self.pick(SIGNOFFS, "") + "\n{NAME}", "{NAME}", "— {NAME}", self.pick(SIGNOFFS, "") + " {NAME}"))
        if r.random() < 0.1:
            user = v["NAME"].lower() + r.choice(("", ".k", "_88", ".w", "1"))
            sign += f"\n{user}@{r.choice(MAIL_DOMAINS)}"
        elif r.random() < 0.05:
            sign += r.choice((f"\nTel. +44 20 7946 0{r.randint(0, 999):03d}", f"\nPhone: +1 202 555 01{r.randint(0, 99):02d}"))
        return sign

    def block(self) -> str:
        r = self.rng
        lines = [r.choice(self.part(list(choices))) for choices in BLOCK_LINES if r.random() < 0.8]
        if len(lines) < 2:
            lines = [BLOCK_LINES[0][0], BLOCK_LINES[2][0]]
        return self.pick(BLOCK_HEADERS, "") + "\n" + "\n".join(lines)

    def ticket(self, issue: str) -> tuple[str, list[dict]]:
        r = self.rng
        v = self.values()
        head, body, tail = self.sentences(issue, v)
        hurried = r.random() < 0.08
        typo = r.random() < 0.06
        joiner = "\n" if r.random() < 0.2 else " "
        segments = head + [joiner.join(body)] + (["\n\n" + "\n".join(tail)] if tail else [])
        return render("".join(segments), v, hurried, typo, r)


def fits(template: str, kind: str) -> bool:
    if template.startswith("k|"):
        return kind == "k"
    if template.startswith("e|"):
        return kind in ("k", "e")
    return True


def strip_kind(template: str) -> str:
    return template[2:] if template[1:2] == "|" else template


def render(template: str, v: dict[str, str], hurried: bool, typo: bool, r: Random) -> tuple[str, list[dict]]:
    """Fill the slots; entity slots become spans. Casing and typos touch only the text between entities
    (and, in a hurried ticket, sometimes the entities too: their JSON values then follow the text)."""
    pieces: list[tuple[str, str | None]] = []  # (text, label or None)
    pos = 0
    for m in SLOT.finditer(template):
        pieces.append((template[pos:m.start()], None))
        slot = m.group(1)
        pieces.append((v[slot], SLOT_LABEL.get(slot)))
        pos = m.end()
    pieces.append((template[pos:], None))
    lower_entities = hurried and r.random() < 0.5
    if hurried:
        pieces = [(t.lower() if lab is None or lower_entities else t, lab) for t, lab in pieces]
    if typo:
        pieces = add_typo(pieces, r)
    text, spans = "", []
    for t, lab in pieces:
        if lab is not None:
            spans.append({"start": len(text), "end": len(text) + len(t), "label": lab})
        text += t
    return text, spans


def add_typo(pieces: list[tuple[str, str | None]], r: Random) -> list[tuple[str, str | None]]:
    """One slip (two letters swapped, one dropped or doubled) in a plain word of 5+ letters."""
    cands = [(i, m) for i, (t, lab) in enumerate(pieces) if lab is None for m in TYPO_SAFE.finditer(t)
             if not re.match(r"[.@]\w", t[m.end():m.end() + 2])]  # never in an e-mail address
    if not cands:
        return pieces
    i, m = r.choice(cands)
    w, j, kind = m.group(), r.randrange(1, len(m.group()) - 2), r.random()
    if kind < 0.5:
        w = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    elif kind < 0.75:
        w = w[:j] + w[j + 1:]
    else:
        w = w[:j] + w[j] + w[j:]
    t = pieces[i][0]
    out = list(pieces)
    out[i] = (t[:m.start()] + w + t[m.end():], None)
    return out


# --------------------------------------------------------------------------------------- formats
def bio(text: str, spans: list[dict]) -> tuple[list[str], list[str]]:
    """Tokens (TOKEN) and BIO tags; refuses a span that does not start and end on token boundaries."""
    tokens, tags = [], []
    for m in TOKEN.finditer(text):
        tag = "O"
        for s in spans:
            if m.start() < s["end"] and s["start"] < m.end():
                assert s["start"] <= m.start() and m.end() <= s["end"], (text, s, m.group())
                tag = ("B-" if m.start() == s["start"] else "I-") + s["label"]
        tokens.append(m.group())
        tags.append(tag)
    assert sum(t.startswith("B-") for t in tags) == len(spans), text  # every span starts on a token
    return tokens, tags


def extraction(text: str, spans: list[dict], issue: str) -> dict:
    """The reference JSON object: null / one string / a list of the distinct values, in text order."""
    obj: dict = {}
    for label in LABELS:
        values = list(dict.fromkeys(text[s["start"]:s["end"]] for s in spans if s["label"] == label))
        obj[FIELD[label]] = None if not values else values[0] if len(values) == 1 else values
    obj["issue"] = issue
    return obj


def schema() -> dict:
    def one_or_more(item: dict, what: str) -> dict:
        return {"description": f"{what}: null if absent, a string if one, a list of the distinct values "
                               "(in order of appearance) if several",
                "anyOf": [{"type": "null"}, item,
                          {"type": "array", "items": item, "minItems": 2, "uniqueItems": True}]}

    text = {"type": "string", "minLength": 1}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Brightkettle support ticket",
        "description": "Details extracted from one support ticket; values are copied from the ticket as written.",
        "type": "object",
        "properties": {
            "order_id": one_or_more({"type": "string", "pattern": ORDER_ID_PATTERN}, "Order number (BK-nnnnn)"),
            "product": one_or_more(text, "Product name"),
            "date": one_or_more(text, "Date as written (relative words like 'yesterday' are not dates)"),
            "amount": one_or_more(text, "Amount of money with its currency, as written"),
            "issue": {"description": "What the ticket is about", "enum": list(ISSUES)},
        },
        "required": ["order_id", "product", "date", "amount", "issue"],
        "additionalProperties": False,
    }


# --------------------------------------------------------------------------------------- splits
def generate(rng: Random, n: int, held_out: bool, taken: set[str], against: NearDupIndex | None) -> list[dict]:
    """n tickets balanced over ISSUES, each new to `taken`, none close to `against` or to each other."""
    w = Writer(rng, held_out)
    issues = [ISSUES[i % len(ISSUES)] for i in range(n)]
    rng.shuffle(issues)
    within = OverlapGuard()
    out = []
    for issue in issues:
        tries = 0
        while True:
            tries += 1
            text, spans = w.ticket(issue)
            key = " ".join(words(text))
            if len(text.split()) > MAX_WORDS or key in taken or (against is not None and against.too_close(text)) \
                    or (tries < 500 and within.too_close(text)):
                continue
            break
        within.add(text)
        taken.add(key)
        out.append({"text": text, "spans": spans, "issue": issue})
    return out


def formats(tickets: list[dict], split: str) -> dict[str, list[dict]]:
    spans, bios, jsons = [], [], []
    for i, t in enumerate(tickets, start=1):
        rid = f"ticket-{split}-{i:04d}"
        for s in t["spans"]:
            ent = t["text"][s["start"]:s["end"]]
            assert ent and ent == ent.strip(), (t["text"], s)
        tokens, tags = bio(t["text"], t["spans"])
        spans.append({"id": rid, **t})
        bios.append({"id": rid, "tokens": tokens, "tags": tags})
        output = json.dumps(extraction(t["text"], t["spans"], t["issue"]), ensure_ascii=False)
        jsons.append({"id": rid, "instruction": INSTRUCTION, "input": t["text"], "output": output})
    return {f"{split}.jsonl": spans, f"{split}_bio.jsonl": bios, f"{split}_json.jsonl": jsons}


def build() -> dict[str, list[dict]]:
    taken: set[str] = set()
    train = generate(Random(SEED), N_TRAIN, False, taken, None)
    index = NearDupIndex()
    for t in train:
        index.add(t["text"])
    test = generate(Random(SEED + 1), N_TEST, True, taken, index)
    return {**formats(train, "train"), **formats(test, "test")}


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "tickets",
                    help="directory to write the ticket files into (default: examples/tickets)")
    args = ap.parse_args(argv)
    for name, records in build().items():
        write_jsonl(args.out / name, records)
        print(f"wrote {len(records):5d} records to {args.out / name}")
    path = args.out / "schema.json"
    path.write_text(json.dumps(schema(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8", newline="\n")
    print(f"wrote the JSON Schema to {path}")


if __name__ == "__main__":
    main()
