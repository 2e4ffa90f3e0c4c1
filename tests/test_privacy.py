"""PII detection, redaction and the record scan (tuneforge.privacy), measured on pii_corpus."""
from __future__ import annotations

import json

import pii_corpus
import pytest

from tuneforge.vetting import detectors, privacy
from tuneforge.data.records import Record
from tuneforge.errors import TuneforgeError
from tuneforge.vetting.privacy import Finding, Placeholders, detect, redact, scan_records

REGEX_TYPES = ["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "UK_NINO", "IP_ADDRESS", "URL_CREDENTIALS",
               "SECRET", "DATE_OF_BIRTH", "POSTAL_ADDRESS"]


@pytest.fixture(autouse=True)
def no_ner():
    """Tests see the regex detectors only, whatever NER model the machine has."""
    detectors.set_person_backend(None)
    yield
    detectors.set_person_backend(None)


def _found(text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.start:f.end]) for f in detect(text)]


def _planted_value(sample: pii_corpus.Sample) -> str:
    _, start, end = sample.spans[0]
    return sample.text[start:end]


@pytest.fixture(scope="module")
def quality() -> dict:
    samples = pii_corpus.planted(per_type=200, seed=0)
    clean = pii_corpus.clean(6000, seed=1)
    detectors.set_person_backend(None)
    return pii_corpus.evaluate(lambda t: [(f.type, f.start, f.end) for f in detect(t)], samples, clean)


# ---------------------------------------------------------------------------------------------
# detector quality on the generated corpus


def test_corpus_is_big_enough(quality):
    assert all(quality["planted"][t] >= 200 for t in REGEX_TYPES), quality["planted"]
    assert quality["tokens"] >= 50_000, quality["tokens"]


@pytest.mark.parametrize("kind", REGEX_TYPES)
def test_recall_per_type(quality, kind):
    misses = [t for k, t in quality["misses"] if k == kind][:5]
    assert quality["recall"][kind] >= 0.99, (kind, quality["recall"][kind], misses)


def test_false_positives_per_10k_tokens(quality):
    assert quality["fp_per_10k"] <= 1.0, (quality["fp_per_10k"], quality["fp_examples"][:10])


def test_corpus_is_deterministic():
    assert pii_corpus.planted(5, seed=3) == pii_corpus.planted(5, seed=3)
    assert pii_corpus.clean(50, seed=3) == pii_corpus.clean(50, seed=3)


# ---------------------------------------------------------------------------------------------
# single detectors: formats, checksums and the things that must not fire


