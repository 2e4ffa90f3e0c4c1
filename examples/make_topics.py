#!/usr/bin/env python3
"""Generate the synthetic news-topic classification data set (task B for sequential fine-tuning).

Short news-like headlines, most followed by one or two snippet sentences, labelled
sports | business | science | travel. Clubs, companies, airlines and institutes are invented;
places are real cities and regions. No person is named. Some vocabulary is deliberately shared
between topics (an airline can be in business or travel news, "record" appears everywhere), so
the label follows what the item is about, not one keyword. Stdlib only, ``random.Random(seed)``;
running the script twice gives byte-identical files.

    python examples/make_topics.py            # writes examples/topics/*.jsonl
    python examples/make_topics.py --out DIR  # writes DIR/*.jsonl instead

Files: train.jsonl (800) and test.jsonl (200), fields {"id", "text", "label"}, balanced.
Every 4th template and filler of each list is reserved for test, and every test item is checked
to have word 5-gram Jaccard < 0.5 with every train item.
"""
from __future__ import annotations

import argparse
import sys
import json
import re
import string
from pathlib import Path
from random import Random

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _overlap import OverlapGuard  # noqa: E402

SEED = 777
LABELS = ("sports", "business", "science", "travel")
N_TRAIN, N_TEST = 800, 200
NEAR_DUP_JACCARD = 0.5

SLOTS = {
    # sports
    "team": ["Riverton Rovers", "Ashford Athletic", "Port Cullen United", "Highmoor Hawks", "Eastgate Eagles",
             "Millbrook City", "Saltcombe Sharks", "Northfield Falcons", "Greywater Wanderers", "Oakridge Rangers",
             "Kingsmere Lions", "Dunmore Dragons"],
    "sport": ["football", "rugby", "basketball", "cricket", "hockey", "volleyball", "handball", "water polo"],
    "comp": ["the national cup", "the league", "the regional championship", "the continental trophy",
             "the spring invitational", "the indoor series", "the league cup"],
    "round": ["quarter-finals", "semi-finals", "final", "last sixteen"],
    "player": ["striker", "goalkeeper", "captain", "playmaker", "veteran defender", "young winger", "fly-half",
               "point guard"],
    "athlete": ["sprinter", "swimmer", "high jumper", "marathon runner", "cyclist", "rower", "long jumper",
                "hurdler"],
    "event": ["100 metres", "400 metres", "800 metres freestyle", "marathon", "triple jump", "time trial",
              "1500 metres", "pole vault"],
    "score": ["1-0", "2-1", "3-2", "4-0", "2-0", "3-1", "28-24", "96-91", "5-3"],
    # business
    "company": ["Norvale Foods", "Kestrix Logistics", "Brightwater Energy", "Halden Motors", "Corvell Bank",
                "Tessaline Pharma", "Ampleway Retail", "Orison Software", "Greyfield Steel", "Lumina Telecom",
                "Pellham Insurance", "Quarrystone Homes"],
    "airline": ["Skyvale Air", "Northern Arc Airways", "Bluecrest Airlines", "Meridian Wings"],
    "sector": ["grocery", "car", "software", "steel", "insurance", "home-building", "phone", "clothing"],
    "pct": ["2", "3.5", "4", "6", "8", "11", "12", "15", "18", "22"],
    "rate": ["3.25", "3.5", "3.75", "4", "4.25", "4.5", "5"],
    "quarter": ["first-quarter", "second-quarter", "third-quarter", "full-year", "half-year"],
    "amount": ["1.2", "2.4", "3", "4.8", "6.5", "9", "12"],
    "jobs": ["200", "350", "400", "600", "800", "1,200", "1,500", "2,000"],
    # science
    "lab": ["researchers at the Northvale Institute", "a team from Eastmere University",
            "scientists at the Calder Observatory", "biologists at the Ridgeway Marine Laboratory",
            "engineers at the Hollins Technical University", "a group at the Farrow Climate Centre",
            "chemists at Westbrook College", "geologists from the Ardmore Survey"],
    "creature": ["frog", "beetle", "deep-sea fish", "orchid", "gecko", "freshwater snail", "moth", "fungus"],
    "habitat": ["a remote cloud forest", "an underwater cave", "the canopy of a rainforest",
                "a mountain lake", "a coastal marsh", "volcanic hot springs"],
    "animal": ["early mammals", "giant tortoises", "flightless birds", "ancient crocodiles", "woolly rhinos",
               "early whales"],
    "body": ["a nearby red dwarf", "a young sun-like star", "a distant binary star", "a cool brown dwarf"],
    "material": ["a new alloy", "a plant-based plastic", "a self-healing concrete", "an ultra-thin coating",
                 "a sodium-based battery", "a transparent wood composite"],
    "organ": ["the gut", "the immune system", "the inner ear", "the liver", "the retina", "sleep cycles"],
    "years": ["10,000", "50,000", "120,000", "400,000", "800,000"],
    # travel
    "city": ["Lisbon", "Kyoto", "Reykjavik", "Seville", "Vancouver", "Hanoi", "Bergen", "Cape Town", "Porto",
             "Ljubljana", "Valparaiso", "Edinburgh", "Tbilisi", "Krakow", "Montreal", "Oaxaca"],
    "region": ["the Scottish Highlands", "Patagonia", "Crete", "the Dolomites", "Tasmania", "the Algarve",
               "the Norwegian fjords", "Sicily", "the Atacama Desert", "Hokkaido", "the Azores", "Andalusia"],
    "days": ["two", "three", "four", "five", "seven", "ten"],
    "fare": ["40", "55", "60", "75", "90", "120"],
    "coast": ["Crete", "the Algarve", "Sicily", "the Azores", "Tasmania", "Andalusia", "Brittany", "Sardinia"],
    "islands": ["the Greek islands", "the Azores", "the Hebrides", "the Balearics", "the Canary Islands",
                "the Lofoten Islands"],
    "route": ["Lisbon and Porto", "Vienna and Venice", "Bergen and Oslo", "Krakow and Budapest",
              "Edinburgh and London", "Montreal and Quebec City", "Seville and Madrid", "Ljubljana and Zagreb",
              "Brussels and Prague", "Stockholm and Narvik"],
    "month": ["March", "April", "May", "June", "September", "October"],
    # shared
    "n": ["two", "three", "four", "five", "six", "eight", "ten"],
    "ord": ["second", "third", "fourth", "fifth", "sixth"],
    "weekday": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"],
}

