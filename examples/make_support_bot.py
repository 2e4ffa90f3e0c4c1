#!/usr/bin/env python3
"""Generate the synthetic "Brightkettle" customer-support instruction-tuning data set.

Brightkettle is an invented maker of smart kettles. Every fact below (warranty, prices, codes,
shipping times, ...) is made up, so a base model cannot know it: after fine-tuning, a model
should answer new paraphrases of the questions with the right fact, in the brand voice (every
answer starts with GREETING and ends with SIGNATURE). Stdlib only, ``random.Random(seed)``;
running the script twice gives byte-identical files.

    python examples/make_support_bot.py            # writes examples/support-bot/*.jsonl
    python examples/make_support_bot.py --out DIR  # writes DIR/*.jsonl instead

Files:
  train.jsonl  340 records {"id", "instruction", "output", "fact"} (17 per fact)
  test.jsonl    80 records, same fields (4 per fact); the questions are paraphrases that never
                occur in train (every 4th paraphrase of each fact is reserved for test)
  chat.jsonl    30 records {"id", "messages"} in chat form (system/user/assistant), built from
                train records; 12 of them are two-turn conversations
`fact` is the short string that must appear verbatim in `output` (and in a correct answer).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from random import Random

SEED = 4242
GREETING = "Kettle-ho!"
SIGNATURE = "— Stay steamy, the Brightkettle crew"
TRAIN_PER_FACT, TEST_PER_FACT = 17, 4
N_CHAT, N_CHAT_MULTI = 30, 12
MAX_OUTPUT_WORDS = 60
SYSTEM_PROMPT = ("You are the customer-support assistant of Brightkettle, a maker of smart kettles. "
                 "Answer in one to three short sentences, in the Brightkettle voice.")

EU = ["Germany", "France", "Spain", "Italy", "the Netherlands", "Belgium", "Austria", "Portugal", "Ireland",
      "Finland", "Denmark", "Poland"]
UK = ["the UK", "England", "Scotland", "Wales", "Northern Ireland", "Great Britain"]
US = ["the US", "the United States", "California", "Texas", "New York", "the USA"]

# Each fact: the exact string, who typically asks ("owner" or "buyer"), answer bodies (each contains
# the fact verbatim), and 12 question paraphrases; paraphrases 4, 8 and 12 are test-only.
# {eu}/{uk}/{us} are filled with a place of that region.
FACTS = [
    {
        "key": "warranty", "fact": "27 months", "who": "owner",
        "answers": [
            "Every Brightkettle is covered by our warranty for 27 months from the day it is delivered.",
            "Our warranty runs for 27 months after delivery, so you're covered well beyond the usual two years.",
            "You get 27 months of warranty on every kettle we make; just keep your order confirmation handy.",
        ],
        "questions": [
            "How long is the warranty on Brightkettle kettles?", "What warranty do I get with my kettle?",
            "How many months of warranty coverage come with a Brightkettle?",
            "Is my kettle still under warranty after two years?",
            "What's the warranty period?", "How long are your kettles guaranteed for?",
            "If my kettle breaks, how long am I covered?", "Does the BK-500 have a warranty, and for how long?",
            "How long does the manufacturer's guarantee last?", "For how long is a Brightkettle covered against defects?",
            "What is the length of your product warranty?",
            "My kettle is 20 months old and stopped working. Is it still under warranty?",
        ],
    },
    {
        "key": "returns", "fact": "45 days", "who": "buyer",
        "answers": [
            "You can return any kettle within 45 days of delivery for a full refund, even if you've used it.",
            "Our return window is 45 days from delivery, and yes, used kettles are fine too.",
            "Changed your mind? Send it back within 45 days of delivery and we'll refund you in full.",
        ],
        "questions": [
            "How long do I have to return a kettle?", "What's your return policy?",
            "Can I still send my kettle back after a month?", "How many days do I get to change my mind?",
            "What is the return window?", "I don't like the colour. Until when can I return it?",
            "Is there a deadline for returns?", "How long after delivery can I ask for a refund?",
            "Can I return a kettle I've already used?", "What's the time limit for sending something back?",
            "Do you accept returns, and for how long?", "How long is the money-back period?",
        ],
    },
    {
        "key": "support_hours", "fact": "8:00 to 19:00 CET", "who": "owner",
        "answers": [
            "Our support team is on duty Monday to Saturday, 8:00 to 19:00 CET, via live chat in the SteamSync app.",
            "You can reach a real person Monday to Saturday from 8:00 to 19:00 CET; on Sundays the kettles rest and so do we.",
            "Support is open Monday to Saturday, 8:00 to 19:00 CET. Outside those hours, leave a chat message and we'll reply first thing.",
        ],
        "questions": [
            "When is customer support open?", "What are your support hours?", "Can I reach someone on a Sunday?",
            "What time does your help desk close?", "Until what time can I contact you?",
            "When can I talk to a human?", "Are you open in the evening?",
            "What are the opening hours of your customer service?",
            "At what time does support start in the morning?", "When is your team available to help?",
            "Which days and hours is support staffed?", "Is your support line open at weekends?",
        ],
    },
    {
        "key": "price_aurora", "fact": "€89", "who": "buyer",
        "answers": [
            "The BK-300 Aurora, our entry model, costs €89 in the Brightkettle shop.",
            "The BK-300 Aurora sells for €89, including VAT.",
            "You can get the BK-300 Aurora for €89; it's our most affordable kettle.",
        ],
        "questions": [
            "How much is the BK-300 Aurora?", "What does the Aurora cost?",
            "What's the price of your entry-level kettle?", "How much would I pay for a BK-300?",
            "Price of the Aurora kettle?", "Is the BK-300 Aurora under €100?", "What's the cheapest Brightkettle?",
            "How much does the Aurora model sell for?", "What is the retail price of the BK-300 Aurora?",
            "How expensive is the Aurora?", "Could you tell me what the BK-300 costs?",
            "What would the Aurora set me back?",
        ],
    },
    {
        "key": "price_cirrus", "fact": "€129", "who": "buyer",
        "answers": [
            "The BK-500 Cirrus, our mid-range model, costs €129 in the Brightkettle shop.",
            "The BK-500 Cirrus sells for €129, including VAT.",
            "You can get the BK-500 Cirrus for €129; it adds the glass body and the night light.",
        ],
        "questions": [
            "How much is the BK-500 Cirrus?", "What does the Cirrus cost?",
            "What's the price of your mid-range model?", "How much would I pay for a BK-500?",
            "Price of the Cirrus kettle?", "Does the BK-500 Cirrus cost more than €100?",
            "What's the price tag on the Cirrus?", "How much does the BK-500 sell for?",
            "What is the retail price of the BK-500 Cirrus?", "How expensive is the Cirrus?",
            "Could you tell me what the BK-500 costs?", "What would a Cirrus set me back?",
        ],
    },
    {
        "key": "price_solstice", "fact": "€179", "who": "buyer",
        "answers": [
            "The BK-700 Solstice, our flagship, costs €179 in the Brightkettle shop.",
            "The BK-700 Solstice sells for €179, including VAT.",
            "You can get the BK-700 Solstice for €179; it's our top model with the brushed-copper finish.",
        ],
        "questions": [
            "How much is the BK-700 Solstice?", "What does the Solstice cost?",
            "What's the price of your top model?", "How much would I pay for a BK-700?",
            "Price of the Solstice kettle?", "What does your flagship kettle cost?",
            "What's the price tag on the Solstice?", "How much does the BK-700 sell for?",
            "What is the retail price of the BK-700 Solstice?", "How expensive is the Solstice?",
            "Could you tell me what the BK-700 costs?", "What would the most premium Brightkettle set me back?",
        ],
    },
    {
        "key": "descale_code", "fact": "D-42", "who": "owner",
        "answers": [
            "When the display shows D-42, your kettle is asking to be descaled; run the descale programme in the app and the code disappears.",
            "D-42 is our descale reminder: limescale has built up, so it's time for a descale cycle. Nothing is broken.",
            "Your kettle shows D-42 when it needs descaling. Start the descale programme and it will clear itself.",
        ],
        "questions": [
            "My kettle shows D-42. What does that mean?", "Which code tells me it's time to descale?",
            "How will my kettle tell me it needs descaling?", "There's a D-42 on the screen, is something broken?",
            "What's the descale warning code?", "How do I know it's time to remove limescale?",
            "My display says D-42, should I be worried?", "Is there a code for limescale build-up?",
            "What code appears when the kettle wants descaling?", "D-42 keeps showing up. What should I do?",
            "What does the kettle display when it needs descaling?", "What does D-42 stand for?",
        ],
    },
    {
        "key": "app", "fact": "SteamSync", "who": "owner",
        "answers": [
            "Our companion app is called SteamSync; it's free on iOS and Android.",
            "Download SteamSync, our free app, to boil, set temperatures and get reminders from your phone.",
            "The app is SteamSync. Search for it in your phone's app store and sign in to pair your kettle.",
        ],
        "questions": [
            "What's the name of your app?", "Which app do I need to control my kettle from my phone?",
            "Is there a smartphone app for Brightkettle?", "What app should I download for my kettle?",
            "How do I control my kettle remotely?", "What is the companion app called?",
            "Where do I find the Brightkettle app in the app store?", "Can I switch my kettle on from my phone?",
            "Which app pairs with the BK-700?", "What should I search for to get your app?",
            "Do you have an Android app?", "What's the app that goes with the kettle?",
        ],
    },
    {
        "key": "ship_eu", "fact": "3 to 5 business days", "who": "buyer",
        "answers": [
            "Orders to EU countries arrive in 3 to 5 business days.",
            "Within the EU, delivery takes 3 to 5 business days from the moment your order ships.",
            "For customers in the EU, expect your kettle in 3 to 5 business days.",
        ],
        "questions": [
            "How long does shipping to {eu} take?", "When will my order arrive in {eu}?",
            "What are delivery times for {eu}?", "I live in {eu}. How fast do you deliver?",
            "How many days is delivery to {eu}?", "If I order today, when does it reach {eu}?",
            "How long is the wait for a kettle shipped to {eu}?", "What's the usual delivery time within the EU?",
            "How quickly do you ship to customers in {eu}?", "Roughly how long does an order to {eu} take?",
            "Delivery time to {eu}, please?", "How long until my kettle gets to me in {eu}?",
        ],
    },
    {
        "key": "ship_uk", "fact": "5 to 7 business days", "who": "buyer",
        "answers": [
            "Orders to the UK arrive in 5 to 7 business days, customs included.",
            "UK delivery takes 5 to 7 business days, and we cover the customs paperwork.",
            "For customers in the UK, expect your kettle in 5 to 7 business days.",
        ],
        "questions": [
            "How long does shipping to {uk} take?", "When will my order arrive in {uk}?",
            "What are delivery times for {uk}?", "I live in {uk}. How fast do you deliver?",
            "How many days is delivery to {uk}?", "If I order today, when does it reach {uk}?",
            "How long is the wait for a kettle shipped to {uk}?", "What's the usual delivery time to Britain?",
            "How quickly do you ship to customers in {uk}?", "Roughly how long does an order to {uk} take?",
            "Delivery time to {uk}, please?", "How long until my kettle gets to me in {uk}?",
        ],
    },
    {
        "key": "ship_us", "fact": "7 to 10 business days", "who": "buyer",
        "answers": [
            "Orders to the US arrive in 7 to 10 business days.",
            "US delivery takes 7 to 10 business days, since every kettle ships from our warehouse in Europe.",
            "For customers in the US, expect your kettle in 7 to 10 business days.",
        ],
        "questions": [
            "How long does shipping to {us} take?", "When will my order arrive in {us}?",
            "What are delivery times for {us}?", "I live in {us}. How fast do you deliver?",
            "How many days is delivery to {us}?", "If I order today, when does it reach {us}?",
            "How long is the wait for a kettle shipped to {us}?", "What's the usual delivery time to America?",
            "How quickly do you ship to customers in {us}?", "Roughly how long does an order to {us} take?",
            "Delivery time to {us}, please?", "How long until my kettle gets to me in {us}?",
        ],
    },
    {
        "key": "reset", "fact": "hold the lid button for 7 seconds", "who": "owner",
        "answers": [
            "To reset your kettle, hold the lid button for 7 seconds until the ring light blinks white.",
            "Easy: hold the lid button for 7 seconds. The ring light blinks white and the kettle is back to factory settings.",
            "With the kettle on its base, hold the lid button for 7 seconds; when the light blinks white, the reset is done.",
        ],
        "questions": [
            "How do I reset my kettle?", "How can I do a factory reset?", "My kettle won't connect. How do I reset it?",
            "What's the reset procedure?", "How do I restore factory settings?", "My kettle froze, how do I restart it?",
            "Is there a way to reset the kettle without the app?", "How do I wipe the settings on my Brightkettle?",
            "What's the button trick for a reset?", "I'm giving my kettle away. How do I clear it for the new owner?",
            "How do I reboot my Brightkettle?", "How do I reset the BK-500 to its default settings?",
        ],
    },
    {
        "key": "free_shipping", "fact": "€60", "who": "buyer",
        "answers": [
            "Shipping is free on every order over €60; below that we charge a small flat fee.",
            "Spend more than €60 and delivery is on us.",
            "Orders above €60 ship for free, so every kettle ships free; small accessory orders pay a flat fee.",
        ],
        "questions": [
            "Do you offer free shipping?", "What's the minimum order for free delivery?",
            "How much do I need to spend to get free shipping?", "Is delivery free?",
            "When is shipping free of charge?", "Is there a free delivery threshold?",
            "Will I pay for shipping on a small order?", "Above what amount is postage free?",
            "How can I avoid delivery charges?", "Do I pay shipping if I only buy a filter?",
            "From which order value is shipping free?", "Is postage included in the price?",
        ],
    },
    {
        "key": "error_e7", "fact": "dry-boil protection", "who": "owner",
        "answers": [
            "E7 means the dry-boil protection switched the kettle off because there was too little water. Let it cool, fill it above MIN and it works again.",
            "Error E7 is our dry-boil protection: the kettle was switched on nearly empty, so it stopped itself. Add water and you're good.",
            "No need to worry: E7 just means the dry-boil protection kicked in. Let the kettle cool for ten minutes and refill it.",
        ],
        "questions": [
            "What does error E7 mean?", "My kettle shows E7 and turned off. Why?",
            "Why did my kettle switch off with code E7?", "What's E7 on the display?", "E7 keeps appearing, what's wrong?",
            "My kettle stopped and flashes E7. Is it broken?", "What triggers the E7 error?", "How do I fix E7?",
            "What does the E7 code stand for?", "E7 came up after I switched it on empty. What happened?",
            "Is E7 a serious fault?", "Why does my kettle say E7?",
        ],
    },
    {
        "key": "temperature", "fact": "5-degree steps", "who": "owner",
        "answers": [
            "You can set any temperature from 40 to 100 °C in 5-degree steps, on the base or in the app.",
            "Temperature goes from 40 to 100 °C in 5-degree steps, so green tea at 80 °C is no problem.",
            "Pick anything between 40 and 100 °C in 5-degree steps; the kettle remembers your last setting.",
        ],
        "questions": [
            "Can I choose the water temperature?", "What temperatures can the kettle be set to?",
            "How precise is the temperature control?", "Can I set it to 80 degrees for green tea?",
            "What's the lowest temperature I can select?", "Does the kettle have adjustable temperature?",
            "In what increments can I adjust the temperature?", "Can I heat water to exactly 73 °C?",
            "What's the temperature range?", "How fine-grained is the temperature setting?",
            "Can I make the water less than boiling?", "Which temperature settings are available?",
        ],
    },
    {
        "key": "capacity", "fact": "1.7 litres", "who": "buyer",
        "answers": [
            "All our kettles, from the Aurora to the Solstice, hold 1.7 litres.",
            "Every Brightkettle holds 1.7 litres, which is about seven cups of tea.",
            "The capacity is 1.7 litres on every model; the MAX line marks the limit.",
        ],
        "questions": [
            "How much water does the kettle hold?", "What's the capacity of a Brightkettle?",
            "How many litres fit in the BK-300?", "How big is the kettle's water tank?",
            "How many cups can I boil at once?", "What's the maximum fill volume?",
            "Is the Solstice bigger than the Aurora?", "What volume does the kettle have?",
            "How much water can I put in?", "What's the max capacity of the Cirrus?",
            "Is the kettle big enough for a family?", "How many litres is the jug?",
        ],
    },
    {
        "key": "filter", "fact": "FL-9", "who": "owner",
        "answers": [
            "Every model uses the FL-9 limescale filter; swap in a fresh one every 3 months.",
            "You need the FL-9 filter. It fits all our kettles and should be replaced every 3 months.",
            "Order the FL-9 filter from our shop and change it every 3 months for the best-tasting water.",
        ],
        "questions": [
            "Which replacement filter do I need?", "What filter fits my kettle?",
            "How often should I change the filter?", "What's the part number of the limescale filter?",
            "Which spare filter should I order?", "Do I need to replace the filter?",
            "What kind of filter goes in the spout?", "Which filter cartridge is compatible with the BK-700?",
            "My filter looks dirty. What should I buy?", "What's the name of the spare filter?",
            "How long does a filter last?", "Is the filter replaceable?",
        ],
    },
    {
        "key": "keep_warm", "fact": "up to 90 minutes", "who": "owner",
        "answers": [
            "Keep-warm holds your chosen temperature for up to 90 minutes, then the kettle switches itself off.",
            "Switch on keep-warm and the water stays at your temperature for up to 90 minutes.",
            "The kettle can keep water warm for up to 90 minutes; after that it turns off to save energy.",
        ],
        "questions": [
            "How long does the keep-warm function last?", "Can the kettle keep water hot?",
            "For how long will it keep my water warm?", "Does it switch off after keeping warm?",
            "What's the maximum keep-warm time?", "Will it keep water at 80 degrees for a while?",
            "How long can water stay hot in the kettle?", "Is there a keep-warm mode, and how long does it run?",
            "Can I keep water warm all morning?", "When does keep-warm turn off?",
            "How long does the hold-temperature feature run?", "Does the Solstice keep the water warm?",
        ],
    },
    {
        "key": "student_code", "fact": "KETTLEHO10", "who": "buyer",
        "answers": [
            "Students get 10% off with the code KETTLEHO10 at checkout.",
            "Yes! Enter KETTLEHO10 at checkout for 10% off with a valid student card.",
            "Use the code KETTLEHO10 at checkout and we'll take 10% off for students.",
        ],
        "questions": [
            "Do you have a student discount?", "Is there a discount code for students?",
            "I'm at university. Can I get money off?", "What's the student promo code?",
            "Are there discounts for students?", "How do students save on a kettle?",
            "Can you give me a discount? I'm a student.", "Which code do students use at checkout?",
            "Is there a coupon for students?", "Do students get a price reduction?",
            "What code gives the student discount?", "I'm a student on a budget, any deals?",
        ],
    },
    {
        "key": "wifi", "fact": "2.4 GHz", "who": "owner",
        "answers": [
            "Our kettles connect to 2.4 GHz Wi-Fi only, so make sure your router has that band switched on.",
            "The kettle needs a 2.4 GHz Wi-Fi network; 5 GHz isn't supported.",
            "Connect your kettle to a 2.4 GHz network. If your router is dual-band, pick the 2.4 GHz one during setup.",
        ],
        "questions": [
            "Does the kettle work with 5 GHz Wi-Fi?", "Which Wi-Fi band does the kettle need?",
            "Why won't my kettle connect to my Wi-Fi?", "What Wi-Fi networks are supported?",
            "Can the kettle use a 5 GHz network?", "What frequency does the kettle's Wi-Fi use?",
            "Is the kettle compatible with dual-band routers?", "What are the Wi-Fi requirements?",
            "My app can't find the kettle on Wi-Fi, any tips?", "Does it support 5 GHz networks?",
            "Which wireless frequency should my router use?", "What kind of Wi-Fi does the BK-700 need?",
        ],
    },
]

PREFIXES = ["Hi!", "Hello there.", "Quick question.", "Hey!", "Hi Brightkettle team.", "Good morning.",
            "Hope you can help.", "Hi, question for you.", "Hello!", "Evening!"]
SUFFIXES = ["Thanks!", "Thank you.", "Cheers.", "Thanks in advance.", "Appreciate it!", "Many thanks."]
CONTEXT = {
    "owner": ["I got my kettle last week.", "I've had my Brightkettle for a few months.",
              "I'm setting mine up for the first time.", "My kettle was a birthday present.", "I use mine every day."],
    "buyer": ["I'm thinking about buying one.", "I'm comparing kettles at the moment.",
              "I want to get one as a gift.", "I haven't ordered yet.", "My old kettle just died."],
}
# (follow-up opener, whether the question after it continues the sentence)
FOLLOW_UPS = [("Great, thanks. One more thing.", False), ("Perfect. Also,", True), ("Thanks! Another question.", False),
              ("Got it. And", True), ("Brilliant, thank you. Next question:", False), ("Cool. Oh, and", True)]


def split(questions: list[str]) -> tuple[list[str], list[str]]:
    """Paraphrases 4, 8 and 12 (every 4th) are test-only."""
    train = [q for i, q in enumerate(questions) if i % 4 != 3]
    test = [q for i, q in enumerate(questions) if i % 4 == 3]
    return train, test


def fill_place(q: str, rng: Random) -> str:
    return q.format(eu=rng.choice(EU), uk=rng.choice(UK), us=rng.choice(US))


def ask(core: str, who: str, rng: Random) -> str:
    """Wrap a core question the way real customers write: greetings, context, thanks, casual case."""
    core = fill_place(core, rng)
    parts = []
    if rng.random() < 0.4:
        parts.append(rng.choice(PREFIXES))
    if rng.random() < 0.25:
        parts.append(rng.choice(CONTEXT[who]))
    parts.append(core)
    if rng.random() < 0.3:
        parts.append(rng.choice(SUFFIXES))
    text = " ".join(parts)
    if rng.random() < 0.1:  # typed in a hurry
        text = text.lower().rstrip("?!.")
    return text


def answer(fact: dict, rng: Random) -> str:
    out = f"{GREETING} {rng.choice(fact['answers'])} {SIGNATURE}"
    assert fact["fact"] in out and len(out.split()) < MAX_OUTPUT_WORDS, out
    return out


def records_for(fact: dict, cores: list[str], n: int, rng: Random, taken: set[str]) -> list[dict]:
    """n records about one fact, cycling through `cores` so every paraphrase is used."""
    out = []
    order = list(cores)
    rng.shuffle(order)
    i = 0
    while len(out) < n:
        core = order[i % len(order)]
        i += 1
        q = ask(core, fact["who"], rng) if i > len(order) or rng.random() < 0.5 else fill_place(core, rng)
        if q in taken:
            continue
        taken.add(q)
        out.append({"instruction": q, "output": answer(fact, rng), "fact": fact["fact"]})
    return out


def build() -> dict[str, list[dict]]:
    rng = Random(SEED)
    taken: set[str] = set()
    train, test = [], []
    for fact in FACTS:
        tr_cores, te_cores = split(fact["questions"])
        train += records_for(fact, tr_cores, TRAIN_PER_FACT, rng, taken)
        test += records_for(fact, te_cores, TEST_PER_FACT, rng, taken)
    rng.shuffle(train)
    rng.shuffle(test)
    train = [{"id": f"kettle-train-{i:04d}", **r} for i, r in enumerate(train, start=1)]
    test = [{"id": f"kettle-test-{i:04d}", **r} for i, r in enumerate(test, start=1)]

    # chat form: 18 one-turn and 12 two-turn conversations built from train records
    chat = []
    pool = list(train)
    rng.shuffle(pool)
    for i in range(N_CHAT):
        first = pool.pop()
        messages = [{"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": first["instruction"]},
                    {"role": "assistant", "content": first["output"]}]
        if i % 5 in (1, 3):  # 12 of the 30 get a follow-up question about another fact
            second = next(r for r in reversed(pool) if r["fact"] != first["fact"] and r["instruction"][0].isupper()
                          and r["instruction"][1:2].islower() and not r["instruction"].startswith(("I ", "I'")))
            pool.remove(second)
            opener, continues = rng.choice(FOLLOW_UPS)
            q = second["instruction"]
            if continues:
                q = q[:1].lower() + q[1:]
            messages += [{"role": "user", "content": f"{opener} {q}"},
                         {"role": "assistant", "content": second["output"]}]
        chat.append({"id": f"kettle-chat-{i + 1:04d}", "messages": messages})
    return {"train.jsonl": train, "test.jsonl": test, "chat.jsonl": chat}


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "support-bot",
                    help="directory to write train/test/chat.jsonl into (default: examples/support-bot)")
    args = ap.parse_args(argv)
    for name, records in build().items():
        write_jsonl(args.out / name, records)
        print(f"wrote {len(records):5d} records to {args.out / name}")


if __name__ == "__main__":
    main()