@pytest.mark.parametrize("text,kind,value", [
    ("mail jo.doe+news@mail.example.co.uk today", "EMAIL", "jo.doe+news@mail.example.co.uk"),
    ("Call (415) 555-2671 now", "PHONE", "(415) 555-2671"),
    ("ring +44 (0)20 7946 0958", "PHONE", "+44 (0)20 7946 0958"),
    ("Büro: 030/12345678", "PHONE", "030/12345678"),
    ("01.23.45.67.89 is the desk", "PHONE", "01.23.45.67.89"),
    ("+91 98765 43210", "PHONE", "+91 98765 43210"),
    ("tel 4155552671", "PHONE", "4155552671"),
    ("card 4111-1111-1111-1111 exp 04/27", "CREDIT_CARD", "4111-1111-1111-1111"),
    ("amex 3782 822463 10005", "CREDIT_CARD", "3782 822463 10005"),
    ("IBAN DE89 3704 0044 0532 0130 00.", "IBAN", "DE89 3704 0044 0532 0130 00"),
    ("GB82WEST12345698765432", "IBAN", "GB82WEST12345698765432"),
    ("SSN 123-45-6789", "US_SSN", "123-45-6789"),
    ("ssn: 123456789", "US_SSN", "123456789"),
    ("NI AB 12 34 56 C", "UK_NINO", "AB 12 34 56 C"),
    ("from 203.0.113.9 port 22", "IP_ADDRESS", "203.0.113.9"),
    ("peer [2001:db8::8a2e:370:7334]:443", "IP_ADDRESS", "2001:db8::8a2e:370:7334"),
    ("postgres://admin:s3cr3t@db.example.com/app", "URL_CREDENTIALS", "admin:s3cr3t"),
    ("AWS key AKIAIOSFODNN7EXAMPLE", "SECRET", "AKIAIOSFODNN7EXAMPLE"),
    ("token ghp_" + "a1B2" * 9, "SECRET", "ghp_" + "a1B2" * 9),
    ("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
     "SECRET", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
    ('password = "hunter2!x"', "SECRET", "hunter2!x"),
    ("key wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY9", "SECRET", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY9"),
    ("She was born on 12 March 1985 in Leeds", "DATE_OF_BIRTH", "12 March 1985"),
    ("DOB: 1985-03-12", "DATE_OF_BIRTH", "1985-03-12"),
    ("ship to 221B Baker Street, Apt 2", "POSTAL_ADDRESS", "221B Baker Street, Apt 2"),
    ("London SW1A 2AA", "POSTAL_ADDRESS", "SW1A 2AA"),
])
def test_detects(text, kind, value):
    assert (kind, value) in _found(text), _found(text)


def test_private_key_block_is_one_secret():
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234\nabcdEFGH==\n-----END RSA PRIVATE KEY-----"
    assert _found(f"key:\n{pem}\nthanks") == [("SECRET", pem)]


@pytest.mark.parametrize("text", [
    "Fixed in commit 3f9a2c1d0b8e7f6a5d4c3b2a1f0e9d8c7b6a5f4e (see PR #1234).",
    "request 550e8400-e29b-41d4-a716-446655440000 failed",
    "2024-03-05 14:22:01,123 INFO processed 1532 items in 0.84s (v2.3.1)",
    "listening on 127.0.0.1:8080 and 0.0.0.0:9000",
    "ISBN 978-0-91-674409-0 and 978-3-16-148410-0",
    "Total $1,299.99, paid 2024-05-01, order 4829301",
    "The meeting moved to 12/03/2024.",
    "the PS5 4GB model",
    "x = 3.14159265358979; n = 1,234,567,890",
    "| 1024 | 2048 | 4096 | 8192 |\n| 415 | 555 | 2671 | 0 |",
    "def getUserAccountBalance_5d20e3bf(x): return HTTPServerRequestHandler2",
    "password = request.form['password']",
    "Upgrade to Python 3.11.7 and numpy 2.4.6 on Ubuntu 24.04",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "std::vector<int> v; a::b",
])
def test_clean_text_has_no_findings(text):
    assert _found(text) == []


def test_checksums_reject_lookalikes():
    assert _found("card 4111 1111 1111 1112") == []           # Luhn fails
    assert _found("IBAN DE88 3704 0044 0532 0130 00") == []   # mod 97 fails
    assert _found("call +1 415 123 4567") == []              # exchange 123 is not a valid US number
    assert _found("SSN 666-12-3456") == []                    # never issued


def test_bare_numbers_need_context():
    assert _found("order 4155552671 shipped") == []
    assert _found("call me on 4155552671") == [("PHONE", "4155552671")]
    assert _found("ref 123456789") == []
    assert _found("SSN 123456789") == [("US_SSN", "123456789")]


def test_date_needs_birth_context():
    assert _found("Released March 12, 1985") == []
    assert _found("Date of birth: March 12, 1985") == [("DATE_OF_BIRTH", "March 12, 1985")]


def test_overlaps_resolve_to_the_specific_type():
    text = "redis://:Sup3rS3cretValue@cache.example.com:6379/0"
    assert _found(text) == [("URL_CREDENTIALS", ":Sup3rS3cretValue")]


# ---------------------------------------------------------------------------------------------
# redaction


def test_redact_placeholders_consistent_within_record():
    text = "a@x.com wrote to b@y.org, cc A@X.com; call +44 20 7946 0958 or 020 7946 0958"
    out = redact(text, detect(text), Placeholders())
    assert out == "<EMAIL_1> wrote to <EMAIL_2>, cc <EMAIL_1>; call <PHONE_1> or <PHONE_1>"  # one number


def test_redact_keeps_text_without_findings():
    assert redact("nothing here", [], Placeholders()) == "nothing here"
    assert redact("abc", [Finding("EMAIL", 1, 2, 1.0)], Placeholders()) == "a<EMAIL_1>c"


def test_redaction_removes_every_planted_value():
    samples = pii_corpus.planted(per_type=60, seed=11)
    for s in samples:
        value = _planted_value(s)
        out = redact(s.text, detect(s.text), Placeholders())
        assert value not in out, (s.spans[0][0], out)


# ---------------------------------------------------------------------------------------------
# scan_records


def _recs() -> list[Record]:
    return [
        Record({"prompt": "Email me at ann@example.com", "response": "Sure, ann@example.com it is. Or bob@example.org?",
                "label": 1}, "data/train.jsonl", 3),
        Record({"prompt": "nothing to see", "response": "ok", "label": 0}, "data/train.jsonl", 4),
        Record({"messages": [{"role": "system", "content": "be nice"},
                             {"role": "user", "content": "my card is 4111 1111 1111 1111"}]}, "data/chat.jsonl", 7),
    ]


def test_redact_mode_returns_new_records_consistent_across_fields():
    recs = _recs()
    out, rep = scan_records(recs, ["prompt", "response", "messages"], "redact")
    assert out[0].fields["prompt"] == "Email me at <EMAIL_1>"
    assert out[0].fields["response"] == "Sure, <EMAIL_1> it is. Or <EMAIL_2>?"
    assert out[0] is not recs[0] and recs[0].fields["prompt"] == "Email me at ann@example.com"
    assert out[1] is recs[1]  # untouched records are passed through
    assert out[2].fields["messages"][1]["content"] == "my card is <CREDIT_CARD_1>"
    assert recs[2].fields["messages"][1]["content"].endswith("1111")  # input not mutated
    assert (out[0].file, out[0].line) == ("data/train.jsonl", 3)
    assert rep["total"] == 4 and rep["by_type"] == {"EMAIL": 3, "CREDIT_CARD": 1}
    assert rep["records_with_pii"] == 2
    assert {"file": "data/chat.jsonl", "line": 7, "type": "CREDIT_CARD", "field": "messages[1].content"} \
        in rep["locations"]


def test_placeholder_registry_is_per_record():
    recs = [Record({"text": "x@a.com y@b.com"}, "f", 1), Record({"text": "y@b.com"}, "f", 2)]
    out, _ = scan_records(recs, ["text"], "redact")
    assert [r.fields["text"] for r in out] == ["<EMAIL_1> <EMAIL_2>", "<EMAIL_1>"]


def test_warn_mode_reports_and_keeps_records():
    recs = _recs()
    out, rep = scan_records(recs, ["prompt", "response", "messages"], "warn")
    assert [r.fields for r in out] == [r.fields for r in recs]
    assert rep["mode"] == "warn" and rep["total"] == 4


def test_off_mode_scans_nothing():
    out, rep = scan_records(_recs(), ["prompt"], "off")
    assert rep["total"] == 0 and rep["mode"] == "off" and len(out) == 3


def test_block_mode_names_place_type_count_and_fix():
    with pytest.raises(TuneforgeError) as err:
        scan_records(_recs(), ["prompt", "response", "messages"], "block")
    msg = str(err.value)
    assert "data/train.jsonl:3 EMAIL" in msg and "4 PII value(s)" in msg
    assert "set privacy.pii: redact, or remove them" in msg
    assert "ann@example.com" not in msg


def test_block_mode_passes_clean_records():
    out, rep = scan_records([Record({"text": "hello"}, "f", 1)], ["text"], "block")
    assert rep["total"] == 0 and out[0].fields["text"] == "hello"


def test_unknown_mode_is_an_error():
    with pytest.raises(TuneforgeError, match="privacy.pii"):
        scan_records([], ["text"], "scrub")


def test_report_json_holds_no_raw_values():
    samples = pii_corpus.planted(per_type=30, seed=5)
    recs = [Record({"text": s.text}, "data/train.jsonl", i + 1) for i, s in enumerate(samples)]
    for mode in ("warn", "redact"):
        out, rep = scan_records(recs, ["text"], mode)
        blob = json.dumps(rep)
        leaked = [_planted_value(s) for s in samples if _planted_value(s) in blob]
        assert not leaked, leaked[:3]
        assert rep["total"] >= len(samples)
    redacted_blob = json.dumps([r.fields for r in out])
    assert not [_planted_value(s) for s in samples if _planted_value(s) in redacted_blob]


def test_locations_are_capped_but_counts_exact(monkeypatch):
    monkeypatch.setattr(privacy, "MAX_LOCATIONS", 5)
    recs = [Record({"text": f"u{i}@example.com"}, "f", i + 1) for i in range(12)]
    _, rep = scan_records(recs, ["text"], "warn")
    assert rep["total"] == 12 and len(rep["locations"]) == 5 and rep["locations_truncated"] == 7


# ---------------------------------------------------------------------------------------------
# person names: pluggable backend


class FakeNer:
    name = "fake"

    def find(self, texts):
        return [[(t.index("Alice Smith"), t.index("Alice Smith") + 11, 0.9)] if "Alice Smith" in t else []
                for t in texts]


def test_person_backend_is_pluggable():
    detectors.set_person_backend(FakeNer())
    out, rep = scan_records([Record({"text": "Alice Smith (alice@x.org) called"}, "f", 1)], ["text"], "redact")
    assert out[0].fields["text"] == "<PERSON_1> (<EMAIL_1>) called"
    assert not any("person-name detection off" in n for n in rep["notices"])


def test_without_ner_the_report_says_person_detection_is_off():
    _, rep = scan_records([Record({"text": "Alice Smith"}, "f", 1)], ["text"], "warn")
    assert rep["total"] == 0
    assert any(n.startswith("person-name detection off: no NER model installed") for n in rep["notices"])


def test_missing_ner_model_is_not_downloaded():
    assert detectors.load_person_backend("tuneforge_no_such_model") is None


def test_spacy_backend_uses_ner_entities():
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PERSON", "pattern": "Grace Hopper"}])
    detectors.set_person_backend(detectors.SpacyPersonBackend(nlp))
    assert _found("Ask Grace Hopper at 10") == [("PERSON", "Grace Hopper")]