# Headline templates, grouped by label and by kind of story; snippets are written per kind of
# story (plus a few that fit any story of that label), so a headline and its snippets agree.
HEADLINES = {
    "sports": {
        "match": [
            "{team} beat {team2} {score} to reach the {round} of {comp}",
            "{team} edge past {team2} in a tense {sport} derby",
            "Late winner hands {team} a {score} victory over {team2}",
            "{team} stun league leaders {team2} with a {score} away win",
            "Title race tightens as {team} drop points against {team2}",
            "{team} come from behind to draw with {team2}",
            "Penalty shoot-out sends {team} through to the {round}",
            "{team} keep their unbeaten home record with a {score} win",
            "Ten-man {team} hold on against {team2}",
        ],
        "squad": [
            "Injury blow for {team} as {player} is ruled out for {n} weeks",
            "{team} appoint former {player} as new head coach",
            "{team} {player} signs a {n}-year contract extension",
            "{team} part ways with coach after {n} straight defeats",
            "{team} fined after crowd trouble at cup tie",
            "Selectors name uncapped {player} in squad for {comp}",
            "{team} announce record season-ticket sales after promotion",
            "Sports scientists help {team} cut soft-tissue injuries",
            "{team} captain backs new coach to turn the season around",
        ],
        "event": [
            "Rain delays final day of the {sport} tournament",
            "Teenage {athlete} breaks national {event} record at indoor meet",
            "Veteran {athlete} announces retirement after final {event}",
            "Cyclists face brutal mountain stage as the tour enters its final week",
            "Women's {sport} final sells out in record time",
            "{athlete} wins gold in the {event} after photo finish",
            "Heat forces organisers to move the {event} to an early-morning start",
            "Home crowd roars as local {athlete} takes bronze in the {event}",
        ],
    },
    "business": {
        "company": [
            "{company} shares jump {pct}% after strong {quarter} results",
            "{company} to cut {jobs} jobs as demand slows",
            "{company} profit falls {pct}% on weaker {sector} sales",
            "{company} opens new factory, creating {jobs} jobs",
            "{company} chief executive to step down after {n} years",
            "{airline} reports a loss as fuel costs rise",
            "{company} beats forecasts despite a slowdown in {sector} demand",
            "Regulator fines {company} over misleading pricing",
            "{company} warns of weaker profits as costs climb {pct}%",
            "{airline} passenger numbers climb {pct}% on strong holiday bookings, lifting shares",
            "Sportswear maker {company} cuts outlook after weak trainer sales",
            "Hotel group {company} raises dividend as room rates hold up",
        ],
        "deal": [
            "{company} agrees €{amount} billion takeover of {company2}",
            "Start-up raises €{amount} million to expand its delivery service",
            "{airline} orders {n} new aircraft in €{amount} billion deal",
            "{company} and {company2} call off merger talks",
            "{company} plans stock market listing next year",
            "{company} sells its {sector} division for €{amount} billion",
            "Private equity firm bids for {company}",
        ],
        "economy": [
            "Inflation eases to {pct}% as fuel prices fall",
            "Central bank holds interest rates at {rate}%",
            "Retail sales rise for the {ord} month in a row",
            "Oil prices climb as supply concerns grow",
            "House prices dip for the {ord} month as mortgage costs bite",
            "Unemployment falls to its lowest level in {n} years",
            "Factory output shrinks as export orders dry up",
            "Consumer confidence edges higher ahead of the holiday season",
        ],
    },
    "science": {
        "space": [
            "Astronomers spot a rocky exoplanet orbiting {body}",
            "Telescope captures the most detailed image yet of a distant galaxy",
            "Space probe sends back first close-up images of an icy moon",
            "Comet visible to the naked eye for the first time in {n} years",
            "{Lab} detect water vapour in the atmosphere of a distant planet",
            "Solar storm data helps explain the brightest auroras in decades",
            "Radio astronomers trace a mysterious signal to a spinning dead star",
        ],
        "life": [
            "New species of {creature} discovered in {habitat}",
            "Fossil find suggests {animal} lived in the region earlier than thought",
            "Bees can recognise simple patterns, experiment shows",
            "Gene study sheds light on how plants survive drought",
            "Study of {organ} in mice hints at new treatments",
            "Ancient DNA shows how {animal} adapted to a changing climate",
            "Coral reefs recover faster than expected, long-term survey finds",
            "Migrating birds use the Earth's magnetic field, new tracking data confirms",
            "Study finds marathon runners' hearts adapt to training within weeks",
            "{Lab} track how tourist crowds affect alpine wildlife",
        ],
        "physical": [
            "Ice cores reveal a {years}-year record of the climate",
            "Physicists measure a particle decay with record precision",
            "{Lab} develop {material}",
            "{Lab} map the ocean floor with autonomous drones",
            "Volcano monitoring network detects unusual tremors",
            "{Lab} report a way to recycle {material}",
            "Quantum sensor detects tiny changes in gravity",
            "Soil microbes store more carbon than models predicted",
            "Lab experiment recreates the chemistry of early Earth",
        ],
    },
    "travel": {
        "guide": [
            "{days} days in {city}: a slow traveller's guide",
            "Why {city} is worth a visit in the off-season",
            "Hidden beaches of {coast} you can reach by bus",
            "How to see {region} on a budget",
            "Best hiking trails in {region} for beginners",
            "Packing tips for a rainy week in {city}",
            "Street food trail: where to eat in {city}",
            "Dark-sky spots in {region} for stargazing holidays",
            "A weekend in {city} without a car",
            "Road trip through {region}: where to stop and stay",
            "Family-friendly things to do in {city} when it rains",
            "Cheap and cheerful guesthouses in {region}",
            "What to know before visiting {region} in {month}",
            "Following the {sport} season: a fan's weekend guide to {city}",
            "Budget tips: how to avoid card fees when paying abroad",
            "Observatories in {region} that welcome visitors after dark",
        ],
        "transport": [
            "New night train links {route}",
            "{airline} adds direct flights to {city} from {month}",
            "Ferry timetables change for island hopping around {islands}",
            "Travellers warned of long queues at {city} airport this summer",
            "Cycling from {city} to the coast in {days} easy stages",
            "Scenic rail pass now covers {route}",
            "Hop-on ferries make {islands} easier to explore without a car",
        ],
        "place": [
            "{city} introduces a tourist tax for overnight stays",
            "{city}'s old town reopens to visitors after restoration",
            "{city} caps cruise ship arrivals to ease summer crowds",
            "Mountain huts in {region} open early after a mild spring",
            "{city} opens a new waterfront walking trail",
        ],
    },
}

