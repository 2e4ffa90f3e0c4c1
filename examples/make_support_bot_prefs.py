#!/usr/bin/env python3
"""Generate the synthetic Brightkettle preference data set (chosen/rejected pairs for DPO/IPO/ORPO, and KTO).

Built on examples/make_support_bot.py, which this script imports by path (its FACTS, GREETING, SIGNATURE
and its own train/test records; nothing is copied): every support-bot question gets a `chosen` reply —
the support-bot answer itself, on brand and correct (GREETING + a sentence holding the fact +
SIGNATURE) — and a `rejected` reply of one of three kinds:
  off_brand          the same correct sentence in the wrong voice: no greeting or signature, and curt
                     ("Read the manual. ..."), over-familiar ("Heyyy bestie!! ... love ya xx") or cold
                     ("Dear customer, ... Ticket closed.")
  wrong_fact         on brand, but the fact swapped for a plausible wrong one (€149 for €129, D-24 for
                     D-42, 30 days for 45 days, ...); the right fact is nowhere in it
  forbidden_promise  on brand and correct, plus a promise policy forbids ("we'll refund you twice the
                     price", "a free lifetime replacement", ...)
The kinds take turns within each fact, so every fact has all three and the kinds are balanced. Stdlib only, ``random.Random(seed)``;
running the script twice gives byte-identical files.

    python examples/make_support_bot_prefs.py            # writes examples/support-bot-prefs/*.jsonl
    python examples/make_support_bot_prefs.py --out DIR  # writes DIR/*.jsonl instead

Files:
  train.jsonl      340 pairs {"id", "prompt", "chosen", "rejected", "kind", "fact"}: one per support-bot
                   train question (prompt = its `instruction`, chosen = its `output`)
  test.jsonl        80 pairs, same fields, one per support-bot test question: the held-out paraphrases,
                   so no test prompt occurs in train (here or in examples/support-bot/train.jsonl)
  train_kto.jsonl  680 unpaired records {"id", "prompt", "completion", "label"}: each train pair as its
                   chosen (label true) and its rejected (label false) completion, shuffled
`fact` is the string a correct reply contains verbatim (chosen always has it; a wrong_fact rejected
never does). Prompts carry no system prompt: configure the same `data.system` as
examples/support-bot.yaml. Every 4th phrasing of the off-brand wrappers and the promises, and the
third wrong value of every fact, are held out: train never uses them, test half the time.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from random import Random
from types import ModuleType

SEED = 1818
KINDS = ("off_brand", "wrong_fact", "forbidden_promise")


def load_support_bot() -> ModuleType:
    """examples/make_support_bot.py as a module (examples/ is no package)."""
    path = Path(__file__).resolve().parent / "make_support_bot.py"
    spec = importlib.util.spec_from_file_location("make_support_bot", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BOT = load_support_bot()

# Plausible wrong values per fact key of BOT.FACTS; the last one of each is test-only.
WRONG = {
    "warranty": ["24 months", "12 months", "36 months"],
    "returns": ["30 days", "14 days", "60 days"],
    "support_hours": ["9:00 to 17:00 CET", "10:00 to 18:00 CET", "8:00 to 22:00 CET"],
    "price_aurora": ["€79", "€99", "€69"],
    "price_cirrus": ["€149", "€119", "€139"],
    "price_solstice": ["€199", "€169", "€189"],
    "descale_code": ["D-24", "E-42", "D-12"],
    "app": ["KettleLink", "BrewConnect", "SteamSmart"],
    "ship_eu": ["1 to 2 business days", "10 to 14 business days", "5 to 8 business days"],
    "ship_uk": ["2 to 3 business days", "10 to 12 business days", "3 to 4 business days"],
    "ship_us": ["2 to 3 business days", "14 to 21 business days", "4 to 5 business days"],
    "reset": ["hold the lid button for 3 seconds", "hold the power button for 7 seconds",
              "hold the lid button for 20 seconds"],
    "free_shipping": ["€50", "€40", "€75"],
    "error_e7": ["overheat protection", "limescale sensor", "filter alarm"],
    "temperature": ["10-degree steps", "20-degree steps", "2-degree steps"],
    "capacity": ["1.5 litres", "2 litres", "1.2 litres"],
    "filter": ["FL-6", "FX-9", "FL-12"],
    "keep_warm": ["up to 30 minutes", "up to 4 hours", "up to 60 minutes"],
    "student_code": ["KETTLE10", "STUDENT15", "KETTLEHO20"],
    "wifi": ["6 GHz", "5 GHz", "5.8 GHz"],
}
# Off-brand wrappers around the correct sentence: (style, prefixes, suffixes); every 4th is test-only.
OFF_BRAND = [
    ("curt", ["", "Read the manual. ", "As stated on our website: ", "Obviously, ", "FYI: ", "Like it says online, "],
     ["", " That's all.", " Next question.", " Anything else?", " Done.", " Please don't write in about this again."]),
    ("over_familiar", ["Heyyy bestie!! ", "Yo! ", "Omg hi!!! ", "Hey buddy, ", "Sup! ", "Aww hun, "],
     [" Lol, easy peasy!", " Chat soon, love ya! xx", " No stress mate!!", " You're welcome, babe ;)", " Haha cheers!!",
      " Hugs!!"]),
    ("cold", ["Dear customer, ", "To the requester: ", "Customer query noted. ", "Dear Sir or Madam, ",
              "Re: your enquiry. ", "Reference noted. "],
     [" Regards, Customer Service Department.", " Ticket closed.", " This is an automated reply.", " No further action.",
      " Do not reply to this message.", " Case resolved."]),
]
# Promises a Brightkettle agent must never make; every 4th is test-only.
PROMISES = [
    "If anything ever goes wrong, we'll refund you twice the price.",
    "As a bonus, you get a free lifetime replacement for any kettle, no questions asked.",
    "I can also send you a second kettle for free.",
    "I personally guarantee next-day delivery anywhere in the world.",
    "And don't worry, we'll pay for any damage to your kitchen, whatever the cause.",
    "We'll also waive every fee on your next five orders.",
    "I'll extend your warranty forever at no cost.",
    "Keep the kettle, and we'll still refund you in full.",
    "Plus, I've added a free Solstice to your account as a thank-you.",
    "We'll match any competitor's price and then pay you the difference twice.",
    "On top of that, we'll send you a new kettle every year for free.",
    "If you're ever unhappy, we'll refund you and let you keep everything.",
]


class Rejecter:
    """Makes the rejected reply of one kind for one chosen reply."""

    def __init__(self, rng: Random, held_out: bool) -> None:
        self.rng, self.held_out = rng, held_out

    def part(self, items: list) -> list:
        train = [x for i, x in enumerate(items) if i % 4 != 3]
        if self.held_out and self.rng.random() < 0.5:
            return [x for i, x in enumerate(items) if i % 4 == 3] or train
        return train

    def reject(self, kind: str, key: str, fact: str, body: str) -> str:
        r = self.rng
        if kind == "off_brand":
            _, prefixes, suffixes = r.choice(OFF_BRAND)
            prefix = r.choice(self.part(prefixes))
            lower = prefix.endswith(", ") and body[1:2].islower()  # "Hey buddy, our warranty ..." (never "d-42")
            start = body[:1].lower() + body[1:] if lower else body
            return prefix + start + r.choice(self.part(suffixes))
        if kind == "wrong_fact":
            values = WRONG[key][:2] + (WRONG[key][2:] if self.held_out and r.random() < 0.5 else [])
            wrong = r.choice([w for w in values if w not in body] or WRONG[key][:1])
            return f"{BOT.GREETING} {body.replace(fact, wrong)} {BOT.SIGNATURE}"
        return f"{BOT.GREETING} {body} {r.choice(self.part(PROMISES))} {BOT.SIGNATURE}"


def body_of(output: str) -> str:
    """The answer sentence(s) between the brand greeting and signature."""
    assert output.startswith(BOT.GREETING + " ") and output.endswith(" " + BOT.SIGNATURE), output
    return output[len(BOT.GREETING) + 1:-len(BOT.SIGNATURE) - 1]


def pairs(records: list[dict], rng: Random, held_out: bool, split: str) -> list[dict]:
    key_of = {f["fact"]: f["key"] for f in BOT.FACTS}
    offset = {f["fact"]: i for i, f in enumerate(BOT.FACTS)}  # so a fact's leftover turn goes to each kind alike
    rejecter = Rejecter(rng, held_out)
    seen: dict[str, int] = {}
    out = []
    for i, rec in enumerate(records, start=1):
        fact, chosen = rec["fact"], rec["output"]
        kind = KINDS[(seen.get(fact, 0) + offset[fact]) % len(KINDS)]  # the kinds take turns within each fact
        seen[fact] = seen.get(fact, 0) + 1
        rejected = rejecter.reject(kind, key_of[fact], fact, body_of(chosen))
        assert rejected != chosen and fact in chosen
        assert (fact not in rejected) == (kind == "wrong_fact"), (kind, rejected)
        out.append({"id": f"prefs-{split}-{i:04d}", "prompt": rec["instruction"], "chosen": chosen,
                    "rejected": rejected, "kind": kind, "fact": fact})
    return out


def kto(train: list[dict], rng: Random) -> list[dict]:
    rows = [(p["prompt"], p[side], side == "chosen") for p in train for side in ("chosen", "rejected")]
    rng.shuffle(rows)
    return [{"id": f"kto-train-{i:04d}", "prompt": prompt, "completion": completion, "label": label}
            for i, (prompt, completion, label) in enumerate(rows, start=1)]


def build() -> dict[str, list[dict]]:
    assert set(WRONG) == {f["key"] for f in BOT.FACTS}, "WRONG needs wrong values for every support-bot fact"
    bot = BOT.build()
    rng = Random(SEED)
    train = pairs(bot["train.jsonl"], rng, False, "train")
    test = pairs(bot["test.jsonl"], rng, True, "test")
    return {"train.jsonl": train, "test.jsonl": test, "train_kto.jsonl": kto(train, rng)}


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "support-bot-prefs",
                    help="directory to write train/test/train_kto.jsonl into (default: examples/support-bot-prefs)")
    args = ap.parse_args(argv)
    for name, records in build().items():
        write_jsonl(args.out / name, records)
        print(f"wrote {len(records):5d} records to {args.out / name}")


if __name__ == "__main__":
    main()
