"""Extraction (issue 19), without training: BIO/IOBES ↔ spans, word-piece alignment on the real MiniLM
tokenizer, entity metrics on hand-checked cases, redaction that keeps spans valid, and schema-checked JSON."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.config import load_config
from tuneforge.data.records import Record, read_records
from tuneforge.errors import DataError, TuneforgeError
from tuneforge.evaluation.entities import entity_metrics
from tuneforge.evaluation.structured import load_schema, parse_answer, structured_metrics
from tuneforge.tasks import task_class
from tuneforge.tasks.spans import Span, align, entity_tags, join_tokens, parse_spans, remap_spans, tag_entities, \
    tokens_record
from tuneforge.vetting.audit import vet

TICKETS = Path(__file__).resolve().parents[1] / "examples" / "tickets"
TASK = task_class("token_classification")


def cfg_for(**data):
    return load_config(None, base={"name": "t", "task": "token_classification",
                                   "data": {"train": "x", "max_length": 128, **data}})


def rec(line=1, **fields):
    return Record(fields, "f.jsonl", line)


# ---------------------------------------------------------------- tags ↔ spans

@pytest.mark.parametrize("tags", [
    ["B-ORDER_ID", "O", "B-PRODUCT", "I-PRODUCT", "I-PRODUCT", "O", "B-DATE", "B-DATE", "I-DATE"],
    ["S-ORDER_ID", "O", "B-PRODUCT", "I-PRODUCT", "E-PRODUCT", "O", "S-DATE", "B-DATE", "E-DATE"],
])
def test_tags_to_spans_and_back_round_trip(tags):
    tokens = ["BK-48213", "for", "Copper", "Rim", "mug", "on", "May", "12", "March"]
    r = rec(tokens=tokens, tags=tags)
    text, spans, ranges = tokens_record(r, "tokens", "tags")
    assert text == "BK-48213 for Copper Rim mug on May 12 March"
    assert [(text[s.start:s.end], s.label) for s in spans] == [
        ("BK-48213", "ORDER_ID"), ("Copper Rim mug", "PRODUCT"), ("May", "DATE"), ("12 March", "DATE")]
    entities, misaligned = align(ranges, spans)
    scheme = "IOBES" if tags[0].startswith("S-") else "BIO"
    assert misaligned == 0 and entity_tags(len(tokens), entities, scheme) == tags


def test_lenient_tags_read_as_conlleval_does():
    # I- after O (IOB1 style) starts an entity; I- of another type starts a new one; BILOU's U-/L- are S-/E-
    assert tag_entities(["I-A", "I-A", "I-B", "O", "U-C", "B-D", "L-D"]) == [(0, 1, "A"), (2, 2, "B"), (4, 4, "C"),
                                                                          (5, 6, "D")]


def test_bad_token_records_name_the_line():
    with pytest.raises(DataError, match=r"f.jsonl:3: .*one tag per word"):
        tokens_record(rec(3, tokens=["a", "b"], tags=["O"]), "tokens", "tags")
    with pytest.raises(DataError, match=r"f.jsonl:4: tag 'X-1'"):
        tokens_record(rec(4, tokens=["a"], tags=["X-1"]), "tokens", "tags")
    with pytest.raises(DataError, match="overlap"):
        parse_spans(rec(5, text="abcdef", spans=[{"start": 0, "end": 3, "label": "A"},
                                                 {"start": 2, "end": 4, "label": "B"}]), "abcdef", "spans")
    with pytest.raises(DataError, match="outside the text"):
        parse_spans(rec(6, text="abc", spans=[[1, 9, "A"]]), "abc", "spans")


def test_bio_file_and_span_file_carry_the_same_entities():
    cfg = cfg_for()
    spans = read_records(TICKETS / "test.jsonl")
    bio = TASK.normalize_records(cfg, read_records(TICKETS / "test_bio.jsonl"))
    same = 0
    for a, b in zip(spans, bio):
        want = [(" ".join(a.fields["text"][s["start"]:s["end"]].split()), s["label"]) for s in a.fields["spans"]]
        got = [(b.fields["text"][s["start"]:s["end"]], s["label"]) for s in b.fields["spans"]]
        assert want == got, b.where  # "$ 53.95" is joined back into "$53.95", "BK-1 ." into "BK-1."
        same += " ".join(a.fields["text"].split()) == b.fields["text"]
    assert same >= 0.85 * len(bio)  # whole texts too, up to line breaks (and "-----", "17:00", split apart)


def test_join_tokens_attaches_punctuation():
    text, ranges = join_tokens(["Mail", "ines", "@", "example.net", "or", "+", "44", "20", "7946", "0958", "(",
                                "$", "53.95", ")", ",", "I", "haven", "'", "t", "."])
    assert text == "Mail ines@example.net or +44 20 7946 0958 ($53.95), I haven't."
    assert [text[a:b] for a, b in ranges][:4] == ["Mail", "ines", "@", "example.net"]


# ---------------------------------------------------------------- word pieces on the real MiniLM tokenizer

def test_every_ticket_span_maps_back_to_its_characters(minilm_tokenizer):
    records = read_records(TICKETS / "test.jsonl")
    task = TASK.from_config(cfg_for(), minilm_tokenizer, records)
    examples = task.encode(records, "test")
    assert task.notes == []  # no span off a token boundary, no text cut at 128
    n = 0
    for r, ex in zip(records, examples):
        got = [(ex.words[a][0], ex.words[b][1], lab) for a, b, lab in tag_entities(ex.gold)]
        assert got == [(s["start"], s["end"], s["label"]) for s in r.fields["spans"]], r.where
        n += len(got)
    assert n == sum(len(r.fields["spans"]) for r in records) > 500


def test_first_word_piece_labelled_the_others_ignored(minilm_tokenizer):
    text = "Order BK-48213: the Aurora kettle"
    r = rec(text=text, spans=[{"start": 6, "end": 14, "label": "ORDER_ID"}, {"start": 20, "end": 33,
                                                                           "label": "PRODUCT"}])
    task = TASK.from_config(cfg_for(), minilm_tokenizer, [r])
    ex = task.encode([r])[0]
    pieces = minilm_tokenizer.convert_ids_to_tokens(ex.ids)
    labelled = [(p, task.tags[y] if y >= 0 else None) for p, y in zip(pieces, ex.labels)]
    assert labelled == [("[CLS]", None), ("order", "O"), ("bk", "B-ORDER_ID"), ("-", "I-ORDER_ID"),
                        ("48", "I-ORDER_ID"), ("##21", None), ("##3", None), (":", "O"), ("the", "O"),
                        ("aurora", "B-PRODUCT"), ("kettle", "I-PRODUCT"), ("[SEP]", None)]


def test_truncated_entities_are_noted_and_scored_as_missed(minilm_tokenizer):
    text = "kettle " * 20 + "order BK-12345"
    r = rec(text=text, spans=[{"start": len(text) - 8, "end": len(text), "label": "ORDER_ID"}])
    task = TASK.from_config(cfg_for(max_length=16), minilm_tokenizer, [r])
    ex = task.encode([r], "test")[0]
    assert len(ex.ids) == 16 and "1 entity past the cut count as missed" in task.notes[0]
    assert tag_entities(ex.gold) and len(ex.first) < len(ex.words)


# ---------------------------------------------------------------- entity metrics (seqeval)

def test_entity_metrics_on_a_hand_checked_case():
    y_true = [["B-A", "I-A", "O", "B-B"], ["B-A", "O"]]
    y_pred = [["B-A", "I-A", "O", "O"], ["B-B", "O"]]
    m = entity_metrics(y_true, y_pred, ["A", "B"])
    # gold: A(0-1), B(3), A(0); predicted: A(0-1), B(0); right: A(0-1)
    assert m["entity_precision_micro"] == pytest.approx(1 / 2) and m["entity_recall_micro"] == pytest.approx(1 / 3)
    assert m["entity_f1_micro"] == pytest.approx(0.4)
    assert m["per_type"]["A"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["per_type"]["B"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["entity_f1_macro"] == pytest.approx(1 / 3)
    assert m["token_accuracy"] == pytest.approx(4 / 6)
    confusion = m["type_confusion"]
    assert confusion["labels"] == ["A", "B", "O"]
    assert confusion["matrix"] == [[1, 1, 0], [0, 0, 1], [0, 0, 0]]  # A read as B once; B missed once
    assert m["entities"] == 3 and m["predicted_entities"] == 2


def test_boundary_errors_and_spurious_entities_in_the_confusion_table():
    m = entity_metrics([["B-A", "I-A", "O", "O"]], [["B-A", "O", "O", "B-B"]], ["A", "B"])
    assert m["entity_f1_micro"] == 0.0  # the A is cut short: wrong boundaries are a wrong entity
    assert m["type_confusion"]["matrix"] == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]
    assert m["type_confusion"]["boundary_errors"] == 1
    empty = entity_metrics([["O"]], [["O"]], ["A"])
    assert empty["entity_f1_macro"] == 0.0 and empty["token_accuracy"] == 1.0


# ---------------------------------------------------------------- redaction keeps spans valid

def test_remapped_spans_follow_their_text():
    text = "mail a@b.co about BK-12345 or call +44 20 7946 0123 re Aurora"
    spans = [Span(18, 26, "ORDER_ID"), Span(55, 61, "PRODUCT")]
    edits = [(5, 11, 5, 14), (35, 51, 38, 47)]  # a@b.co -> <EMAIL_1>, the phone -> <PHONE_1>
    new_text = "mail <EMAIL_1> about BK-12345 or call <PHONE_1> re Aurora"
    moved, counts = remap_spans(spans, edits)
    assert [new_text[s.start:s.end] for s in moved] == ["BK-12345", "Aurora"]
    assert counts == {"spans_shifted": 2, "entities_redacted": 0}
    # an entity that is (or holds) a redacted value covers its placeholder whole
    inside, counts = remap_spans([Span(5, 11, "EMAIL"), Span(8, 11, "X"), Span(30, 40, "PHONE")], edits)
    assert [new_text[s.start:s.end] for s in inside] == ["<EMAIL_1>", "<EMAIL_1>", "call <PHONE_1>"]
    assert counts["entities_redacted"] == 3


@pytest.mark.parametrize("train", ["train.jsonl", "train_bio.jsonl"])
def test_redaction_of_the_tickets_keeps_every_span_on_its_entity(train):
    cfg = load_config(None, base={"name": "t", "task": "token_classification", "privacy": {"pii": "redact"},
                                  "leakage": {"policy": "warn"}, "data": {"train": str(TICKETS / train)}})
    original = TASK.normalize_records(cfg, read_records(TICKETS / train))
    splits, audit = vet({"train": original}, cfg, TASK)
    pii = audit["pii"]
    # train holds 68 of the 81 e-mails and 28 of the 32 phones; in the BIO file too (joined back together)
    assert pii["by_type"] == {"EMAIL": 68, "PHONE": 28}
    assert "extraction data" in pii["sensitive"]
    assert pii["remapped"]["records"] == 96 and pii["remapped"]["spans_shifted"] > 30
    assert pii["remapped"]["entities_redacted"] == 0
    changed = 0
    for before, after in zip(original, splits["train"]):
        text = after.fields["text"]
        spans = parse_spans(after, text, "spans")  # valid: inside the text, not overlapping
        assert [text[s.start:s.end] for s in spans] == \
            [before.fields["text"][s["start"]:s["end"]] for s in before.fields["spans"]]
        changed += text != before.fields["text"]
    assert changed == 96


def test_audit_says_an_extraction_set_is_sensitive_even_with_the_scan_off():
    from tuneforge.vetting.audit import summary_lines

    cfg = cfg_for()
    cfg.privacy.pii = "off"
    _, audit = vet({"train": [rec(text="BK-12345", spans=[[0, 8, "ORDER_ID"]])]}, cfg, TASK)
    lines = summary_lines(audit)
    assert lines[0].startswith("privacy: extraction data") and lines[1] == "privacy: off (no scan)"


# ---------------------------------------------------------------- schema-checked JSON

SCHEMA = {"type": "object", "properties": {"order_id": {"type": ["string", "null"]},
                                           "product": {"anyOf": [{"type": "null"}, {"type": "string"},
                                                                 {"type": "array", "items": {"type": "string"}}]},
                                           "issue": {"enum": ["damaged", "refund"]}},
          "required": ["order_id", "product", "issue"], "additionalProperties": False}


def test_schema_metrics_on_hand_built_answers():
    ref = json.dumps({"order_id": "BK-1", "product": ["Aurora", "Cirrus"], "issue": "refund"})
    answers = [
        ref,                                                                         # all right
        '```json\n{"order_id": "BK-1", "product": "Aurora", "issue": "refund"}\n```',  # fenced: JSON; 1 product
        '{"order_id": "BK-2", "product": ["Aurora", "Cirrus"], "issue": "lost"}',    # schema: issue not in enum
        'Sure! {"order_id": "BK-1"}',                                                # prose: not JSON
    ]
    m = structured_metrics(answers, [ref] * 4, SCHEMA, ["a:1", "a:2", "a:3", "a:4"])
    assert m["json_validity"] == 0.75 and m["schema_validity"] == 0.5
    assert m["invalid_json"] == 1 and m["schema_invalid"] == 2
    # 3 fields x 4 answers: right are 3 + 2 (order_id, issue) + 1 (product) + 0
    assert m["field_exact_match"] == pytest.approx(6 / 12)
    # items per reference: order_id, 2 products, issue = 4; predicted 4 + 3 + 4 + 0 = 11; right 4 + 3 + 2 + 0
    assert m["field_precision"] == pytest.approx(9 / 11) and m["field_recall"] == pytest.approx(9 / 16)
    assert m["field_f1"] == pytest.approx(2 * (9 / 11) * (9 / 16) / (9 / 11 + 9 / 16))
    assert m["per_field"]["product"]["recall"] == pytest.approx(5 / 8)
    assert m["per_field"]["issue"]["exact_match"] == 0.5
    errors = {x["where"]: x["error"] for x in m["invalid_outputs"]}
    assert set(errors) == {"a:3", "a:4"}
    assert errors["a:3"].startswith("schema: 'lost' is not one of") and errors["a:3"].endswith("(at $.issue)")
    assert errors["a:4"].startswith("not JSON")


def test_parse_answer_and_empty_cases():
    assert parse_answer("  {\"a\": null} ") == ({"a": None}, None)
    assert parse_answer("")[1] == "empty answer"
    m = structured_metrics([], [], SCHEMA)
    assert m["json_validity"] == 0.0 and m["invalid_outputs"] == []


def test_schema_file_mistakes_are_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(TuneforgeError, match="bad.json is not JSON"):
        load_schema(bad)
    bad.write_text(json.dumps({"type": "objekt"}), encoding="utf-8")
    with pytest.raises(TuneforgeError, match="not a valid JSON Schema at type"):
        load_schema(bad)
    with pytest.raises(TuneforgeError, match="not found"):
        load_schema(tmp_path / "missing.json")
    assert load_schema(TICKETS / "schema.json")["required"][0] == "order_id"


def test_every_ticket_reference_satisfies_its_schema():
    rows = [json.loads(line) for line in (TICKETS / "test_json.jsonl").read_text(encoding="utf-8").splitlines()]
    outputs = [r["output"] for r in rows]
    m = structured_metrics(outputs, outputs, load_schema(TICKETS / "schema.json"))
    assert m["json_validity"] == m["schema_validity"] == m["field_f1"] == m["field_exact_match"] == 1.0


def test_join_tokens_ranges():
    text, ranges = join_tokens(["a", "bc", "d"])
    assert text == "a bc d" and [text[a:b] for a, b in ranges] == ["a", "bc", "d"]


def test_embedding_forgetting_advice_names_the_methods_own_knob():
    from tuneforge.guards.diagnosis import forgetting_advice

    flagged = {"metric": "embedding_geometry", "flagged": True, "relative_change": -0.72, "before": 1.0, "after": 0.28}
    lora = forgetting_advice({"method": "lora", "task": "token_classification", "forgetting": flagged})[0]
    full = forgetting_advice({"method": "full", "task": "token_classification", "forgetting": flagged})[0]
    assert "lower method.r" in lora and "method.name: lora" not in lora  # it is a LoRA run already
    assert "method.name: lora" in full and "forgetting.l2_to_base" in full