SNIPPETS = {
    "sports": {
        "match": [
            "The visitors dominated possession but could not find a way through until the closing minutes.",
            "Fans packed the stadium despite the freezing weather.",
            "The coach praised the team's defensive discipline after the match.",
            "It was their {ord} consecutive victory of the season.",
            "Both sides finished the game with ten men after a heated second half.",
            "The result leaves them {n} points clear at the top of the table.",
            "The {player} scored twice in the second half.",
            "The second leg takes place next {weekday}.",
        ],
        "squad": [
            "The club confirmed the news in a short statement on {weekday}.",
            "The {player} is expected to be fit for the return leg.",
            "The squad travels to the training camp on {weekday}.",
            "The club said scans had confirmed a hamstring strain.",
            "The new coach takes charge of training on {weekday}.",
            "Fans reacted to the news with a mix of relief and frustration.",
        ],
        "event": [
            "Organisers said the event would resume on {weekday} morning.",
            "Tickets for the final went on sale at noon and were gone within the hour.",
            "The {athlete} trained at altitude for most of the winter.",
            "Spectators lined the course several rows deep.",
            "The previous record had stood for {n} years.",
            "Officials reviewed the photo finish for several minutes before confirming the result.",
        ],
        "any": ["The team returns to action next {weekday}.", "Coverage starts at seven in the evening."],
    },
    "business": {
        "company": [
            "Analysts had expected a smaller increase.",
            "The company said it would update investors next month.",
            "Shares closed {pct}% higher in afternoon trading.",
            "Unions said they would seek talks with management.",
            "The firm blamed higher energy and wage bills.",
            "Investors welcomed the plan to return cash to shareholders.",
            "Revenue rose to €{amount} billion, helped by strong export orders.",
            "The shares have lost a fifth of their value this year.",
        ],
        "deal": [
            "The board will vote on the proposal in the spring.",
            "The deal still needs approval from competition regulators.",
            "The offer values the business at roughly {n} times its annual profit.",
            "Advisers said several other bidders had shown interest.",
            "The money will be used to open warehouses in {n} more cities.",
        ],
        "economy": [
            "Economists expect borrowing costs to stay high for the rest of the year.",
            "The figures were published by the national statistics office on {weekday}.",
            "Smaller suppliers said the change would squeeze their margins.",
            "Households are still feeling the effect of higher food prices.",
            "Markets had largely priced in the decision.",
        ],
        "any": ["Trading in the shares was briefly suspended.", "The news pushed the main index to a monthly high."],
    },
    "science": {
        "space": [
            "Further observations are planned for next year.",
            "The object is too faint to be seen without a large telescope.",
            "Computer simulations matched the measurements closely.",
            "The images were taken over {n} consecutive nights.",
            "Amateur astronomers are being asked to report their own sightings.",
        ],
        "life": [
            "The team now plans to repeat the experiment with a larger sample.",
            "The work could help explain how early ecosystems evolved.",
            "Samples were collected over {n} field seasons.",
            "The discovery was made almost by accident during routine sampling.",
            "The researchers compared results from more than a hundred sites.",
            "Tiny tracking tags weighing less than a paperclip were used.",
        ],
        "physical": [
            "The instrument is sensitive enough to detect changes smaller than a hair's width.",
            "Other scientists cautioned that the results need to be confirmed.",
            "Computer simulations matched the measurements closely.",
            "The method uses less energy than existing techniques.",
            "Samples were analysed with a high-resolution electron microscope.",
        ],
        "any": ["The findings were published in a peer-reviewed journal this week.",
                "The data will be made freely available to other researchers.",
                "Funding for the next phase of the project was approved on {weekday}."],
    },
    "travel": {
        "guide": [
            "Book accommodation early, as the old town fills up quickly in summer.",
            "The best views are from the hill above the harbour at sunset.",
            "Many small restaurants close on {weekday}, so plan ahead.",
            "Pack layers: the weather can change several times a day.",
            "Locals recommend trying the market stalls rather than the tourist cafes.",
            "Guided walking tours leave from the main square every morning.",
            "Campsites along the route must be booked in advance in peak season.",
        ],
        "transport": [
            "Trains run every hour and tickets can be bought at the station.",
            "A week-long transport pass covers buses, trams and the airport shuttle.",
            "Return fares start at around €{fare} if booked a month ahead.",
            "Bikes can be taken on board free of charge outside rush hour.",
            "Seats sell out quickly on summer weekends, so book ahead.",
        ],
        "place": [
            "The charge applies to hotels, hostels and holiday rentals.",
            "Visitors are asked to stick to marked paths.",
            "Entry is free on the first {weekday} of every month.",
            "The visitor centre rents out bikes and sells trail maps.",
        ],
        "any": ["Spring and autumn bring milder weather and far fewer crowds.",
                "Travel insurance that covers cancellations is strongly recommended."],
    },
}


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    w = words(text)
    return {tuple(w)} if len(w) < n else {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


class NearDupIndex:
    def __init__(self) -> None:
        self.guard = OverlapGuard()
        self.sets: list[set[tuple[str, ...]]] = []
        self.index: dict[tuple[str, ...], list[int]] = {}

    def add(self, text: str) -> None:
        self.guard.add(text)
        s = shingles(text)
        for g in s:
            self.index.setdefault(g, []).append(len(self.sets))
        self.sets.append(s)

    def too_close(self, text: str) -> bool:
        """Near by our 5-gram bar, or by tuneforge's own leakage check (see _overlap.py)."""
        return self.max_jaccard(text) >= NEAR_DUP_JACCARD or self.guard.too_close(text)

    def max_jaccard(self, text: str) -> float:
        s = shingles(text)
        counts: dict[int, int] = {}
        for g in s:
            for i in self.index.get(g, ()):
                counts[i] = counts.get(i, 0) + 1
        return max((c / (len(s) + len(self.sets[i]) - c) for i, c in counts.items()), default=0.0)


class Writer:
    def __init__(self, rng: Random, held_out: bool):
        self.rng = rng
        self.held_out = held_out

    def part(self, options: list[str]) -> list[str]:
        """Every 4th entry of a list is reserved for test; train writers never see it."""
        if self.held_out or len(options) < 4:
            return list(options)
        return [x for i, x in enumerate(options) if i % 4 != 3]

    def fill(self, template: str) -> str:
        used: dict[str, str] = {}
        out = []
        for literal, field, _, _ in string.Formatter().parse(template):
            out.append(literal)
            if field is None:
                continue
            if field not in used:
                base = field.rstrip("0123456789").lower()
                taken = {v for k, v in used.items() if k.rstrip("0123456789").lower() == base}
                used[field] = self.rng.choice([v for v in self.part(SLOTS[base]) if v not in taken])
            value = used[field]
            out.append(value[:1].upper() + value[1:] if field[:1].isupper() else value)
        return "".join(out)

    def item(self, label: str) -> str:
        r = self.rng
        kind = r.choice(sorted(HEADLINES[label]))
        text = self.fill(r.choice(self.part(HEADLINES[label][kind])))
        text = text[:1].upper() + text[1:]
        k = r.choices((0, 1, 2), weights=(25, 50, 25))[0]
        if k:
            snippets = self.part(SNIPPETS[label][kind]) + SNIPPETS[label]["any"]
            r.shuffle(snippets)
            text = text + ". " + " ".join(self.fill(s) for s in snippets[:k])
        return text


def generate(rng: Random, n: int, prefix: str, taken: set[str], held_out: bool,
             against: NearDupIndex | None = None) -> list[dict]:
    w = Writer(rng, held_out)
    labels = [LABELS[i % len(LABELS)] for i in range(n)]
    rng.shuffle(labels)
    out = []
    within = OverlapGuard()  # no near duplicates inside a split either: a carved validation split stays clean
    for i, label in enumerate(labels, start=1):
        tries = 0
        while True:
            tries += 1
            text = w.item(label)
            if " ".join(words(text)) in taken or (against is not None and against.too_close(text)) \
                    or (tries < 500 and within.too_close(text)):
                continue
            break
        within.add(text)
        taken.add(" ".join(words(text)))  # case/punctuation variants count as duplicates
        out.append({"id": f"{prefix}-{i:04d}", "text": text, "label": label})
    return out


def build() -> dict[str, list[dict]]:
    taken: set[str] = set()
    train = generate(Random(SEED), N_TRAIN, "topic-train", taken, held_out=False)
    index = NearDupIndex()
    for rec in train:
        index.add(rec["text"])
    test = generate(Random(SEED + 1), N_TEST, "topic-test", taken, held_out=True, against=index)
    return {"train.jsonl": train, "test.jsonl": test}


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "topics",
                    help="directory to write train/test.jsonl into (default: examples/topics)")
    args = ap.parse_args(argv)
    for name, records in build().items():
        write_jsonl(args.out / name, records)
        print(f"wrote {len(records):5d} records to {args.out / name}")


if __name__ == "__main__":
    main()
